"""A bad ``IMGPRIVACY_*`` value stops the service at start with one line saying which variable,
what it expects and what it got: from :func:`load_settings`, from ``create_app()`` and from a
real server process (no pydantic traceback)."""

from __future__ import annotations

import pytest

from imgprivacy.errors import InvalidInputError
from imgprivacy.service import create_app
from imgprivacy.service.launcher import start_server
from imgprivacy.service.settings import load_settings
from tests.service.conftest import fresh_database, server_env


def test_a_bad_bank_is_one_line_naming_the_variable(monkeypatch):
    monkeypatch.setenv("IMGPRIVACY_BANK", "rey")
    with pytest.raises(InvalidInputError) as caught:
        load_settings()
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("IMGPRIVACY_BANK: Input should be 'memory' or 'ray', got 'rey'")
    assert "unset it for the default" in message


def test_every_bad_value_is_listed_at_once(monkeypatch):
    monkeypatch.setenv("IMGPRIVACY_BANK", "rey")
    monkeypatch.setenv("IMGPRIVACY_BREADTH_RATIO", "0.5")
    with pytest.raises(InvalidInputError) as caught:
        create_app()
    assert [p.split(":")[0] for p in caught.value.problems] == [
        "IMGPRIVACY_BREADTH_RATIO",
        "IMGPRIVACY_BANK",
    ]
    assert "greater than or equal to 1" in caught.value.problems[0]


def test_the_default_guard_point_is_the_one_validated_with_the_negative_set():
    settings = load_settings()
    point = (settings.policy, settings.alpha, settings.margin, settings.breadth_ratio)
    assert point == ("margin", 2.7, 1.0, 2.0)
    assert settings.probe_alpha == 2.7 and settings.probe_max_claim == 0.5


def test_none_turns_the_breadth_gate_off(monkeypatch):
    assert load_settings().breadth_ratio == 2.0  # the default: on
    monkeypatch.setenv("IMGPRIVACY_BREADTH_RATIO", "none")
    assert load_settings().breadth_ratio is None


def test_a_server_with_a_bad_setting_exits_with_one_clear_line(tmp_path):
    env = server_env(fresh_database("sqlite", tmp_path), bank="rey")
    with pytest.raises(RuntimeError, match="exited with code 1") as caught:
        start_server(log_path=tmp_path / "service.log", env=env, timeout=60)
    log = (tmp_path / "service.log").read_text()
    assert "Traceback" not in log and "pydantic" not in log
    assert log.strip() == (
        "error: IMGPRIVACY_BANK: Input should be 'memory' or 'ray', got 'rey'; set it to a "
        "valid value or unset it for the default"
    )
    assert "exited with code 1" in str(caught.value)
