"""``imgprivacy serve --bank``: the value reaches the workers' environment; a wrong one is refused."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from imgprivacy.cli import app


@pytest.fixture()
def started(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr("imgprivacy.service.server.run_server", lambda **kw: calls.append(kw))
    monkeypatch.chdir(tmp_path)
    # serve writes its flags to os.environ; set here, monkeypatch restores them afterwards.
    monkeypatch.setenv("IMGPRIVACY_BANK", "memory")
    monkeypatch.setenv("IMGPRIVACY_RAY_ADDRESS", "")
    monkeypatch.setenv("IMGPRIVACY_PROBE_COUNT", "0")
    return calls


def serve(*args):
    return CliRunner(env={"COLUMNS": "300"}).invoke(app, ["serve", "--port", "0", *args])


def test_bank_ray_is_passed_to_the_workers(started):
    result = serve("--bank", "ray", "--ray-address", "127.0.0.1:6379")
    assert result.exit_code == 0, result.output
    assert len(started) == 1
    assert os.environ["IMGPRIVACY_BANK"] == "ray"
    assert os.environ["IMGPRIVACY_RAY_ADDRESS"] == "127.0.0.1:6379"


def test_an_unknown_bank_is_refused(started):
    result = serve("--bank", "gpu")
    assert result.exit_code == 3
    assert "IMGPRIVACY_BANK: Input should be 'memory' or 'ray'" in result.output
    assert started == []
