"""Checks per second of the bank sharded over Ray actors, against the in-process bank.

    python benchmarks/bench_sharded.py --out reports/bench               # the full table
    python benchmarks/bench_sharded.py --paper-n 1000 --default-n 200    # a quick look

For each model shape (the paper's 784-32-784 at N = 10,000 and the default 784-256-32-256-784 at
N = 2,000, random weights) and each bank precision (fp32, and fp16: weights stored in 16 bits,
scores accumulated in fp32) it times a full decision (bank pass + Guard) at B = 1 and 64:
in this process (:class:`FilterBank` + :class:`Guard`), then on 1 and 2 shard actors of a local
Ray cluster (``ray.init(num_cpus=2)``). The shards generate their random models themselves
(a :class:`ModelSource` that draws them from the model id), so no weights cross the object store.
Reported: checks/s (B / mean latency), p50 and p99 latency, resident memory of each shard
process, and the Ray hop's overhead (1 shard against in-process at the same N and B).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import time
import zlib
from pathlib import Path

import numpy as np
import torch

D = 784
SHAPES = {
    "paper": dict(hidden_dim=32, layer_widths=()),  # 784-32-784
    "default": dict(hidden_dim=32, layer_widths=(256,)),  # 784-256-32-256-784
}


def random_model(key: str, shape: str):
    from imgprivacy.docl import AutoencoderConfig, OneClassAutoencoder

    cfg = AutoencoderConfig(input_dim=D, **SHAPES[shape])
    gen = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    dims = cfg.layer_dims
    weights = {}
    for i in range(len(dims) - 1):
        weights[f"layers.{i}.weight"] = torch.randn(dims[i + 1], dims[i], generator=gen) * 0.05
        weights[f"layers.{i}.bias"] = torch.zeros(dims[i + 1])
    return OneClassAutoencoder.from_weights(cfg, weights, error_mean=30.0, error_std=8.0)


class RandomSource:
    """N random models of one shape, drawn from their ids (a ModelSource at revision 1)."""

    def __init__(self, n: int, shape: str):
        self.n, self.shape = n, shape

    def revision(self) -> int:
        return 1

    def listing(self) -> tuple[int, dict[str, int]]:
        return 1, {f"user{k}/m": 1 for k in range(self.n)}

    def load(self, model_ids):
        return {key: (1, key.split("/")[0], random_model(key, self.shape)) for key in model_ids}


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def timings(fn, *, min_seconds: float, min_reps: int = 3, max_reps: int = 200) -> list[float]:
    fn()  # warm-up
    samples, start = [], time.perf_counter()
    while len(samples) < max_reps and (
        len(samples) < min_reps or time.perf_counter() - start < min_seconds
    ):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return samples


def summary(samples: list[float], batch: int) -> dict:
    seconds = np.asarray(samples)
    return {
        "checks_per_s": batch / float(seconds.mean()),
        "p50_ms": 1000 * float(np.percentile(seconds, 50)),
        "p99_ms": 1000 * float(np.percentile(seconds, 99)),
        "reps": len(samples),
    }


def inputs(batch: int) -> tuple[torch.Tensor, list[str]]:
    return torch.rand(batch, D, generator=torch.Generator().manual_seed(batch)), ["user0"] * batch


def bench_in_process(shape: str, n: int, precision: str, batches, seconds: float) -> list[dict]:
    from imgprivacy.cluster.shard import release_free_memory
    from imgprivacy.docl import FilterBank, Guard

    before = rss_bytes()
    source = RandomSource(n, shape)
    bank = FilterBank(input_dim=D, precision=precision)
    keys = list(source.listing()[1])
    bank.add_many(((k.split("/")[0], random_model(k, shape)) for k in keys), model_ids=keys)
    bank.snapshot()
    release_free_memory()
    memory = rss_bytes() - before
    guard = Guard(policy="margin")
    rows = []
    for batch in batches:
        x, uploaders = inputs(batch)
        samples = timings(
            lambda x=x, u=uploaders: guard.decide(bank.score(x), u), min_seconds=seconds
        )
        rows.append(
            {
                "shape": shape,
                "n": n,
                "precision": precision,
                "where": "in-process",
                "shards": 0,
                "batch": batch,
                **summary(samples, batch),
                "memory_mb": [memory / 2**20],
            }
        )
        print_row(rows[-1])
    bank = None
    gc.collect()
    return rows


def bench_sharded(
    shape: str, n: int, precision: str, shards: int, batches, seconds: float
) -> list[dict]:
    from imgprivacy.cluster import ShardedBank, ShardedBankConfig
    from imgprivacy.docl import Guard

    threads = max(1, torch.get_num_threads() // shards)
    config = ShardedBankConfig(
        shards=shards, num_cpus=1, torch_threads=threads, check_timeout=600, load_timeout=3600
    )
    started = time.perf_counter()
    bank = ShardedBank(
        guard=Guard(policy="margin"),
        input_dim=D,
        precision=precision,
        source=RandomSource(n, shape),
        config=config,
    )
    bank.sync()
    load_seconds = time.perf_counter() - started
    memory = [s.rss_bytes / 2**20 for s in bank.shard_states]
    rows = []
    try:
        for batch in batches:
            x, uploaders = inputs(batch)
            samples = timings(lambda x=x, u=uploaders: bank.decide(x, u), min_seconds=seconds)
            rows.append(
                {
                    "shape": shape,
                    "n": n,
                    "precision": precision,
                    "where": "ray",
                    "shards": shards,
                    "batch": batch,
                    **summary(samples, batch),
                    "memory_mb": memory,
                    "load_s": load_seconds,
                }
            )
            print_row(rows[-1])
    finally:
        bank.shutdown()
    time.sleep(2)  # let the actors' processes exit before the next bank allocates
    return rows


def print_row(row: dict) -> None:
    memory = "/".join(f"{m:.0f}" for m in row["memory_mb"])
    where = "in-process" if row["where"] == "in-process" else f"ray x{row['shards']}"
    print(
        f"{row['shape']:>8} {row['n']:>6} {row['precision']:>5} {where:>11} {row['batch']:>3} "
        f"{row['checks_per_s']:>10.1f} {row['p50_ms']:>9.1f} {row['p99_ms']:>9.1f} {memory:>12}",
        flush=True,
    )


def overheads(rows: list[dict]) -> list[dict]:
    """The Ray hop: 1 shard against in-process at the same shape, N, precision and B (p50
    difference)."""
    out = []
    cell = lambda r: (r["shape"], r["precision"], r["batch"])  # noqa: E731
    local = {cell(r): r for r in rows if r["where"] == "in-process"}
    for r in rows:
        if r["where"] == "ray" and r["shards"] == 1 and cell(r) in local:
            base = local[cell(r)]
            out.append(
                {
                    "shape": r["shape"],
                    "precision": r["precision"],
                    "n": r["n"],
                    "batch": r["batch"],
                    "overhead_ms": r["p50_ms"] - base["p50_ms"],
                    "ratio": r["p50_ms"] / base["p50_ms"],
                }
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/bench"))
    parser.add_argument("--paper-n", type=int, default=10_000)
    parser.add_argument("--default-n", type=int, default=2_000)
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "fp16"])
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per cell")
    args = parser.parse_args()
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    print(
        f"{'shape':>8} {'N':>6} {'prec':>5} {'bank':>11} {'B':>3} {'checks/s':>10} {'p50 ms':>9} "
        f"{'p99 ms':>9} {'MB/shard':>12}"
    )
    rows = []
    for shape, n in (("paper", args.paper_n), ("default", args.default_n)):
        for precision in args.precisions:
            rows += bench_in_process(shape, n, precision, args.batches, args.seconds)
            for shards in args.shards:
                rows += bench_sharded(shape, n, precision, shards, args.batches, args.seconds)
    ray.shutdown()
    hop = overheads(rows)
    for h in hop:
        print(
            f"ray hop, {h['shape']} {h['precision']} N={h['n']} B={h['batch']}: +{h['overhead_ms']:.1f} ms "
            f"at p50 ({h['ratio']:.2f}x in-process)"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "torch_threads": torch.get_num_threads(),
            "load_average": os.getloadavg(),
        },
        "precisions": args.precisions,
        "rows": rows,
        "ray_hop": hop,
    }
    path = args.out / "bench_sharded.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
