"""Fully trained adversaries against the service's Guard point, and what they leave their victims.

    imgprivacy reproduce docl-strong-adversaries --out reports/docl-strong-adversaries

The quick MNIST data of ``reproduce docl-mnist --quick`` (1500 training / 200 test images a
digit), the ten users' default models as a device trains them (against the public negative set).
For each (adversary, victim) pair, the adversary replaces their model by one trained on their
own digit plus the victim's, for the users' full epochs (or others with ``epochs``), then
uploads the victim's test images; the victim then uploads the same images. Both are decided by
the service's default Guard (``margin``, alpha 2.7, margin 1, breadth gate 2, breadths over all
test digits as the service's probe digits, seniority: the adversary's replacement is admitted after
the users' models) and the same Guard without seniority, and without either. The pairs default
to the service tests' four (7 on 1, 4 on 9, 0 on 6, 3 on 8) and 1 on 3; ``--all-pairs`` runs
the 90. Writes results.json and, per epochs, the (adversary, victim) matrices as PNG.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from imgprivacy.docl import Guard, OneClassAutoencoder
from imgprivacy.progress import ProgressFactory, resolve
from imgprivacy.reproduce.docl_data import mnist_experiment
from imgprivacy.reproduce.docl_experiments import (
    bank_of,
    decide_attack,
    train_class_models,
)
from imgprivacy.reproduce.docl_mnist import NEGATIVE_COUNT, PAPER_MNIST, QUICK, configurations

PAIRS = ((7, 1), (4, 9), (0, 6), (3, 8), (1, 3))  # (adversary, victim)
ALL_PAIRS = tuple((a, v) for a in range(10) for v in range(10) if a != v)
SERVICE_POINT = dict(policy="margin", alpha=2.7, margin=1.0)  # docs/service.md, the defaults
GUARDS = {  # name: what the Guard adds to SERVICE_POINT
    "service default (gate 2, seniority)": dict(breadth_ratio=2.0, seniority=True),
    "gate 2, no seniority": dict(breadth_ratio=2.0, seniority=False),
    "neither": dict(breadth_ratio=None, seniority=False),
}


@dataclass(frozen=True)
class StrongAdversariesResult:
    guard: dict  # the service's point
    variants: dict  # Guard name -> what it adds to the point
    user_epochs: int
    rows: list[dict]  # one per (epochs, adversary, victim, guard)
    summary: list[dict]  # per (epochs, guard): worst and mean over the pairs
    paper_blocked: float  # the paper's Fig. 4 figure for u7 on u2 (alpha 1, its own model)
    seconds: float
    figures: list[str]


def attack_pair(data, scores, config, adversary: int, victim: int, guards) -> dict[str, tuple]:
    """{guard name: (adversary's uploads blocked, victim's own uploads shared)} for one pair."""
    mask = torch.as_tensor(np.isin(data.train_y, [adversary, victim]))
    attack = OneClassAutoencoder(config).fit(data.train_x[mask], negatives=data.negatives_x)
    return decide_attack(
        scores, data.test_x, data.test_y, adversary, adversary, victim, attack, guards
    )


def reproduce_docl_strong_adversaries(
    *,
    out: str | Path,
    data_dir: str | Path | None = None,
    epochs: Sequence[int] = (30,),
    pairs: Sequence[tuple[int, int]] = PAIRS,
    seed: int = 0,
    progress: ProgressFactory | None = None,
) -> StrongAdversariesResult:
    """Run the experiment (module docstring); write results.json and the PNG matrices."""
    from imgprivacy.reports import docl_figures
    from imgprivacy.reports.results import write_results

    progress = resolve(progress)
    out = Path(out)
    started = time.perf_counter()
    config = configurations(True)["default"]
    data = mnist_experiment(
        data_dir=data_dir,
        seed=seed,
        feature_extractor=config.feature_extractor,
        negative_count=NEGATIVE_COUNT,
        **QUICK,
    )
    classes = list(range(10))
    models = train_class_models(
        data.train_x,
        data.train_y,
        classes,
        config=config,
        negatives=data.negatives_x,
        progress=progress("train users", len(classes)),
    )
    scores = bank_of(models, classes).score(data.test_x)
    guards = {name: Guard(**SERVICE_POINT, **extra) for name, extra in GUARDS.items()}
    rows = []
    step = progress("adversaries", len(epochs) * len(pairs))
    for count in epochs:
        for adversary, victim in pairs:
            decided = attack_pair(
                data, scores, config.replace(epochs=count), adversary, victim, guards
            )
            for name, (blocked, shared) in decided.items():
                rows.append(
                    dict(epochs=count, adversary=adversary, victim=victim, guard=name,
                         adversary_blocked=blocked, victim_shared=shared)
                )  # fmt: skip
            step(f"{count} epochs: u{adversary} on u{victim}")
    out.mkdir(parents=True, exist_ok=True)
    figures = []
    for count in epochs:
        for what, key in (
            ("blocked", "adversary_blocked"),
            ("victim's own shared", "victim_shared"),
        ):
            matrices = matrices_of(rows, epochs=count, key=key)
            name = f"adversaries_{count}_epochs_{key}.png"
            figures.append(
                str(
                    docl_figures.adversary_matrices(
                        out / name, matrices=matrices, alpha=SERVICE_POINT["alpha"], what=what
                    )
                )
            )
    result = StrongAdversariesResult(
        guard=SERVICE_POINT,
        variants=GUARDS,
        user_epochs=config.epochs,
        rows=rows,
        summary=summarise(rows),
        paper_blocked=PAPER_MNIST["adversary_u7_vs_u2_blocked"],
        seconds=time.perf_counter() - started,
        figures=figures,
    )
    write_results(result, out)
    return result


def matrices_of(rows: list[dict], *, epochs: int, key: str) -> dict[str, np.ndarray]:
    """{guard name: 10 x 10 [adversary, victim] matrix of ``key``} (NaN where not measured)."""
    out = {}
    for row in rows:
        if row["epochs"] != epochs:
            continue
        matrix = out.setdefault(row["guard"], np.full((10, 10), np.nan))
        matrix[row["adversary"], row["victim"]] = row[key]
    return out


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


def summary_tables(result: StrongAdversariesResult) -> list:
    """One table: per epochs and Guard, the adversaries' uploads blocked and the victims' own
    uploads shared (worst and mean over the pairs), beside the paper's Fig. 4 figure."""
    from imgprivacy.reports.results import comparison_table, percent

    rows = [
        (
            f"{line['epochs']} epochs, {line['guard']} ({line['pairs']} pairs)",
            f"{percent(line['blocked_worst'])} / {percent(line['blocked_mean'])}",
            f"{percent(line['shared_worst'])} / {percent(line['shared_mean'])}",
            f"~{percent(result.paper_blocked)} (u7 on u2, alpha 1)",
        )
        for line in result.summary
    ]
    return [
        comparison_table(
            "Fully trained adversaries at the service's point (alpha 2.7, margin 1, gate 2)",
            rows,
            columns=(
                "adversaries, Guard",
                "blocked: worst / mean",
                "victim's own shared: worst / mean",
                "paper, blocked",
            ),
        )
    ]
