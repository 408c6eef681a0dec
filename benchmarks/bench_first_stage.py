"""Recall and cost of the bank's first stage (:mod:`imgprivacy.docl.first_stage`) on MNIST users.

    python benchmarks/bench_first_stage.py --out reports/bench     # 200 users, a few minutes
    python benchmarks/bench_first_stage.py --users-per-class 50 --epochs 10 --images 3000 \
        --public 1000                    # the size of the testbed in docs/scaling.md (slow)

Each MNIST class gets ``--users-per-class`` users, each training a paper-shaped 784-32-784
autoencoder (Adam) on a random subset of 300-1000 training images of that class; 100 training
images per class are held out of every user's pool. Uploads are MNIST test images (each uploaded
once by a user of another class and once by another user of its own class) and Fashion-MNIST
test images (by a random user). For each Guard policy and alpha, the full bank's decisions are
compared with those of the bank restricted to the first stage's survivors, one upload per check:

- recall: of the uploads the full bank blocks, the fraction the first stage also blocks (a first
  stage can only turn blocks into shares, never the reverse);
- agreement: the fraction of all decisions that are equal;
- scored: the mean fraction of the bank's models scored exactly per check (the kept fraction plus
  the uploader's own model).

The sketches are built from the weights and a public reference set (``--reference``: Fashion-MNIST
training images, or the held-out digits), and calibrated on it (``--calibration``). Cost: the time
of a decision (bank pass + Guard) with the full bank, with the first stage (each upload scored
under its own survivors by the pair gather), and with the union of the batch's survivors scored
for every upload (the previous design), at B = 1 and B = 64, measured back to back in this
process, with the bank's models copied ``--time-copies`` times to give a larger N, and the
first stage's multiply-adds per check against the full bank's.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch

from imgprivacy.data import load_fashion_mnist, load_mnist
from imgprivacy.docl import AutoencoderConfig, FilterBank, Guard, OneClassAutoencoder
from imgprivacy.docl.first_stage import FirstStage, score_models
from imgprivacy.docl.first_stage_kernel import UNSCORED
from imgprivacy.features import get_extractor

GUARDS = [(policy, alpha) for policy in ("paper", "any-other", "margin") for alpha in (1.0, 2.0)]


def build_users(args, rng):
    ext = get_extractor("pixels")
    train = load_mnist("train")
    held = np.concatenate(
        [rng.permutation(np.flatnonzero(train.labels == c))[:100] for c in range(10)]
    )
    pool = np.ones(len(train.labels), bool)
    pool[held] = False
    x = ext.transform(train.images)
    cfg = AutoencoderConfig.paper(optimizer="adam", learning_rate=1e-3, epochs=args.epochs)
    bank = FilterBank(input_dim=784, feature_extractor="pixels")
    owners_class = {}
    items = []
    for c in range(10):
        candidates = np.flatnonzero((train.labels == c) & pool)
        for k in range(args.users_per_class):
            user = f"c{c}-u{k:03d}"
            size = int(rng.integers(300, 1001))
            rows = rng.choice(candidates, size=size, replace=False)
            seed = c * args.users_per_class + k
            items.append((user, OneClassAutoencoder(cfg.replace(seed=seed)).fit(x[rows])))
            owners_class[user] = c
    bank.add_many(items)
    return bank, items, owners_class, ext.transform(train.images[held])


def uploads(args, rng, owners_class):
    ext = get_extractor("pixels")
    test = load_mnist("test")
    fashion = load_fashion_mnist("test")
    by_class = {c: [u for u, k in owners_class.items() if k == c] for c in range(10)}
    users = list(owners_class)
    images = rng.permutation(len(test.labels))[: args.images]
    public = rng.permutation(len(fashion.labels))[: args.public]
    x = torch.cat([ext.transform(test.images[images]), ext.transform(fashion.images[public])])
    rows, uploaders, kinds = [], [], []
    for j, i in enumerate(images):
        c = int(test.labels[i])
        other = int(rng.choice([k for k in range(10) if k != c]))
        rows += [j, j]
        uploaders += [str(rng.choice(by_class[other])), str(rng.choice(by_class[c]))]
        kinds += ["other class", "same class"]
    for j in range(len(public)):
        rows.append(len(images) + j)
        uploaders.append(str(rng.choice(users)))
        kinds.append("public")
    return x, rows, uploaders, kinds


def recall_table(bank, stage, x, rows, uploaders):
    results = []
    full_scores = bank.score(x)
    for policy, alpha in GUARDS:
        guard = Guard(policy=policy, alpha=alpha)
        full = [d.share for d in guard.decide(full_scores.select(rows=rows), uploaders)]
        staged, scored = [], []
        for row, uploader in zip(rows, uploaders):
            scores = stage.score(bank, guard, x[row : row + 1], uploader)
            staged.append(guard.decide(scores, uploader)[0].share)
            scored.append(int((scores.distances < UNSCORED).sum()))
        blocks = [not s for s in full]
        kept = sum(b and not s for b, s in zip(blocks, staged))
        results.append(
            dict(
                policy=policy,
                alpha=alpha,
                uploads=len(rows),
                blocks=sum(blocks),
                recall=kept / max(sum(blocks), 1),
                agreement=float(np.mean([f == s for f, s in zip(full, staged)])),
                scored=float(np.mean(scored)) / len(bank),
            )
        )
    return results


def timings(bank, stage, x, *, seconds):
    """Median ms of a decision: the full bank, the first stage (pair gather), the union of the
    batch's survivors scored for every upload; interleaved, at B = 1 and 64."""
    guard = Guard(policy="margin", alpha=1.0)
    out = []
    for batch in (1, 64):
        xb = x[:batch]
        uploaders = [bank.owners[(37 * k) % len(bank)] for k in range(batch)]

        def full(xb=xb, uploaders=uploaders):
            guard.decide(bank.score(xb), uploaders)

        def staged(xb=xb, uploaders=uploaders):
            stage.decide(bank, guard, xb, uploaders)

        def union(xb=xb, uploaders=uploaders):
            kept = stage.candidates(bank, guard, xb, uploaders)
            guard.decide(score_models(bank, xb, kept), uploaders)

        runs = {"full": full, "first stage": staged, "union": union}
        times = {name: [] for name in runs}
        for fn in runs.values():  # warm-up
            fn()
        stop = time.perf_counter() + seconds
        while time.perf_counter() < stop or len(times["full"]) < 3:
            for name, fn in runs.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
        union_size = len(stage.candidates(bank, guard, xb, uploaders))
        out.append(
            dict(
                N=len(bank),
                B=batch,
                full_ms=1000 * float(np.median(times["full"])),
                stage_ms=1000 * float(np.median(times["first stage"])),
                union_ms=1000 * float(np.median(times["union"])),
                union_fraction=union_size / len(bank),
                repeats=len(times["full"]),
            )
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users-per-class", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--images", type=int, default=300, help="MNIST test images uploaded")
    parser.add_argument("--public", type=int, default=200, help="Fashion-MNIST images uploaded")
    parser.add_argument("--reference", choices=("clothes", "digits"), default="clothes")
    parser.add_argument("--reference-count", type=int, default=1000)
    parser.add_argument("--rank", type=int, default=0)
    parser.add_argument("--keep", type=float, default=0.05)
    parser.add_argument("--ranking", default="probability")
    parser.add_argument("--calibration", default="affine")
    parser.add_argument("--calibration-size", type=int, default=400)
    parser.add_argument("--iterations", type=int, default=1)
    parser.add_argument("--time-copies", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="directory for the JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    started = time.time()

    bank, items, owners_class, held_digits = build_users(args, rng)
    if args.reference == "clothes":
        fashion = load_fashion_mnist("train")
        picked = rng.permutation(len(fashion.labels))[: args.reference_count]
        reference = get_extractor("pixels").transform(fashion.images[picked])
    else:
        reference = held_digits[rng.permutation(len(held_digits))[: args.reference_count]]
    settings = dict(
        rank=args.rank,
        keep=args.keep,
        ranking=args.ranking,
        iterations=args.iterations,
        calibration=args.calibration,
        calibration_size=args.calibration_size,
    )
    stage = FirstStage(**settings).fit(bank, reference=reference)
    x, rows, uploaders, _ = uploads(args, rng, owners_class)
    recall = recall_table(bank, stage, x, rows, uploaders)

    copies = FilterBank(input_dim=784, feature_extractor="pixels")
    copies.add_many(
        (f"{owner}-copy{k}", model) for k in range(args.time_copies) for owner, model in items
    )
    timed_stage = FirstStage(**settings).fit(copies, reference=reference)
    cost = timings(copies, timed_stage, x, seconds=args.seconds)
    params = 2 * 784 * 32
    kept = max(1, math.ceil(args.keep * len(copies)))
    # the sketch, the kept models and the uploader's model (scored once, for its voucher limit)
    macs = (args.rank + 1) * 784 * len(copies) + params * (kept + 1)
    for row in cost:
        row["macs_fraction"] = macs / (params * len(copies))

    print(f"N = {len(bank)} users, {len(rows)} uploads, first stage: rank {args.rank}, "
          f"keep {args.keep:.0%}, ranking {args.ranking}, calibration {args.calibration}, "
          f"reference {args.reference}")  # fmt: skip
    print(
        f"{'policy':<10} {'alpha':>5} {'blocks':>7} {'recall':>8} {'agreement':>10} {'scored':>7}"
    )
    for r in recall:
        print(
            f"{r['policy']:<10} {r['alpha']:>5.1f} {r['blocks']:>7d} {r['recall']:>8.2%} "
            f"{r['agreement']:>10.2%} {r['scored']:>7.1%}"
        )
    print(
        f"\n{'N':>6} {'B':>3} {'full ms':>9} {'stage ms':>9} {'time':>6} {'mult-adds':>9} "
        f"{'union ms':>9} {'union':>6}"
    )
    for c in cost:
        print(
            f"{c['N']:>6d} {c['B']:>3d} {c['full_ms']:>9.2f} {c['stage_ms']:>9.2f} "
            f"{c['stage_ms'] / c['full_ms']:>6.1%} {c['macs_fraction']:>9.1%} "
            f"{c['union_ms']:>9.2f} {c['union_fraction']:>6.1%}"
        )
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / "bench_first_stage.json"
        result = dict(
            args={k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            machine=dict(platform=platform.platform(), threads=args.threads),
            recall=recall,
            cost=cost,
            seconds=time.time() - started,
        )
        path.write_text(json.dumps(result, indent=1))
        print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
