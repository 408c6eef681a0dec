"""Model shapes on MNIST: accuracy and one-class AUC against the cost of a check.

    OMP_NUM_THREADS=1 python benchmarks/bench_model_frontier.py --out reports/bench

For each shape (D-...-M-...-D, trained with the default recipe of ``pixels-smooth``: Adam 1e-3,
30 epochs, batches of 128) the 10 MNIST users of the paper's protocol train one model each on
their digit. The images each user trains on exclude a validation split held out of MNIST's
training set (``--val-per-class`` per digit); the shape is chosen on the validation split and the
MNIST test set is reported beside it. The default is the cheapest shape (FLOPs per image) whose
validation accuracy is within ``--tolerance`` of the best.

Cost per check and user: FLOPs per image (2 per multiply-add), weight bytes (float32), and the
bank's throughput for ``--bank-users`` random models of the shape at B = 1 and B = 256, with its
GFLOP/s as a fraction of a 2048x2048 fp32 matmul measured in the same run (the limit). Writes
``frontier.json`` after every shape, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from imgprivacy.docl import AutoencoderConfig, FilterBank, OneClassAutoencoder
from imgprivacy.docl.autoencoder import AutoencoderNet
from imgprivacy.docl.evaluate import nearest_model_accuracy, one_class_auc
from imgprivacy.reproduce.docl_data import mnist_experiment
from imgprivacy.reproduce.docl_experiments import bank_of, train_class_models

FEATURES = "pixels-smooth"
SHAPES = (
    "784-32-784",  # the paper's shape
    "784-64-32-64-784",
    "784-128-32-128-784",
    "784-256-32-256-784",
)


def parse_shape(shape: str) -> dict:
    """``"784-64-32-64-784"`` -> input_dim 784, layer_widths (64,), hidden_dim 32."""
    dims = [int(d) for d in shape.split("-")]
    if len(dims) < 3 or len(dims) % 2 == 0 or dims != dims[::-1]:
        raise SystemExit(f"{shape!r} is not a mirrored D-...-M-...-D shape")
    middle = len(dims) // 2
    return {"input_dim": dims[0], "layer_widths": tuple(dims[1:middle]), "hidden_dim": dims[middle]}


def cost(config: AutoencoderConfig) -> dict:
    dims = config.layer_dims
    macs = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    params = macs + sum(dims[1:])
    return {"flops_per_image": 2 * macs, "weight_bytes": 4 * params}


def split_validation(labels: np.ndarray, per_class: int, seed: int) -> tuple[np.ndarray, ...]:
    """Indices of training rows and of ``per_class`` validation rows per digit (disjoint)."""
    rng = np.random.default_rng(seed + 1)
    train, val = [], []
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        val.append(rows[:per_class])
        train.append(rows[per_class:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def time_it(fn, *, min_seconds: float = 1.0, max_reps: int = 200) -> float:
    fn()  # warm-up
    reps, start = 0, time.perf_counter()
    while True:
        fn()
        reps += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds or reps >= max_reps:
            return elapsed / reps


def matmul_limit_gflops() -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    seconds = min(time_it(lambda: a @ b, min_seconds=0.5) for _ in range(3))
    return 2 * 2048**3 / seconds / 1e9


def bank_throughput(config: AutoencoderConfig, *, users: int, batch: int) -> dict:
    """Images per second of a bank of ``users`` random models of ``config``'s shape."""
    bank = FilterBank(input_dim=config.input_dim, feature_extractor=config.feature_extractor)
    for i in range(users):
        torch.manual_seed(i)
        weights = AutoencoderNet(config.layer_dims).state_dict()
        model = OneClassAutoencoder.from_weights(config, weights, error_mean=30.0, error_std=8.0)
        bank.add(model, owner=f"u{i}")
    bank.snapshot()
    x = torch.rand(batch, config.input_dim)
    seconds = time_it(lambda: bank.distances(x))
    flops = cost(config)["flops_per_image"] * users * batch
    return {"images_per_second": batch / seconds, "gflops": flops / seconds / 1e9}


def measure(shape: str, data, split, args) -> dict:
    train_rows, val_rows = split
    config = AutoencoderConfig.for_features(FEATURES, **parse_shape(shape))
    if args.epochs:
        config = config.replace(epochs=args.epochs)
    start = time.perf_counter()
    models = train_class_models(
        data.train_x[train_rows], data.train_y[train_rows], data.classes, config=config
    )
    train_seconds = time.perf_counter() - start
    bank = bank_of(models, data.classes)
    row = {"shape": shape, "config": config.to_dict(), **cost(config)}
    for name, x, y in (
        ("validation", data.train_x[val_rows], data.train_y[val_rows]),
        ("test", data.test_x, data.test_y),
    ):
        scores = bank.score(x)
        row[f"{name}_accuracy"] = nearest_model_accuracy(scores, y, data.classes).overall
        row[f"{name}_mean_auc"] = float(np.mean(one_class_auc(scores, y, data.classes)))
    row["train_seconds_per_user"] = train_seconds / len(data.classes)
    for batch in (1, 256):
        cell = bank_throughput(config, users=args.bank_users, batch=batch)
        row[f"bank_images_per_second_b{batch}"] = cell["images_per_second"]
        row[f"bank_fraction_of_limit_b{batch}"] = cell["gflops"] / args.limit
    return row


def choose(rows: list[dict], tolerance: float) -> dict:
    """The cheapest shape within ``tolerance`` of the best validation accuracy."""
    best = max(r["validation_accuracy"] for r in rows)
    within = [r for r in rows if r["validation_accuracy"] >= best - tolerance]
    return min(within, key=lambda r: r["flops_per_image"])


def print_table(rows: list[dict], chosen: dict | None) -> None:
    header = (
        f"{'shape':<22}{'val acc':>8}{'val AUC':>8}{'test acc':>9}{'test AUC':>9}"
        f"{'kFLOP':>8}{'KiB':>7}{'train s':>8}{'img/s B=1':>11}{'img/s B=256':>12}"
        f"{'limit B=1':>10}{'limit B=256':>12}"
    )
    print(header)
    for r in rows:
        mark = "  <- default" if chosen is not None and r["shape"] == chosen["shape"] else ""
        print(
            f"{r['shape']:<22}{100 * r['validation_accuracy']:>7.2f}%"
            f"{100 * r['validation_mean_auc']:>8.2f}{100 * r['test_accuracy']:>8.2f}%"
            f"{100 * r['test_mean_auc']:>9.2f}{r['flops_per_image'] / 1e3:>8.0f}"
            f"{r['weight_bytes'] / 1024:>7.0f}{r['train_seconds_per_user']:>8.1f}"
            f"{r['bank_images_per_second_b1']:>11.0f}{r['bank_images_per_second_b256']:>12.0f}"
            f"{100 * r['bank_fraction_of_limit_b1']:>9.1f}%"
            f"{100 * r['bank_fraction_of_limit_b256']:>11.1f}%{mark}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES))
    parser.add_argument("--val-per-class", type=int, default=1000)
    parser.add_argument(
        "--train-per-class", type=int, help="training images per user (default: all the rest)"
    )
    parser.add_argument("--epochs", type=int, help="default: the default model's")
    parser.add_argument("--bank-users", type=int, default=100)
    parser.add_argument("--tolerance", type=float, default=0.003, help="accuracy, 0.003 = 0.3 pt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("reports/bench"))
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    args.limit = matmul_limit_gflops()
    data = mnist_experiment(feature_extractor=FEATURES, public_count=1, seed=args.seed)
    train_rows, val_rows = split_validation(data.train_y, args.val_per_class, args.seed)
    if args.train_per_class is not None:
        rng = np.random.default_rng(args.seed + 2)
        keep = [
            rng.permutation(train_rows[data.train_y[train_rows] == c])[: args.train_per_class]
            for c in data.classes
        ]
        train_rows = np.sort(np.concatenate(keep))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "frontier.json"
    rows: list[dict] = []
    for shape in args.shapes:
        rows.append(measure(shape, data, (train_rows, val_rows), args))
        chosen = choose(rows, args.tolerance)
        result = {
            "features": FEATURES,
            "machine": {
                "platform": platform.platform(),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "load_average": os.getloadavg(),
            },
            "limit_gflops": args.limit,
            "limit": "2048x2048 fp32 matmul, same run",
            "train_images": int(len(train_rows)),
            "validation_images": int(len(val_rows)),
            "test_images": int(len(data.test_y)),
            "bank_users": args.bank_users,
            "tolerance": args.tolerance,
            "rows": rows,
            "chosen": chosen["shape"],
            "seconds": time.perf_counter() - started,
        }
        path.write_text(json.dumps(result, indent=2))
        print(f"[{shape} done after {result['seconds']:.0f} s]", flush=True)
    print()
    print_table(rows, chosen)
    print(
        f"\n{len(train_rows)} training / {len(val_rows)} validation images (MNIST train), "
        f"{len(data.test_y)} test; limit {args.limit:.1f} GFLOP/s (2048x2048 fp32 matmul), "
        f"torch threads {torch.get_num_threads()}, load average "
        f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}"
    )
    print(
        f"default: {chosen['shape']} (cheapest within {100 * args.tolerance:.1f} points of the "
        f"best validation accuracy)\nwrote {path}"
    )


if __name__ == "__main__":
    main()
