"""A bad ``IMGPRIVACY_*`` value stops the service at start with one line saying which variable,
what it expects and what it got: from :func:`load_settings`, from ``create_app()`` and from a
real server process (no pydantic traceback)."""

from __future__ import annotations

import pytest

from imgprivacy.errors import InvalidInputError
from imgprivacy.service import create_app
from imgprivacy.service.launcher import start_server
from imgprivacy.service.settings import ServiceSettings, load_settings, settings_and_problems
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


ALPHA_RANGE_MESSAGE = "Input should be in [0.5, 4.0] standard deviations (the paper uses [1, 2])"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("POLICY", "strict", "Input should be one of paper, any-other, exclude-uploader, margin"),
        ("ALPHA", "9", ALPHA_RANGE_MESSAGE),
        ("ALPHA", "nan", ALPHA_RANGE_MESSAGE),
        ("MARGIN", "0.5", "Input should be at least 1, or none for the Guard's default"),
        ("BREADTH_RATIO", "0.9", "Input should be greater than or equal to 1"),
        ("PROBE_ALPHA", "-1", "Input should be a finite number of standard deviations > 0"),
        ("PROBE_SEED", "-3", "Input should be an integer >= 0, or none for a secret one"),
    ],
)
def test_bad_guard_and_probe_values_are_one_line_naming_the_variable(
    monkeypatch, variable, value, expected
):
    monkeypatch.setenv(f"IMGPRIVACY_{variable}", value)
    with pytest.raises(InvalidInputError) as caught:
        load_settings()
    assert caught.value.problems == [
        f"IMGPRIVACY_{variable}: {expected}, got {value!r}; set it to a valid value or unset it "
        "for the default"
    ]


def test_the_problems_come_with_the_other_values_kept(monkeypatch):
    monkeypatch.setenv("IMGPRIVACY_ALPHA", "0.1")
    monkeypatch.setenv("IMGPRIVACY_MARGIN", "none")
    settings, problems = settings_and_problems(policy="paper", probe_seed=-1)
    assert [p.split(":")[0] for p in problems] == ["IMGPRIVACY_ALPHA", "IMGPRIVACY_PROBE_SEED"]
    fields = ServiceSettings.model_fields
    assert settings.alpha == fields["alpha"].default and settings.probe_seed is None
    assert settings.policy == "paper" and settings.margin is None  # the good values kept
    assert settings_and_problems(policy="paper", alpha=2.5)[1] == []


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
