"""Fully trained adversaries against the service's Guard point, and what they leave their victims.

    python -m imgprivacy.reproduce.docl_strong_adversaries --out reports/strong-adversaries

The quick MNIST data of ``reproduce docl-mnist --quick`` (1500 training / 200 test images a
digit), the ten users' default models as a device trains them (against the public negative set).
For each (adversary, victim) pair, the adversary replaces their model by one trained on their
own digit plus the victim's, for the users' full epochs (and more with ``--epochs``), then
uploads the victim's test images; the victim then uploads the same images. Both are decided by
the service's default Guard (``margin``, alpha 2.7, margin 1, breadth gate 2, breadths over all
test digits as the service's probe digits, seniority: the adversary's replacement is admitted after
the users' models) and the same Guard without seniority, and without either. Prints a table
and writes JSON. The pairs default to the service tests' four (7 on 1, 4 on 9, 0 on 6, 3 on 8)
and 1 on 3.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from imgprivacy.docl import Guard, OneClassAutoencoder
from imgprivacy.reproduce.docl_data import mnist_experiment
from imgprivacy.reproduce.docl_experiments import (
    bank_of,
    decide_attack,
    train_class_models,
)
from imgprivacy.reproduce.docl_mnist import NEGATIVE_COUNT, QUICK, configurations

PAIRS = ((7, 1), (4, 9), (0, 6), (3, 8), (1, 3))  # (adversary, victim)
SERVICE_POINT = dict(policy="margin", alpha=2.7, margin=1.0)  # docs/service.md, the defaults
GUARDS = {  # name: what the Guard adds to SERVICE_POINT
    "service default (gate 2, seniority)": dict(breadth_ratio=2.0, seniority=True),
    "gate 2, no seniority": dict(breadth_ratio=2.0, seniority=False),
    "neither": dict(breadth_ratio=None, seniority=False),
}


def attack_pair(data, scores, config, adversary: int, victim: int, guards) -> dict[str, tuple]:
    """{guard name: (adversary's uploads blocked, victim's own uploads shared)} for one pair."""
    mask = torch.as_tensor(np.isin(data.train_y, [adversary, victim]))
    attack = OneClassAutoencoder(config).fit(data.train_x[mask], negatives=data.negatives_x)
    return decide_attack(
        scores, data.test_x, data.test_y, adversary, adversary, victim, attack, guards
    )


def summarise(rows: list[dict]) -> list[dict]:
    """Per (epochs, guard): worst and mean over the pairs of both figures."""
    out = []
    for epochs, guard in dict.fromkeys((r["epochs"], r["guard"]) for r in rows):
        mine = [r for r in rows if (r["epochs"], r["guard"]) == (epochs, guard)]
        blocked = [r["adversary_blocked"] for r in mine]
        shared = [r["victim_shared"] for r in mine]
        out.append(
            dict(epochs=epochs, guard=guard, pairs=len(mine),
                 blocked_worst=min(blocked), blocked_mean=float(np.mean(blocked)),
                 shared_worst=min(shared), shared_mean=float(np.mean(shared)))
        )  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/strong-adversaries"))
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--epochs", type=int, nargs="+", default=[30, 60])
    parser.add_argument(
        "--pairs", nargs="+", default=[f"{a},{v}" for a, v in PAIRS],
        help="adversary,victim digits, or 'all' for the 90 pairs",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.pairs == ["all"]:
        pairs = [(a, v) for a in range(10) for v in range(10) if a != v]
    else:
        pairs = [tuple(int(c) for c in p.split(",")) for p in args.pairs]
    started = time.perf_counter()
    config = configurations(True)["default"]
    data = mnist_experiment(
        data_dir=args.data_dir,
        seed=args.seed,
        feature_extractor=config.feature_extractor,
        negative_count=NEGATIVE_COUNT,
        **QUICK,
    )
    classes = list(range(10))
    models = train_class_models(
        data.train_x, data.train_y, classes, config=config, negatives=data.negatives_x
    )
    scores = bank_of(models, classes).score(data.test_x)
    guards = {name: Guard(**SERVICE_POINT, **extra) for name, extra in GUARDS.items()}
    rows = []
    for epochs in args.epochs:
        for adversary, victim in pairs:
            decided = attack_pair(
                data, scores, config.replace(epochs=epochs), adversary, victim, guards
            )
            for name, (blocked, shared) in decided.items():
                rows.append(
                    dict(epochs=epochs, adversary=adversary, victim=victim, guard=name,
                         adversary_blocked=blocked, victim_shared=shared)
                )  # fmt: skip
                print(
                    f"{epochs:>3} epochs  u{adversary} on u{victim}  {name:<36} adversary's "
                    f"uploads blocked {100 * blocked:5.1f}%  victim's own shared "
                    f"{100 * shared:5.1f}%",
                    flush=True,
                )
    summary = summarise(rows)
    for line in summary:
        print(
            f"{line['epochs']:>3} epochs  {line['guard']:<36} over {line['pairs']} pairs: blocked "
            f"worst {100 * line['blocked_worst']:5.1f}% mean {100 * line['blocked_mean']:5.1f}%; "
            f"victim's own shared worst {100 * line['shared_worst']:5.1f}% mean "
            f"{100 * line['shared_mean']:5.1f}%"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    result = dict(
        guard=SERVICE_POINT, variants=GUARDS, user_epochs=config.epochs, rows=rows,
        summary=summary, seconds=time.perf_counter() - started,
    )  # fmt: skip
    (args.out / "strong_adversaries.json").write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out / 'strong_adversaries.json'}")


if __name__ == "__main__":
    main()
