"""Feature extraction throughput per extractor, and edge-side training time for one user.

    OMP_NUM_THREADS=1 python benchmarks/bench_features.py --out reports/bench

For each registered extractor: images/s of ``transform`` on a batch of its own kind of images
(MNIST digits, CIFAR-10, Yale B faces; best of ``--repeats``), then the time one user's device
needs for the whole guard: extract its images and fit the reproduction's autoencoder on them.
``faces-cnn`` uses ``$IMGPRIVACY_FACE_EXTRACTOR`` / the user cache (it is skipped, with the
reason, when that file is missing). Prints a table, writes ``bench_features.json``.
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

from imgprivacy.data import load_mnist
from imgprivacy.data.cifar10 import load_cifar10
from imgprivacy.data.faces import IdentitySplit, identities, load_yaleb
from imgprivacy.docl import AutoencoderConfig, OneClassAutoencoder
from imgprivacy.errors import DataNotFoundError
from imgprivacy.features import get_extractor
from imgprivacy.reproduce.docl_cifar10 import configurations as cifar_configs
from imgprivacy.reproduce.docl_faces import configurations as face_configs


def images_for(name: str, count: int) -> tuple[np.ndarray, np.ndarray, AutoencoderConfig]:
    """(benchmark images, one user's training images, that user's config) for an extractor."""
    if name.startswith("pixels"):
        train = load_mnist("train")
        user = train.images[train.labels == 0]
        config = AutoencoderConfig(feature_extractor=name)
        return train.images[:count], user, config
    if name in ("resnet20-cifar", "resnet-pair-cifar"):
        train = load_cifar10("train")
        return train.images[:count], train.images[train.labels == 0], cifar_configs(name)["default"]
    faces = load_yaleb()
    users = identities(faces, IdentitySplit().users)
    user = users.images[users.labels == users.labels[0]][:45]
    reps = int(np.ceil(count / len(faces)))
    return np.concatenate([faces.images] * reps)[:count], user, face_configs(False)["m32"]


def measure(name: str, *, count: int, repeats: int) -> dict:
    extractor = get_extractor(name)
    batch, user, config = images_for(name, count)
    extractor.transform(batch[:8])  # load weights once, outside the timing
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        extractor.transform(batch)
        best = min(best, time.perf_counter() - start)
    start = time.perf_counter()
    features = extractor.transform(user)
    extract = time.perf_counter() - start
    start = time.perf_counter()
    OneClassAutoencoder(config.replace(input_dim=extractor.dim)).fit(features)
    fit = time.perf_counter() - start
    return {
        "extractor": name,
        "dim": extractor.dim,
        "images": len(batch),
        "images_per_second": len(batch) / best,
        "user_images": len(user),
        "user_model": f"{config.layer_widths or 'D-M-D'} M={config.hidden_dim}, {config.epochs} epochs",
        "user_extract_seconds": extract,
        "user_fit_seconds": fit,
        "user_total_seconds": extract + fit,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/bench"))
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--extractors", nargs="*", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from imgprivacy.features import FEATURES

    rows, skipped = [], {}
    for name in args.extractors or list(FEATURES):
        try:
            rows.append(measure(name, count=args.images, repeats=args.repeats))
        except DataNotFoundError as exc:
            skipped[name] = str(exc)
    header = f"{'extractor':<16}{'D':>5}{'images/s':>11}{'user imgs':>11}{'extract s':>11}{'fit s':>8}{'total s':>9}"
    print(header)
    for r in rows:
        print(
            f"{r['extractor']:<16}{r['dim']:>5}{r['images_per_second']:>11.0f}{r['user_images']:>11}"
            f"{r['user_extract_seconds']:>11.2f}{r['user_fit_seconds']:>8.2f}{r['user_total_seconds']:>9.2f}"
        )
    for name, why in skipped.items():
        print(f"{name}: skipped ({why})")
    result = {
        "threads": args.threads,
        "machine": {
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "rows": rows,
        "skipped": skipped,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_features.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out / 'bench_features.json'} (load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
