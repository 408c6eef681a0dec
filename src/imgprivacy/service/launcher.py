"""Start the service as a separate process on 127.0.0.1 and an ephemeral port.

Used by the demo, the load benchmark and the tests: a real uvicorn server, stopped (or killed) at
the end, whose log goes to a file.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

RUNNING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, *, kill: bool = False, timeout: float = 15.0) -> int:
        """SIGTERM (graceful) or SIGKILL the server and wait for it; returns its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_server(
    *,
    log_path: str | os.PathLike,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
    timeout: float = 90.0,
) -> ServerProcess:
    """Run ``python -m imgprivacy.service --port 0`` and wait until /readyz answers 200.

    ``env`` adds ``IMGPRIVACY_*`` settings to the current environment.
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "imgprivacy.service",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        *args,
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + timeout
    url = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"the service exited with code {process.returncode}:\n{log_path.read_text()[-3000:]}"
            )
        match = RUNNING.search(log_path.read_text(errors="replace"))
        if match:
            url = f"http://127.0.0.1:{match.group(1)}"
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    return ServerProcess(url, process, log_path)
            except httpx.HTTPError:
                pass
        time.sleep(0.1)
    process.kill()
    process.wait()
    raise RuntimeError(
        f"the service did not become ready in {timeout:.0f}s:\n{log_path.read_text()[-3000:]}"
    )
