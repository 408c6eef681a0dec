import numpy as np
import pytest
import torch

from imgprivacy.anonymizer import AnonymizerConfig, phase_schedule
from imgprivacy.anonymizer.trainer import AnonymizerTrainer
from imgprivacy.errors import InvalidInputError
from tests.conftest import tiny_config, tiny_images


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


def test_each_epoch_records_its_phase_and_the_refresh_losses(monkeypatch):
    """One record per epoch, keys in order; an adversarial epoch starts with the private
    classifier's refresh, whose last losses it records as they are (not averaged)."""
    images, writers = tiny_images(n_per_writer=10, writers=4)
    x = torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 255)
    z = torch.from_numpy(writers).long()
    cfg = tiny_config(n_private=4, pretrain_epochs=1, disc_pretrain_epochs=1, adversarial_epochs=1)
    trainer = AnonymizerTrainer(cfg, prior=torch.full((4,), 0.25))
    refreshes = []
    original = AnonymizerTrainer.refresh_private

    def spy(self, x, z):
        refreshes.append(original(self, x, z))
        return refreshes[-1]

    monkeypatch.setattr(AnonymizerTrainer, "refresh_private", spy)
    history = trainer.fit(x, z)
    assert [r["phase"] for r in history.epochs] == ["pretrain", "disc_pretrain", "adversarial"]
    assert [r["epoch"] for r in history.epochs] == [1, 2, 3] and trainer.epoch == 3
    last = history.epochs[-1]
    assert list(last)[:5] == ["epoch", "phase", "seconds", "refresh_ce", "refresh_accuracy"]
    assert len(refreshes) == 1
    assert last["refresh_ce"] == refreshes[0]["refresh_ce"]
    assert last["refresh_accuracy"] == refreshes[0]["refresh_accuracy"]
    assert {"ae_total", "private_ce", "discriminator_bce"} <= set(last)
    with pytest.raises(InvalidInputError, match="Training already finished"):
        trainer.run_epoch(x, z)
