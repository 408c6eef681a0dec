"""Load generators of the service benchmark: wrk (Debian package) or asyncio + httpx.

Each runs in its own process, separate from the server. ``python benchmarks/service_load.py URL
SPEC`` is the Python generator (SPEC: JSON with token, clients, payload, requests, seconds); it
prints one JSON line. :func:`run_load` starts either one and adds the generator's CPU per request.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PAYLOADS = ("png", "multipart", "json")


def digit_images(count: int = 64) -> np.ndarray:
    from imgprivacy.data import load_mnist

    return load_mnist("test").images[:count]


def digit_pngs(count: int = 64) -> list[bytes]:
    from PIL import Image

    out = []
    for image in digit_images(count):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def request_body(payload: str, png: bytes) -> tuple[bytes, str]:
    """(body, Content-Type) of one check: the raw PNG, a multipart form, or JSON features."""
    if payload == "png":
        return png, "image/png"
    if payload == "multipart":
        boundary = "benchboundary7MA4YWxk"
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="d.png"\r\n'
                "Content-Type: image/png\r\n\r\n"
            ).encode()
            + png
            + f"\r\n--{boundary}--\r\n".encode()
        )
        return body, f"multipart/form-data; boundary={boundary}"
    from PIL import Image

    features = np.asarray(Image.open(io.BytesIO(png)), np.float32).ravel() / 255.0
    return json.dumps({"features": features.round(4).tolist()}).encode(), "application/json"


async def _load(url: str, spec: dict) -> dict:
    """One connection per client, each sending its next check when the last one is answered."""
    import httpx

    clients, payload = spec["clients"], spec["payload"]
    bodies = [request_body(payload, png) for png in digit_pngs()]
    latencies, errors = [], 0
    remaining = [spec["requests"]]
    limits = httpx.Limits(max_connections=1)
    # Opened before the clock starts: an AsyncClient builds an SSL context, tens of ms of CPU.
    https = [httpx.AsyncClient(base_url=url, timeout=30, limits=limits) for _ in range(clients)]

    async def worker(k: int, deadline: float):
        nonlocal errors
        i = k
        while remaining[0] > 0 and time.perf_counter() < deadline:
            remaining[0] -= 1
            body, content_type = bodies[i % len(bodies)]
            headers = {"Authorization": f"Bearer {spec['token']}", "Content-Type": content_type}
            started = time.perf_counter()
            response = await https[k].post("/v1/check", content=body, headers=headers)
            latencies.append(time.perf_counter() - started)
            errors += response.status_code != 200
            i += clients

    started, cpu = time.perf_counter(), time.process_time()
    deadline = started + spec["seconds"]
    await asyncio.gather(*(worker(k, deadline) for k in range(clients)))
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu  # the load phase only, not the start-up
    for http in https:
        await http.aclose()
    lat = np.asarray(latencies) * 1000
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": wall,
        "cpu_s": cpu,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
    }


WRK_SCRIPT = """
local f = io.open(os.getenv("BENCH_BODY"), "rb")
wrk.method = "POST"
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = os.getenv("BENCH_CONTENT_TYPE")
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
"""


def _ms(value: str) -> float:
    number, unit = re.match(r"([0-9.]+)([a-z]+)", value).groups()
    return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def _percentile_line(text: str, percent: int) -> str:
    """The value of a "Latency Distribution" row; anchored to the line start, because a
    "+/- Stdev" column such as "68.50%" also contains "50%"."""
    return re.search(rf"^\s*{percent}%\s+(\S+)", text, re.MULTILINE).group(1)


def run_wrk(url: str, spec: dict) -> dict:
    """wrk (C, one thread, one connection per client): bounded by time, cheap on the CPU."""
    with tempfile.TemporaryDirectory() as tmp:
        body, content_type = request_body(spec["payload"], digit_pngs(1)[0])
        body_path, script = Path(tmp) / "body", Path(tmp) / "check.lua"
        body_path.write_bytes(body)
        script.write_text(WRK_SCRIPT)
        env = {
            **os.environ,
            "BENCH_BODY": str(body_path),
            "BENCH_CONTENT_TYPE": content_type,
            "BENCH_TOKEN": spec["token"],
        }
        command = [
            "wrk",
            "-t1",
            f"-c{spec['clients']}",
            f"-d{max(1, round(spec['seconds']))}s",
            "--timeout",
            "30s",
            "--latency",
            "-s",
            str(script),
            f"{url}/v1/check",
        ]
        text = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    done = re.search(r"(\d+) requests in ([0-9.]+)(ms|s|m)\b", text)
    if done is None or not int(done.group(1)):
        raise RuntimeError(f"wrk answered no request:\n{text}")
    wall = float(done.group(2)) * {"ms": 1e-3, "s": 1.0, "m": 60.0}[done.group(3)]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    socket = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    return {
        "requests": int(done.group(1)),
        "errors": (int(non_2xx.group(1)) if non_2xx else 0)
        + (sum(int(g) for g in socket.groups()) if socket else 0),
        "seconds": wall,
        "p50_ms": _ms(_percentile_line(text, 50)),
        "p99_ms": _ms(_percentile_line(text, 99)),
    }


def run_load(url: str, spec: dict, *, generator: str) -> dict:
    """Run a generator in a separate process; adds its CPU per request."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    if generator == "wrk":
        result = run_wrk(url, spec)
    else:
        command = [sys.executable, __file__, url, json.dumps(spec)]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        result = json.loads(out.strip().splitlines()[-1])
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = result.pop("cpu_s", None)  # the Python generator's own, without its start-up
    if cpu is None:
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    result["rps"] = result["requests"] / result["seconds"]
    result["generator_cpu_ms_per_request"] = 1000 * cpu / max(result["requests"], 1)
    return result


if __name__ == "__main__":
    print(json.dumps(asyncio.run(_load(sys.argv[1], json.loads(sys.argv[2])))))
