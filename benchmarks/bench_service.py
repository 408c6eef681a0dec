"""Load test of the DOCL service over loopback, beside the bank-only throughput of the same models.

    python benchmarks/bench_service.py --out reports/bench       # N = 0, 100, 1000 x 1/8/32 clients
    python benchmarks/bench_service.py --models 100 --clients 32 --payload png multipart json
    python benchmarks/bench_service.py --models 100 --clients 32 --torch-threads 1 2 --workers 1 2
    python benchmarks/bench_service.py --models 100 1000 --clients 32 --overlap on off --repeat 3

For each N the script fills a fresh SQLite database with N registered autoencoders (the default
784-256-32-256-784 unless ``--layer-widths``; random weights: the cost of a check does not depend
on their values). N = 0 is one user and no model: the HTTP path alone (body read, PNG decode,
answer), no bank pass. Before each server starts, a separate process loads that database into the
service's bank as the server does and times the bank and Guard alone (``bank_scorer``) on digit
features, at B = 1 and B = each client count, on the server's torch threads: the bank-only
throughput each service figure is printed beside (a batch of the service holds at most C checks).
Then ``imgprivacy serve`` runs on 127.0.0.1 and a load generator in its own process POSTs 28x28
digits to /v1/check with C concurrent connections: wrk (Debian's ``wrk``, C, a small Lua script
for the POST) when installed, else asyncio + httpx; ``--generator wrk python`` runs both. Server CPU
comes from /proc (the server and its workers), the generator's from its rusage, batch sizes and
bank-pass time from the service's /metrics. The machine's load average is recorded at start and
end: on a shared machine wall-clock figures drop, CPU per check much less. Writes
``bench_service.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from service_load import PAYLOADS, digit_images, run_load


def populate(
    database_url: str, n_models: int, *, layer_widths: tuple[int, ...] | None, seed: int = 0
) -> str:
    """N users with one random model each, written straight to storage; returns a user token.

    With N = 0 one user without a model is created (the HTTP path alone).
    """
    import torch

    from imgprivacy.docl import AutoencoderConfig, OneClassAutoencoder, autoencoder_to_bytes
    from imgprivacy.docl.persistence import expected_shapes
    from imgprivacy.service.auth import hash_token, new_token
    from imgprivacy.service.storage import NewModel, Storage

    storage = Storage(database_url)
    storage.create_schema()
    config = (
        AutoencoderConfig()
        if layer_widths is None
        else AutoencoderConfig(layer_widths=layer_widths)
    )
    gen = torch.Generator().manual_seed(seed)
    token = new_token()
    for i in range(max(n_models, 1)):
        user_token = token if i == 0 else new_token()
        user = storage.add_user(f"bench{i:05d}", hash_token(user_token))
        if i >= n_models:
            break
        weights = {
            name: torch.randn(shape, generator=gen) * 0.05
            for name, shape in expected_shapes(config).items()
        }
        model = OneClassAutoencoder.from_weights(config, weights, error_mean=30.0, error_std=8.0)
        new = NewModel(
            blob=autoencoder_to_bytes(model),
            sha256="-",
            hidden_dim=config.hidden_dim,
            error_mean=30.0,
            error_std=8.0,
            probe_claim=0.0,
        )
        storage.put_model(user, "m", new, max_models=16)
    storage.dispose()
    return token


# -- bank-only throughput (runs in its own process) ----------------------------------------------
def bank_only(database_url: str, *, batches: list[int], threads: int, seconds: float) -> dict:
    """Checks/s of the bank and Guard alone on the server's bank, at each batch size."""
    import torch

    from imgprivacy.docl import FilterBank, Guard
    from imgprivacy.features import get_extractor
    from imgprivacy.service.scorer import bank_scorer
    from imgprivacy.service.settings import ServiceSettings
    from imgprivacy.service.storage import Storage
    from imgprivacy.service.sync import BankSync

    torch.set_num_threads(threads)
    settings = ServiceSettings(database_url=database_url)
    extractor = get_extractor(settings.feature_extractor)
    storage = Storage(database_url)
    bank = FilterBank(input_dim=extractor.dim, feature_extractor=extractor.name)
    BankSync(storage, bank).sync()
    margin = {} if settings.margin is None else {"margin": settings.margin}
    score = bank_scorer(bank, Guard(policy=settings.policy, alpha=settings.alpha, **margin))
    images = digit_images()
    out = {}
    for b in batches:
        features = extractor.transform(images[np.arange(b) % len(images)])
        uploaders = ["bench00000"] * b
        score(features, uploaders)  # warm-up
        reps, cpu, start = 0, time.process_time(), time.perf_counter()
        while reps < 3 or time.perf_counter() - start < seconds:
            score(features, uploaders)
            reps += 1
        wall = (time.perf_counter() - start) / reps
        out[str(b)] = {
            "checks_per_s": b / wall,
            "pass_ms": 1000 * wall,
            "cpu_ms_per_check": 1000 * (time.process_time() - cpu) / (reps * b),
            "kernel": "+".join(bank.kernels_for(b)),  # what scored each group of models
        }
    storage.dispose()
    return {"models": len(bank), "torch_threads": threads, "batches": out}


def run_bank_only(database_url: str, *, batches: list[int], threads: int, seconds: float) -> dict:
    spec = json.dumps({"url": database_url, "batches": batches, "threads": threads, "s": seconds})
    command = [sys.executable, __file__, "--bank-only", spec]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


# -- the server side -----------------------------------------------------------------------------
def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn's worker processes), Linux /proc."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            children = (task / "children").read_text().split()
            todo.extend(int(c) for c in children)
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its descendants so far, threads included."""
    total = 0.0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


METRICS = (
    "imgprivacy_bank_pass_seconds_sum",
    "imgprivacy_bank_pass_seconds_count",
    "imgprivacy_batch_size_sum",
)


def scrape(url: str) -> dict[str, float]:
    import httpx

    text = httpx.get(f"{url}/metrics").text
    out = {}
    for name in METRICS:
        match = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.MULTILINE)
        out[name] = float(match.group(1)) if match else 0.0
    return out


def measure(server, spec: dict, *, generator: str) -> dict:
    """One load run against a running server, with the server's CPU and batches over it."""
    before, cpu_before = scrape(server.url), cpu_seconds(server.process.pid)
    result = run_load(server.url, spec, generator=generator)
    server_cpu = cpu_seconds(server.process.pid) - cpu_before
    delta = {k: v - before[k] for k, v in scrape(server.url).items()}
    passes = max(delta["imgprivacy_bank_pass_seconds_count"], 1)
    return {
        **result,
        "mean_batch": delta["imgprivacy_batch_size_sum"] / passes,
        "pass_ms": 1000 * delta["imgprivacy_bank_pass_seconds_sum"] / passes,
        # CPU the server spent per check: much less sensitive to other load on the machine than
        # checks/s, so cores / cpu_ms_per_check bounds checks/s on an idle machine.
        "cpu_ms_per_check": 1000 * server_cpu / max(result["requests"], 1),
        "server_cores_used": server_cpu / result["seconds"],
    }


def print_row(row: dict) -> None:
    bank = row.get("bank_only_checks_per_s")
    beside = (
        f"bank-only B={row['bank_only_batch']}: {bank:6.0f}/s (service {100 * row['rps'] / bank:3.0f}%)"
        if bank
        else "no bank (HTTP path alone)"
    )
    print(
        f"N={row['models']:4d} C={row['clients']:2d} {row['payload']:9s} {row['generator']:6s} "
        f"t={row['torch_threads']} w={row['workers']} cap={row['batch_max_size']} "
        f"wait={row['batch_max_wait_ms']:g} {'overlap' if row['overlap'] else 'serial '}: "
        f"{row['rps']:6.1f} checks/s "
        f"p50 {row['p50_ms']:6.1f} p99 {row['p99_ms']:6.1f} ms | {beside} | server "
        f"{row['cpu_ms_per_check']:.2f} ms CPU/check on {row['server_cores_used']:.2f} cores, "
        f"generator {row['generator_cpu_ms_per_request']:.2f} | batch {row['mean_batch']:4.1f} "
        f"pass {row['pass_ms']:5.1f} ms | errors {row['errors']} | load {row['load_average']:.1f}",
        flush=True,
    )


def serve_and_load(
    args, server: dict, *, database_url, token, bank, generators, log: Path
) -> list[dict]:
    """Start one server configuration and run every payload x generator x client count on it."""
    from imgprivacy.service.launcher import start_server

    env = {
        "IMGPRIVACY_DATABASE_URL": database_url,
        "IMGPRIVACY_BATCH_MAX_SIZE": str(server["batch_max_size"]),
        "IMGPRIVACY_BATCH_MAX_WAIT_MS": str(server["batch_max_wait_ms"]),
        "IMGPRIVACY_BATCH_OVERLAP": str(server["overlap"]).lower(),
        "IMGPRIVACY_TORCH_THREADS": str(server["torch_threads"]),
        "IMGPRIVACY_ACCESS_LOG": str(args.access_log == "on").lower(),
        "IMGPRIVACY_PROBE_COUNT": "0",
        "IMGPRIVACY_RATE_LIMIT_CHECK_PER_SECOND": "0",  # one token for every client: capacity
    }
    rows = []
    started = time.perf_counter()
    workers = ("--workers", str(server["workers"]))
    with start_server(log_path=log, env=env, args=workers, timeout=900) as process:
        startup_s = time.perf_counter() - started
        for payload, generator in ((p, g) for p in args.payload for g in generators):
            warm = {"token": token, "clients": 4, "payload": payload, "requests": 200}
            run_load(process.url, {**warm, "seconds": 2}, generator=generator)
            for clients in args.clients:
                spec = {
                    "token": token,
                    "clients": clients,
                    "payload": payload,
                    "requests": args.requests,
                    "seconds": args.seconds,
                }
                row = {
                    **server,
                    "clients": clients,
                    "payload": payload,
                    "generator": generator,
                    "access_log": args.access_log == "on",
                    **measure(process, spec, generator=generator),
                    "startup_s": startup_s,
                    "load_average": os.getloadavg()[0],
                }
                b = str(min(clients, server["batch_max_size"]))
                if bank is not None:
                    row["bank_only_batch"] = int(b)
                    row["bank_only_checks_per_s"] = bank["batches"][b]["checks_per_s"]
                rows.append(row)
                print_row(row)
    return rows


def print_bank(n_models: int, bank: dict) -> None:
    cells = ", ".join(
        f"B={b} {v['checks_per_s']:.0f}/s ({v['cpu_ms_per_check']:.2f} ms CPU/check, "
        f"{v.get('kernel', '?')})"
        for b, v in bank["batches"].items()
    )
    print(f"N={n_models:4d} t={bank['torch_threads']} bank-only: {cells}", flush=True)


def _loads(values) -> str:
    return " ".join(f"{x:.2f}" for x in values)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("reports/bench"))
    parser.add_argument("--models", type=int, nargs="+", default=[0, 100, 1000])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--payload", choices=PAYLOADS, nargs="+", default=["png"])
    parser.add_argument("--batch-max-size", type=int, nargs="+", default=[64])
    parser.add_argument("--torch-threads", type=int, nargs="+", default=[1])
    parser.add_argument("--workers", type=int, nargs="+", default=[1])
    parser.add_argument(
        "--batch-max-wait-ms", type=float, nargs="+", default=[0.0], help="the service's: 0"
    )
    parser.add_argument(
        "--overlap",
        choices=["on", "off"],
        nargs="+",
        default=["on"],
        help="on (the service's default): the scorer thread collects the next batch as a pass "
        "ends; off: the event loop collects it (the earlier path, the baseline)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run every server configuration of an N this many times, alternating them",
    )
    parser.add_argument(
        "--access-log", choices=["on", "off"], default="on", help="the service's default: on"
    )
    parser.add_argument(
        "--layer-widths",
        type=int,
        nargs="*",
        default=None,
        help="hidden ReLU widths around the code (default: the service's default model, "
        "784-256-32-256-784; the flag alone: the paper's 784-32-784)",
    )
    parser.add_argument("--requests", type=int, default=5000, help="per run, at most (python)")
    parser.add_argument("--seconds", type=float, default=10.0, help="per run")
    parser.add_argument("--bank-seconds", type=float, default=3.0, help="per bank-only batch size")
    parser.add_argument(
        "--generator",
        choices=["auto", "wrk", "python"],
        nargs="+",
        default=["auto"],
        help="wrk (Debian package; light) and/or the asyncio+httpx generator; auto = wrk if "
        "installed, else python",
    )
    parser.add_argument("--bank-only", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.bank_only:
        spec = json.loads(args.bank_only)
        result = bank_only(
            spec["url"], batches=spec["batches"], threads=spec["threads"], seconds=spec["s"]
        )
        print(json.dumps(result))
        return

    generators = sorted(
        {("wrk" if shutil.which("wrk") else "python") if g == "auto" else g for g in args.generator}
    )
    load_start = os.getloadavg()
    print(f"load average at start: {_loads(load_start)} on {os.cpu_count()} CPUs", flush=True)
    rows, banks = [], []
    layer_widths = None if args.layer_widths is None else tuple(args.layer_widths)
    batches = sorted({1, *(min(c, b) for c in args.clients for b in args.batch_max_size)})
    with tempfile.TemporaryDirectory(prefix="imgprivacy-bench-") as tmp:
        for n_models in args.models:
            database_url = f"sqlite:///{tmp}/bench-{n_models}.db"
            token = populate(database_url, n_models, layer_widths=layer_widths)
            for threads in args.torch_threads:
                bank = None
                if n_models:
                    bank = run_bank_only(
                        database_url, batches=batches, threads=threads, seconds=args.bank_seconds
                    )
                    banks.append({"models": n_models, **bank})
                    print_bank(n_models, bank)
                configs = [
                    {
                        "models": n_models,
                        "torch_threads": threads,
                        "batch_max_size": batch_max,
                        "batch_max_wait_ms": wait,
                        "overlap": overlap == "on",
                        "workers": workers,
                    }
                    for batch_max in args.batch_max_size
                    for wait in args.batch_max_wait_ms
                    for overlap in args.overlap
                    for workers in args.workers
                ]
                for repeat in range(args.repeat):  # alternated: a shared machine's load drifts
                    for k, server in enumerate(configs):
                        rows += serve_and_load(
                            args,
                            {**server, "repeat": repeat},
                            database_url=database_url,
                            token=token,
                            bank=bank,
                            generators=generators,
                            log=Path(tmp) / f"server-{n_models}-{threads}-{k}-{repeat}.log",
                        )
    load_end = os.getloadavg()
    print(f"load average at end: {_loads(load_end)}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_start": load_start,
            "load_average_end": load_end,
        },
        "layer_widths": "service default" if layer_widths is None else list(layer_widths),
        "bank_only": banks,
        "rows": rows,
    }
    (args.out / "bench_service.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out / 'bench_service.json'}")


if __name__ == "__main__":
    main()
