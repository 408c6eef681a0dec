"""Bank scoring throughput against a naive per-user loop and the machine's matmul roofline.

    python benchmarks/bench_bank.py --out reports/bench            # full table (a few minutes)
    python benchmarks/bench_bank.py --users 10 100 --batches 1     # a subset

Each (N, B, method) cell runs in a fresh subprocess so its peak RSS is its own. FLOPs are counted
as 4*B*N*M*D (two matrix products of 2*M*D each per input and model). The roofline is the best
fp32 GFLOP/s of a 2048x2048 matmul measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

D, M = 784, 32


def random_models(n: int, seed: int = 0):
    from imgprivacy.docl import AutoencoderConfig, OneClassAutoencoder

    cfg = AutoencoderConfig.paper(input_dim=D, hidden_dim=M)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n):
        weights = {
            "layers.0.weight": torch.randn(M, D, generator=gen) * 0.05,
            "layers.0.bias": torch.zeros(M),
            "layers.1.weight": torch.randn(D, M, generator=gen) * 0.05,
            "layers.1.bias": torch.zeros(D),
        }
        yield OneClassAutoencoder.from_weights(cfg, weights, error_mean=30.0, error_std=8.0)


def time_it(fn, *, min_seconds: float = 1.0, max_reps: int = 50) -> float:
    fn()  # warm-up
    reps, start = 0, time.perf_counter()
    while True:
        fn()
        reps += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds or reps >= max_reps:
            return elapsed / reps


def roofline_gflops() -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    seconds = min(time_it(lambda: a @ b, min_seconds=0.5) for _ in range(3))
    return 2 * 2048**3 / seconds / 1e9


def run_cell(n: int, batch: int, method: str) -> dict:
    from imgprivacy.docl import FilterBank

    x = torch.rand(batch, D)
    if method == "bank":
        bank = FilterBank(input_dim=D)
        # A generator: the bank keeps its own copy and the models are freed as they go.
        bank.add_many((f"u{i}", m) for i, m in enumerate(random_models(n)))
        bank.snapshot()
        fn = lambda: bank.distances(x)  # noqa: E731
    else:  # the baseline: a Python loop over per-user modules
        nets = [m.net_ for m in random_models(n)]

        def fn():
            with torch.inference_mode():
                return torch.stack(
                    [(torch.sigmoid(net(x)) - x).square().sum(1) for net in nets], dim=1
                )

    seconds = time_it(fn, min_seconds=2.0 if n >= 1000 else 1.0, max_reps=200)
    flops = 4 * batch * n * M * D
    return {
        "users": n,
        "batch": batch,
        "method": method,
        "seconds_per_batch": seconds,
        "images_per_second": batch / seconds,
        "gflops": flops / seconds / 1e9,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[10, 100, 1000, 10000])
    parser.add_argument("--batches", type=int, nargs="+", default=[256, 1])
    parser.add_argument("--methods", nargs="+", default=["bank", "naive-loop"])
    parser.add_argument("--out", type=Path, default=Path("reports/bench"))
    parser.add_argument("--cell", nargs=3, help=argparse.SUPPRESS)  # internal: N B method
    args = parser.parse_args()
    if args.cell:
        n, batch, method = int(args.cell[0]), int(args.cell[1]), args.cell[2]
        print(json.dumps(run_cell(n, batch, method)))
        return

    roofline = roofline_gflops()
    rows = []
    for n in args.users:
        for batch in args.batches:
            for method in args.methods:
                out = subprocess.run(
                    [sys.executable, __file__, "--cell", str(n), str(batch), method],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                row = json.loads(out.strip().splitlines()[-1])
                row["fraction_of_roofline"] = row["gflops"] / roofline
                rows.append(row)
                print(
                    f"N={n:>6} B={batch:>4} {method:<11} {row['images_per_second']:>12.1f} img/s "
                    f"{row['gflops']:>7.1f} GFLOP/s ({100 * row['fraction_of_roofline']:5.1f}% of "
                    f"roofline) peak RSS {row['peak_rss_mib']:>7.0f} MiB",
                    flush=True,
                )
    speedups = {}
    for n in args.users:
        for batch in args.batches:
            cell = {r["method"]: r for r in rows if r["users"] == n and r["batch"] == batch}
            if {"bank", "naive-loop"} <= set(cell):
                speedups[f"N={n},B={batch}"] = (
                    cell["naive-loop"]["seconds_per_batch"] / cell["bank"]["seconds_per_batch"]
                )
    print(
        f"\nroofline (2048x2048 fp32 matmul): {roofline:.1f} GFLOP/s, "
        f"torch threads {torch.get_num_threads()}"
    )
    print("bank speed-up over the naive loop:")
    for key, value in speedups.items():
        print(f"  {key:<16} {value:6.1f}x")
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "roofline_gflops": roofline,
        "dims": {"D": D, "M": M},
        "rows": rows,
        "speedup_over_naive_loop": speedups,
    }
    path = args.out / "bench_bank.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
