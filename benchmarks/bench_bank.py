"""Bank scoring throughput beside the machine's own limits, against the usual Python stack.

    python benchmarks/bench_bank.py --out reports/bench                 # full tables (~10 min)
    python benchmarks/bench_bank.py --shapes paper --batches 256 1      # a subset
    python benchmarks/bench_bank.py --shapes default --batches 32 256 --methods bank \
        --chunks-per-thread 1 4                         # fixed shares against claimed ranges

Methods, for the paper-shaped (784-32-784) and default (784-256-32-256-784) models:
``naive-loop`` (a Python loop over per-user modules), ``einsum`` (one plain batched einsum over
all stacked models, no chunking), ``bank-torch`` (the bank's torch path: chunked addmm/baddbmm and
an in-place elementwise tail), ``bank`` (the fused native kernel, fp32 weights),
``bank-no-panel-prefetch`` (the same kernel built without fetching each panel of weights ahead,
the earlier kernel: the baseline of that change at small batches), ``bank-auto``
(what ``FilterBank()`` runs by default: the native kernel where it builds, torch otherwise, the
choice printed in the ``kernel`` column) and ``bank-fp16`` / ``bank-bf16`` (the native kernel on
compact weights).

Limits measured in the same run (at the start and at the end; the better of each is used):
the best fp32 GFLOP/s of a 2048x2048 matmul (the roofline) and the read bandwidth, a plain sum
over a 512 MiB tensor whose pages are touched first (an untouched ``torch.empty`` reads the zero
page and fakes ~200 GB/s). Batches of B >= 8 are compute-bound and are reported as a fraction of
the roofline, FLOPs counted as 2 * B * N * (multiply-adds per model); B = 1 reads every weight
once per check and is reported as weight bytes read per second over the read bandwidth. Batches
of 8 and 32 are what the service's micro-batcher makes of 8 and 32 concurrent checks: one pass
over the weights serves them all. Each (shape, N, B, method) cell runs in a fresh subprocess so
its peak RSS is its own. The load average (``/proc/loadavg``) is recorded at the start and the
end: on a shared machine the ratios, not the absolute figures, are what to read.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

SHAPES = {"paper": (784, 32, 784), "default": (784, 256, 32, 256, 784)}
METHODS = (
    "naive-loop",
    "einsum",
    "bank-torch",
    "bank",
    "bank-no-panel-prefetch",
    "bank-auto",
    "bank-fp16",
    "bank-bf16",
)
BANKS = {
    "bank-torch": ("fp32", "torch"),
    "bank": ("fp32", "native"),
    "bank-no-panel-prefetch": ("fp32", "native"),
    "bank-auto": ("fp32", "auto"),
    "bank-fp16": ("fp16", "native"),
    "bank-bf16": ("bf16", "native"),
}


def multiply_adds(dims: tuple[int, ...]) -> int:
    return sum(a * b for a, b in zip(dims[:-1], dims[1:]))


def random_models(n: int, dims: tuple[int, ...], seed: int = 0):
    from imgprivacy.docl import AutoencoderConfig, OneClassAutoencoder

    widths = dims[1 : (len(dims) - 1) // 2]
    cfg = AutoencoderConfig(input_dim=dims[0], hidden_dim=dims[len(dims) // 2], layer_widths=widths)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n):
        weights = {}
        for k, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:])):
            weights[f"layers.{k}.weight"] = (
                torch.randn(fan_out, fan_in, generator=gen) / fan_in**0.5
            )
            weights[f"layers.{k}.bias"] = torch.randn(fan_out, generator=gen) * 0.1
        yield OneClassAutoencoder.from_weights(cfg, weights, error_mean=30.0, error_std=8.0)


def time_it(fn, *, min_seconds: float = 1.0, max_reps: int = 50) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) per call."""
    fn()  # warm-up
    reps, start, cpu = 0, time.perf_counter(), time.process_time()
    while True:
        fn()
        reps += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds or reps >= max_reps:
            return elapsed / reps, (time.process_time() - cpu) / reps


def measure_limits() -> dict[str, float]:
    """The roofline and the read bandwidth, per wall second and per CPU second."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    matmul = [time_it(lambda: a @ b, min_seconds=0.5) for _ in range(3)]
    data = torch.ones(128 * 1024 * 1024)  # 512 MiB, every page written before it is read
    reads = [time_it(data.sum, min_seconds=0.5) for _ in range(3)]
    flops, size = 2 * 2048**3, data.numel() * data.element_size()
    return {
        "roofline_gflops": flops / min(t[0] for t in matmul) / 1e9,
        "read_gbs": size / min(t[0] for t in reads) / 1e9,
        "roofline_gflops_cpu": flops / min(t[1] for t in matmul) / 1e9,
        "read_gbs_cpu": size / min(t[1] for t in reads) / 1e9,
    }


def add_ratios(row: dict, limits: dict[str, float]) -> None:
    """Ratios to the limits, by wall time and by CPU time (the latter stable under load)."""
    cpu = row["seconds_per_batch"] / row["cpu_seconds_per_batch"]
    row["fraction_of_roofline"] = row["gflops"] / limits["roofline_gflops"]
    row["fraction_of_read_bandwidth"] = row["weight_gbs"] / limits["read_gbs"]
    row["fraction_of_roofline_cpu"] = row["gflops"] * cpu / limits["roofline_gflops_cpu"]
    row["fraction_of_read_bandwidth_cpu"] = row["weight_gbs"] * cpu / limits["read_gbs_cpu"]


def peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited from the parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_average() -> list[float]:
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


def einsum_distances(group, x: torch.Tensor) -> torch.Tensor:
    """The plain batched baseline: every model at once, no chunking, no fusion."""
    act = torch.einsum("bd,nmd->nbm", x, group.first_weight) + group.first_bias[:, None]
    act = act.relu()
    for k, (weight_t, bias) in enumerate(zip(group.weights_t, group.biases)):
        act = torch.einsum("nbi,nio->nbo", act, weight_t) + bias[:, None]
        if k < len(group.weights_t) - 1:
            act = act.relu()
    return (act.sigmoid() - x).square().sum(-1).t()


def run_cell(shape: str, n: int, batch: int, method: str, chunks: int | None = None) -> dict:
    from imgprivacy.docl import FilterBank, bank_kernels

    if chunks is not None:  # model ranges per thread of the native kernel (1: a fixed share each)
        bank_kernels.CHUNKS_PER_THREAD = chunks
    if method == "bank-no-panel-prefetch":
        bank_kernels._library = bank_kernels.build_library(("PANEL_PREFETCH=0",))

    dims = SHAPES[shape]
    x = torch.rand(batch, dims[0])
    weight_bytes = 4 * multiply_adds(dims) * n
    kernel = "torch"
    if method == "naive-loop":
        nets = [m.net_ for m in random_models(n, dims)]

        def fn():
            with torch.inference_mode():
                return torch.stack(
                    [(torch.sigmoid(net(x)) - x).square().sum(1) for net in nets], dim=1
                )
    else:
        precision, requested = BANKS.get(method, ("fp32", "torch"))
        bank = FilterBank(input_dim=dims[0], precision=precision, kernel=requested)
        # A generator: the bank keeps its own copy and the models are freed as they go.
        bank.add_many((f"u{i}", m) for i, m in enumerate(random_models(n, dims)))
        group = bank.snapshot().groups[0]
        weight_bytes = multiply_adds(dims) * n * group.first_weight.element_size()
        if method == "einsum":

            def fn():
                with torch.inference_mode():
                    return einsum_distances(group, x)
        else:
            fn = lambda: bank.distances(x)  # noqa: E731
            kernel = "+".join(bank.kernels_for(batch))
    seconds, cpu_seconds = time_it(fn, min_seconds=2.0 if n >= 1000 else 1.0, max_reps=200)
    return {
        "shape": shape,
        "users": n,
        "batch": batch,
        "method": method,
        "kernel": kernel,  # what scored each group of models
        "chunks_per_thread": chunks,
        "seconds_per_batch": seconds,
        "cpu_seconds_per_batch": cpu_seconds,
        "checks_per_second": batch / seconds,
        "gflops": 2 * batch * n * multiply_adds(dims) / seconds / 1e9,
        "weight_gbs": weight_bytes / seconds / 1e9,
        "weight_bytes_per_user": weight_bytes / n,
        "peak_rss_mib": peak_rss_mib(),
    }


def print_row(row: dict) -> None:
    chunks = f"chunks={row['chunks_per_thread']} " if row.get("chunks_per_thread") else ""
    kind = "roofline" if row["batch"] > 1 else "read_bandwidth"
    limit = (
        f"{100 * row[f'fraction_of_{kind}']:5.1f}% of {kind.replace('_', ' ')} "
        f"({100 * row[f'fraction_of_{kind}_cpu']:5.1f}% by CPU time)"
    )
    print(
        f"{row['shape']:<8} N={row['users']:>5} B={row['batch']:>4} {row['method']:<10} "
        f"{row.get('kernel', ''):<6} {chunks}"
        f"{row['checks_per_second']:>9.1f} checks/s {row['gflops']:>6.1f} GFLOP/s "
        f"{row['weight_gbs']:>6.2f} GB/s  {limit}  "
        f"{row['weight_bytes_per_user'] / 1e6:5.2f} MB/user  RSS {row['peak_rss_mib']:>6.0f} MiB",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--users", type=int, nargs="+", default=[1000])
    parser.add_argument("--batches", type=int, nargs="+", default=[256, 32, 8, 1])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--out", type=Path, default=Path("reports/bench"))
    parser.add_argument(
        "--chunks-per-thread",
        type=int,
        nargs="+",
        default=[None],
        help="model ranges each native-kernel thread claims in turn (default: the library's, 4; "
        "1 = one fixed share per thread, the earlier split); several values alternate per cell",
    )
    parser.add_argument("--cell", nargs=5, help=argparse.SUPPRESS)  # shape N B method chunks
    args = parser.parse_args()
    if args.cell:
        shape, n, batch, method, chunks = args.cell
        chunks = None if chunks == "-" else int(chunks)
        print(json.dumps(run_cell(shape, int(n), int(batch), method, chunks)))
        return

    load_start = load_average()
    limits_start = measure_limits()
    print(f"load average at start {load_start}; limits {limits_start}", flush=True)
    rows = []
    for shape in args.shapes:
        for n in args.users:
            for batch in args.batches:
                for method, chunks in itertools.product(args.methods, args.chunks_per_thread):
                    chunk_arg = "-" if chunks is None else str(chunks)
                    cell = [shape, str(n), str(batch), method, chunk_arg]
                    out = subprocess.run(
                        [sys.executable, __file__, "--cell", *cell],
                        check=True,
                        capture_output=True,
                        text=True,
                    ).stdout
                    row = json.loads(out.strip().splitlines()[-1])
                    add_ratios(row, limits_start)
                    rows.append(row)
                    print_row(row)
    limits_end = measure_limits()
    load_end = load_average()
    limits = {k: max(limits_start[k], limits_end[k]) for k in limits_start}
    for row in rows:  # ratios to the better of the two measurements of each limit
        add_ratios(row, limits)
    print(
        f"\nroofline (2048x2048 fp32 matmul) {limits['roofline_gflops']:.1f} GFLOP/s, read "
        f"bandwidth {limits['read_gbs']:.1f} GB/s; per CPU second "
        f"{limits['roofline_gflops_cpu']:.1f} GFLOP and {limits['read_gbs_cpu']:.1f} GB; "
        f"torch threads {torch.get_num_threads()}; load average start {load_start} end {load_end}"
    )
    print("\nratios to the limits (B >= 8: roofline; B = 1: read bandwidth):")
    for row in rows:
        print_row(row)
    speedups = {}
    for row in rows:
        base = next(
            (
                r
                for r in rows
                if r["method"] == "naive-loop"
                and (r["shape"], r["users"], r["batch"])
                == (row["shape"], row["users"], row["batch"])
            ),
            None,
        )
        if base is not None and row["method"] != "naive-loop":
            key = f"{row['shape']},N={row['users']},B={row['batch']},{row['method']}"
            if row.get("chunks_per_thread"):
                key += f",chunks={row['chunks_per_thread']}"
            speedups[key] = base["seconds_per_batch"] / row["seconds_per_batch"]
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "load_average": {"start": load_start, "end": load_end},
        "limits": {"start": limits_start, "end": limits_end, "used": limits},
        "shapes": {k: list(v) for k, v in SHAPES.items()},
        "rows": rows,
        "speedup_over_naive_loop": speedups,
    }
    path = args.out / "bench_bank.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
