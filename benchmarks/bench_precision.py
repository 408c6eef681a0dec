"""Do compact bank weights (fp16, bf16) change the Guard's decisions? MNIST's 10 users.

    python benchmarks/bench_precision.py --out reports/bench             # ~10 min on 1 thread
    python benchmarks/bench_precision.py --train-per-class 500 --epochs 5  # a quick look

Trains the 10 MNIST users' models (one digit each) for the default and the paper-exact
configurations, scores MNIST test images and Fashion-MNIST images with an fp32 bank and with each
compact bank, and counts the Guard decisions (every policy, alpha 1 and 2) that differ. Each test
digit is uploaded by its owner and by the next user; each Fashion-MNIST image by user 0. A
precision holds for a shape when >= 99.9% of the decisions agree; ``bank_precision.PRECISIONS``
refuses it for the shapes where it does not. Writes ``bench_precision.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

SHAPES = ("default", "paper")
AGREEMENT_FLOOR = 0.999


def configs(epochs: int | None) -> dict:
    from imgprivacy.docl import AutoencoderConfig

    base = {"default": AutoencoderConfig(), "paper": AutoencoderConfig.paper()}
    return {k: v if epochs is None else v.replace(epochs=epochs) for k, v in base.items()}


def decisions(scores, uploaders: list[str]) -> torch.Tensor:
    """(policies * alphas, B) bool: blocked, for every policy and alpha 1 and 2."""
    from imgprivacy.docl import POLICIES, Guard

    rows = []
    for policy in POLICIES:
        for alpha in (1.0, 2.0):
            rows.append(Guard(policy=policy, alpha=alpha).block_mask(scores, uploaders)[0])
    return torch.stack(rows)


def run_shape(name: str, config, data, *, precisions: list[str]) -> dict:
    from imgprivacy.docl import FilterBank
    from imgprivacy.reproduce.docl_experiments import train_class_models, user_name

    start = time.perf_counter()
    models = train_class_models(data.train_x, data.train_y, data.classes, config=config)
    trained = time.perf_counter() - start
    x = torch.cat([data.test_x, data.test_x, data.public_x])
    n_test = len(data.test_x)
    owner = [user_name(int(c)) for c in data.test_y]
    nxt = [user_name(data.classes[(data.classes.index(int(c)) + 1) % 10]) for c in data.test_y]
    uploaders = owner + nxt + [user_name(data.classes[0])] * len(data.public_x)
    result = {"shape": name, "layer_dims": list(config.layer_dims), "train_seconds": trained}
    reference = None
    for precision in ["fp32", *precisions]:
        bank = FilterBank(
            input_dim=data.input_dim,
            feature_extractor=config.feature_extractor,
            precision=precision,
        )
        bank.add_many([(user_name(c), m) for c, m in zip(data.classes, models)])
        scores = bank.score(x)
        blocked = decisions(scores, uploaders)
        weight_bytes = sum(
            t.numel() * t.element_size()
            for g in bank.snapshot().groups
            for t in (g.first_weight, g.first_bias, *g.weights_t, *g.biases)
        )
        row = {"bytes_per_user": weight_bytes / len(bank)}
        if reference is None:
            reference = (scores.distances, blocked)
            row["blocked_fraction_of_owner_uploads"] = float(blocked[:, :n_test].double().mean())
        else:
            same = blocked == reference[1]
            rel = (scores.distances - reference[0]).abs() / reference[0].abs()
            row.update(
                decisions=int(same.numel()),
                differing=int((~same).sum()),
                agreement=float(same.double().mean()),
                max_relative_distance_error=float(rel.max()),
                holds=bool(same.double().mean() >= AGREEMENT_FLOOR),
            )
        result[precision] = row
        print(f"  {name:<8} {precision:<5} {json.dumps(row)}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-per-class", type=int, default=2000)
    parser.add_argument("--test-per-class", type=int, default=None)
    parser.add_argument("--public-count", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=None, help="default: each config's own")
    parser.add_argument("--precisions", nargs="+", default=["fp16", "bf16"])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--out", type=Path, default=Path("reports/bench"))
    args = parser.parse_args()

    from imgprivacy.reproduce.docl_data import mnist_experiment

    data = mnist_experiment(
        train_per_class=args.train_per_class,
        test_per_class=args.test_per_class,
        public_count=args.public_count,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "bench_precision.json"
    result = {
        "settings": vars(args) | {"out": str(args.out)},
        "threads": torch.get_num_threads(),
        "agreement_floor": AGREEMENT_FLOOR,
        "shapes": {},
    }
    for name, config in configs(args.epochs).items():
        if name not in args.shapes:
            continue
        result["shapes"][name] = run_shape(name, config, data, precisions=args.precisions)
        path.write_text(json.dumps(result, indent=2))  # partial results as they come
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
