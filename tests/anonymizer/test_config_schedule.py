import pytest

from imgprivacy.anonymizer import AnonymizerConfig, phase_schedule
from imgprivacy.errors import InvalidInputError


def test_phase_schedule_runs_the_three_phases_in_order():
    cfg = AnonymizerConfig(pretrain_epochs=3, disc_pretrain_epochs=2, adversarial_epochs=4)
    schedule = phase_schedule(cfg)
    assert schedule == ["pretrain"] * 3 + ["disc_pretrain"] * 2 + ["adversarial"] * 4
    assert len(schedule) == cfg.total_epochs
    assert (
        phase_schedule(cfg.replace(disc_pretrain_epochs=0, adversarial_epochs=0))
        == ["pretrain"] * 3
    )


def test_config_collects_every_problem():
    with pytest.raises(InvalidInputError) as info:
        AnonymizerConfig(lam=-0.5, ae_lr=0.0, n_private=1, pretrain_epochs=-1)
    message = str(info.value)
    for field in ("lam", "ae_lr", "n_private", "pretrain_epochs"):
        assert field in message


def test_config_round_trips_and_rejects_unknown_fields():
    cfg = AnonymizerConfig(lam=2.5)
    assert AnonymizerConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(InvalidInputError, match="Unknown AnonymizerConfig fields"):
        AnonymizerConfig.from_dict({**cfg.to_dict(), "lambda": 1})
