"""The edge side against the service: the retrying client, the CLI, the batcher.

Edge training itself (resuming, checkpoints) is tested in tests/client/test_training.py.
"""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from imgprivacy.cli import app
from imgprivacy.client import GuardClient, ServiceRequestError
from imgprivacy.docl import Decision, load_autoencoder
from imgprivacy.service.scorer import MicroBatcher
from tests.service.conftest import TEST_CONFIG, unique


def _responses(*statuses):
    calls = []

    def handler(request):
        calls.append(request)
        status = statuses[min(len(calls) - 1, len(statuses) - 1)]
        if status == "drop":
            raise httpx.ConnectError("refused", request=request)
        body = (
            {"status": "ok"} if status == 200 else {"detail": "not ready", "problems": ["loading"]}
        )
        return httpx.Response(status, json=body)

    return calls, httpx.MockTransport(handler)


def test_client_retries_transient_errors_then_reports_clearly():
    calls, transport = _responses("drop", 503, 200)
    client = GuardClient("http://svc", retries=3, backoff=0.001, transport=transport)
    assert client.health() == {"status": "ok"} and len(calls) == 3
    calls, transport = _responses(503)
    client = GuardClient("http://svc", retries=2, backoff=0.001, transport=transport)
    with pytest.raises(ServiceRequestError, match="HTTP 503: not ready - loading") as info:
        client.health()
    assert info.value.detail == "not ready" and len(calls) == 3
    calls, transport = _responses(422)
    with pytest.raises(ServiceRequestError):
        GuardClient("http://svc", retries=3, backoff=0.001, transport=transport).health()
    assert len(calls) == 1  # a 4xx is final


def test_client_cannot_reach_a_closed_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ServiceRequestError, match="cannot reach"):
        GuardClient(f"http://127.0.0.1:{port}", retries=1, backoff=0.001).health()


def test_cli_train_register_upload_check(server, digits, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    for k, row in enumerate(digits["train"][7][:120]):
        pixels = (row.reshape(28, 28).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{k:03d}.png")
    runner = CliRunner()
    out = tmp_path / "guard.safetensors"
    options = ["--hidden-dim", str(TEST_CONFIG["hidden_dim"]), "--epochs", "6"]
    options += ["--negative-weight", "0"]  # the default's negatives are tested in tests/client
    result = runner.invoke(
        app, ["guard", "train", "--images", str(folder), "--out", str(out), *options]
    )
    assert result.exit_code == 0, result.output
    assert (
        load_autoencoder(out).config.input_dim == 784
        and not out.with_name(out.name + ".ckpt").exists()
    )
    result = runner.invoke(app, ["guard", "register", unique("cli"), "--server", server.url])
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    env = {"IMGPRIVACY_SERVER": server.url, "IMGPRIVACY_TOKEN": token}
    result = runner.invoke(app, ["guard", "upload", str(out), "--name", "sevens"], env=env)
    assert result.exit_code in (0, 3), result.output  # 3 only if the probe refuses this tiny model
    result = runner.invoke(app, ["check", str(folder / "000.png")], env=env)
    assert result.exit_code in (0, 1) and result.output.startswith(("share", "block")), (
        result.output
    )
    result = runner.invoke(
        app, ["check", str(folder / "000.png")], env={**env, "IMGPRIVACY_TOKEN": "bad"}
    )
    assert result.exit_code == 3 and "HTTP 401: invalid token" in result.output


def test_micro_batcher_groups_concurrent_requests():
    seen = []

    def score(features, uploaders):
        seen.append(len(uploaders))
        return [
            Decision(share=bool(f[0] > 0.5), policy="p", alpha=1.0, reason=u)
            for f, u in zip(features, uploaders)
        ]

    async def main():
        batcher = MicroBatcher(score, max_batch=16, max_wait=0.01)
        await batcher.start()
        try:
            values = [float(v) for v in np.linspace(0, 1, 40)]
            results = await asyncio.gather(
                *(batcher.submit(torch.tensor([[v, 0.0]]), f"u{i}") for i, v in enumerate(values))
            )
        finally:
            await batcher.stop()
        return values, results

    values, results = asyncio.run(main())
    assert [r.share for r in results] == [v > 0.5 for v in values]
    assert [r.reason for r in results] == [f"u{i}" for i in range(40)]  # each its own answer
    assert max(seen) == 16 and len(seen) < 40
