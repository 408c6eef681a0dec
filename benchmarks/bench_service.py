"""Load test of the DOCL service over loopback: checks/s and p50/p99 latency.

    python benchmarks/bench_service.py --out reports/bench                 # N=100,1000 x 1/8/32 clients
    python benchmarks/bench_service.py --models 100 --clients 32 --batch-max-size 1 64

For each N the script fills a fresh SQLite database with N registered autoencoders (the paper's
784-32-784 by default, random weights: the cost of a check does not depend on their values),
starts ``imgprivacy serve`` on 127.0.0.1, and runs an external load generator (a separate
process: asyncio + httpx, one connection per client) that POSTs 28x28 PNG digits to /v1/check
with C concurrent clients, bounded by ``--requests`` and ``--seconds``. Where the time goes is
read from the service's own /metrics (bank-pass time and batch sizes) before and after each run.
Writes ``bench_service.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def populate(
    database_url: str, n_models: int, *, layer_widths: tuple[int, ...], seed: int = 0
) -> str:
    """N users with one random model each, written straight to storage; returns a user token."""
    import torch

    from imgprivacy.docl import AutoencoderConfig, OneClassAutoencoder, autoencoder_to_bytes
    from imgprivacy.docl.persistence import expected_shapes
    from imgprivacy.service.auth import hash_token, new_token
    from imgprivacy.service.storage import NewModel, Storage

    storage = Storage(database_url)
    storage.create_schema()
    config = AutoencoderConfig(layer_widths=layer_widths)
    gen = torch.Generator().manual_seed(seed)
    token = None
    for i in range(n_models):
        weights = {
            name: torch.randn(shape, generator=gen) * 0.05
            for name, shape in expected_shapes(config).items()
        }
        model = OneClassAutoencoder.from_weights(config, weights, error_mean=30.0, error_std=8.0)
        blob = autoencoder_to_bytes(model)
        user_token = new_token()
        user = storage.add_user(f"bench{i:05d}", hash_token(user_token))
        token = token or user_token
        new = NewModel(
            blob=blob,
            sha256="-",
            hidden_dim=config.hidden_dim,
            error_mean=30.0,
            error_std=8.0,
            probe_claim=0.0,
        )
        storage.put_model(user, "m", new, max_models=16)
    storage.dispose()
    return token


def digit_pngs(count: int = 64) -> list[bytes]:
    from PIL import Image

    from imgprivacy.data import load_mnist

    images = load_mnist("test").images[:count]
    out = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


# -- the load generator (runs in its own process) ------------------------------------------------
async def _load(url: str, token: str, clients: int, requests: int, seconds: float) -> dict:
    import httpx

    bodies = digit_pngs()
    latencies, errors = [], 0
    remaining = [requests]
    deadline = time.perf_counter() + seconds
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "image/png"}

    async def worker(k: int):
        nonlocal errors
        async with httpx.AsyncClient(
            base_url=url, timeout=30, limits=httpx.Limits(max_connections=1)
        ) as http:
            i = k
            while remaining[0] > 0 and time.perf_counter() < deadline:
                remaining[0] -= 1
                started = time.perf_counter()
                response = await http.post(
                    "/v1/check", content=bodies[i % len(bodies)], headers=headers
                )
                latencies.append(time.perf_counter() - started)
                errors += response.status_code != 200
                i += clients

    started = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(clients)))
    wall = time.perf_counter() - started
    lat = np.asarray(latencies) * 1000
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": wall,
        "rps": len(latencies) / wall,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
    }


WRK_SCRIPT = """
local f = io.open(os.getenv("BENCH_BODY"), "rb")
wrk.method = "POST"
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = "image/png"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
"""


def _ms(value: str) -> float:
    number, unit = re.match(r"([0-9.]+)([a-z]+)", value).groups()
    return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def run_wrk(url: str, token: str, *, clients: int, seconds: float) -> dict:
    """wrk (C, one thread, one connection per client): bounded by time, cheap on the CPU."""
    with tempfile.TemporaryDirectory() as tmp:
        body, script = Path(tmp) / "digit.png", Path(tmp) / "check.lua"
        body.write_bytes(digit_pngs(1)[0])
        script.write_text(WRK_SCRIPT)
        env = {**os.environ, "BENCH_BODY": str(body), "BENCH_TOKEN": token}
        command = [
            "wrk",
            "-t1",
            f"-c{clients}",
            f"-d{max(1, int(seconds))}s",
            "--latency",
            "-s",
            str(script),
            f"{url}/v1/check",
        ]
        text = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    requests = int(re.search(r"(\d+) requests in ([0-9.]+)(m?s)", text).group(1))
    wall = re.search(r"requests in ([0-9.]+)(m?s)", text)
    wall_s = float(wall.group(1)) * (1e-3 if wall.group(2) == "ms" else 1.0)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return {
        "requests": requests,
        "errors": int(errors.group(1)) if errors else 0,
        "seconds": wall_s,
        "rps": requests / wall_s,
        "p50_ms": _ms(re.search(r"50%\s+(\S+)", text).group(1)),
        "p99_ms": _ms(re.search(r"99%\s+(\S+)", text).group(1)),
    }


def run_load(
    url: str, token: str, *, clients: int, requests: int, seconds: float, generator: str = "python"
) -> dict:
    """Run the generator in a separate process (so it is external to the server)."""
    if generator == "wrk":
        return run_wrk(url, token, clients=clients, seconds=seconds)
    command = [
        sys.executable,
        __file__,
        "--generate",
        url,
        token,
        str(clients),
        str(requests),
        str(seconds),
    ]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scrape(url: str) -> dict[str, float]:
    import httpx

    text = httpx.get(f"{url}/metrics").text
    wanted = (
        "imgprivacy_bank_pass_seconds_sum",
        "imgprivacy_bank_pass_seconds_count",
        "imgprivacy_batch_size_sum",
        "imgprivacy_check_latency_seconds_sum",
    )
    out = {}
    for name in wanted:
        match = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.MULTILINE)
        out[name] = float(match.group(1)) if match else 0.0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("reports/bench"))
    parser.add_argument("--models", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--batch-max-size", type=int, nargs="+", default=[64])
    parser.add_argument(
        "--layer-widths", type=int, nargs="*", default=[], help="[] = paper's 784-32-784"
    )
    parser.add_argument("--requests", type=int, default=3000, help="per run, at most")
    parser.add_argument("--seconds", type=float, default=10.0, help="per run, at most")
    parser.add_argument(
        "--generator",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="wrk (Debian package; time-bounded, light) or the Python generator; auto = wrk if installed",
    )
    parser.add_argument("--generate", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        url, token, clients, requests, seconds = args.generate
        print(
            json.dumps(asyncio.run(_load(url, token, int(clients), int(requests), float(seconds))))
        )
        return

    import shutil

    from imgprivacy.service.launcher import start_server

    generator = args.generator
    if generator == "auto":
        generator = "wrk" if shutil.which("wrk") else "python"

    rows = []
    with tempfile.TemporaryDirectory(prefix="imgprivacy-bench-") as tmp:
        for n_models in args.models:
            database_url = f"sqlite:///{tmp}/bench-{n_models}.db"
            t0 = time.perf_counter()
            token = populate(database_url, n_models, layer_widths=tuple(args.layer_widths))
            populate_s = time.perf_counter() - t0
            for batch in args.batch_max_size:
                env = {
                    "IMGPRIVACY_DATABASE_URL": database_url,
                    "IMGPRIVACY_BATCH_MAX_SIZE": str(batch),
                    "IMGPRIVACY_ACCESS_LOG": "false",
                    "IMGPRIVACY_PROBE_COUNT": "0",
                    "IMGPRIVACY_RATE_LIMIT_CHECK_PER_SECOND": "0",  # one token: measure capacity
                }
                t0 = time.perf_counter()
                with start_server(
                    log_path=Path(tmp) / f"server-{n_models}-{batch}.log", env=env, timeout=600
                ) as server:
                    startup_s = time.perf_counter() - t0
                    run_load(server.url, token, clients=4, requests=200, seconds=3)  # warm-up
                    for clients in args.clients:
                        before = scrape(server.url)
                        cpu_before = cpu_seconds(server.process.pid)
                        result = run_load(
                            server.url,
                            token,
                            clients=clients,
                            requests=args.requests,
                            seconds=args.seconds,
                        )
                        after = scrape(server.url)
                        server_cpu = cpu_seconds(server.process.pid) - cpu_before
                        delta = {k: after[k] - before[k] for k in after}
                        passes = max(delta["imgprivacy_bank_pass_seconds_count"], 1)
                        row = {
                            "models": n_models,
                            "batch_max_size": batch,
                            "clients": clients,
                            **result,
                            "mean_batch": delta["imgprivacy_batch_size_sum"] / passes,
                            "bank_pass_ms": 1000
                            * delta["imgprivacy_bank_pass_seconds_sum"]
                            / passes,
                            "bank_busy": delta["imgprivacy_bank_pass_seconds_sum"]
                            / result["seconds"],
                            # CPU the server spent per check: independent of other load on the
                            # machine, so 2000 / cpu_ms_per_check bounds checks/s on 2 idle cores.
                            "cpu_ms_per_check": 1000 * server_cpu / max(result["requests"], 1),
                            "server_cores_used": server_cpu / result["seconds"],
                            "startup_s": startup_s,
                            "populate_s": populate_s,
                            "load_average": os.getloadavg()[0],
                            "generator": generator,
                        }
                        rows.append(row)
                        print(
                            f"N={n_models:5d} batch<={batch:3d} C={clients:3d}: {row['rps']:7.1f} checks/s "
                            f"p50 {row['p50_ms']:6.1f} ms p99 {row['p99_ms']:6.1f} ms | mean batch "
                            f"{row['mean_batch']:5.1f}, bank pass {row['bank_pass_ms']:6.2f} ms, bank busy "
                            f"{100 * row['bank_busy']:4.0f}% | server CPU {row['cpu_ms_per_check']:.2f} ms/check on "
                            f"{row['server_cores_used']:.2f} cores | errors {row['errors']} | load {row['load_average']:.1f}",
                            flush=True,
                        )
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "layer_widths": args.layer_widths,
        "rows": rows,
    }
    (args.out / "bench_service.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out / 'bench_service.json'}")


if __name__ == "__main__":
    main()
