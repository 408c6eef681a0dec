"""Edge-side training time: one user's one-class autoencoder on their ~6000 MNIST images.

    python benchmarks/bench_training.py --out reports/bench

Times `OneClassAutoencoder.fit` for the paper-exact model and imgprivacy's default (deep,
smoothed pixels) with 1 and 2 torch threads, each in a fresh subprocess; prints a table and
writes JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch


def run_cell(name: str, threads: int, digit: int) -> dict:
    from imgprivacy.data import load_mnist
    from imgprivacy.docl import AutoencoderConfig, OneClassAutoencoder
    from imgprivacy.features import get_extractor

    torch.set_num_threads(threads)
    config = {
        "paper-exact": AutoencoderConfig.paper(),
        "default": AutoencoderConfig(feature_extractor="pixels-smooth"),
    }[name]
    train = load_mnist("train")
    images = train.images[train.labels == digit]
    start = time.perf_counter()
    x = get_extractor(config.feature_extractor).transform(images)
    extract = time.perf_counter() - start
    start = time.perf_counter()
    model = OneClassAutoencoder(config).fit(x)
    fit = time.perf_counter() - start
    return {
        "model": name,
        "threads": threads,
        "images": len(images),
        "epochs": config.epochs,
        "layer_dims": config.layer_dims,
        "feature_seconds": extract,
        "fit_seconds": fit,
        "final_loss": model.history_.epoch_loss[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/bench"))
    parser.add_argument("--digit", type=int, default=0)
    parser.add_argument("--cell", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cell:
        print(json.dumps(run_cell(args.cell[0], int(args.cell[1]), args.digit)))
        return
    rows = []
    for name in ("paper-exact", "default"):
        for threads in (1, 2):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--cell",
                    name,
                    str(threads),
                    "--digit",
                    str(args.digit),
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            row = json.loads(out.strip().splitlines()[-1])
            rows.append(row)
            print(
                f"{name:<12} threads={threads} {row['images']} images x {row['epochs']} epochs: "
                f"fit {row['fit_seconds']:6.1f} s (features {row['feature_seconds']:.2f} s)",
                flush=True,
            )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "bench_training.json"
    path.write_text(json.dumps({"rows": rows}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
