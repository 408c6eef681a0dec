"""The intertwined method inside the anonymizer: target-identity discriminator and substitution."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imgprivacy.anonymizer import Anonymizer
from imgprivacy.anonymizer.trainer import AnonymizerTrainer
from imgprivacy.errors import InvalidInputError
from tests.anonymizer.model_files import without_tensors
from tests.conftest import tiny_config, tiny_images


@pytest.fixture(scope="module")
def data():
    return tiny_images(n_per_writer=12, writers=4)


@pytest.fixture(scope="module")
def targeted(data):
    images, writers = data
    config = tiny_config(target_identity=2, substitution="target")
    return Anonymizer(config).fit(images, writers)


def test_discriminator_sees_only_the_target_identity(data, monkeypatch):
    """Every real sample the discriminator gets is one of the target identity's images."""
    images, writers = data
    seen: list[torch.Tensor] = []
    original = AnonymizerTrainer.discriminator_step

    def spy(self, x, real=None):
        seen.append(x if real is None else real)
        return original(self, x, real)

    monkeypatch.setattr(AnonymizerTrainer, "discriminator_step", spy)
    Anonymizer(tiny_config(target_identity=3, substitution="none")).fit(images, writers)
    assert seen, "the discriminator was never trained"
    target = torch.from_numpy(images[writers == 3].reshape(-1, 64).astype(np.float32) / 255)
    others = torch.from_numpy(images[writers != 3].reshape(-1, 64).astype(np.float32) / 255)

    def gap(batch, pool):  # largest pixel difference to the closest image of pool, per row
        return (batch[:, None, :] - pool[None]).abs().amax(-1).min(1).values

    assert float(gap(torch.cat(seen), target).max()) < 1e-6
    # without a target the real samples are the training batch (all identities)
    seen.clear()
    Anonymizer(tiny_config(substitution="none")).fit(images, writers)
    assert float(gap(torch.cat(seen), others).min()) < 1e-6


def test_target_substitution_outputs_target_training_images(targeted, data):
    images, writers = data
    out = targeted.transform(images)
    target_images = images[writers == 2].reshape(-1, 64)
    matches = (out.reshape(len(out), 1, -1) == target_images[None]).all(-1).any(-1)
    assert matches.all()
    raw = targeted.transform(images, substitution=False)
    assert not (raw.reshape(len(raw), 1, -1) == target_images[None]).all(-1).any(-1).all()
    # the paper's protocol: the nearest (pixel Euclidean) target image of the autoencoder output
    raw_f = raw.reshape(len(raw), -1).astype(np.float64)
    # (recomputed from the float outputs by the model; uint8 rounding can only tie-break)
    d = ((raw_f[:, None, :] - target_images[None].astype(np.float64)) ** 2).sum(-1)
    chosen = np.argmin(d, axis=1)
    agree = (target_images[chosen] == out.reshape(len(out), -1)).all(-1).mean()
    assert agree >= 0.9


def test_targeted_model_round_trips(targeted, data, tmp_path):
    images, _ = data
    path = targeted.save(tmp_path / "targeted.safetensors")
    loaded = Anonymizer.load(path)
    assert loaded.config.target_identity == 2 and loaded.config.substitution == "target"
    assert torch.equal(loaded.substitution_.references_, targeted.substitution_.references_)
    assert loaded.substitution_.references_.dtype == torch.uint8
    assert np.array_equal(loaded.transform(images), targeted.transform(images))


def test_model_file_without_references_is_refused(targeted, tmp_path):
    data = without_tensors(targeted.to_bytes(), ["target_references"])
    (tmp_path / "bad.safetensors").write_bytes(data)
    with pytest.raises(InvalidInputError, match="missing tensors \\['target_references'\\]"):
        Anonymizer.load(tmp_path / "bad.safetensors")


def test_unknown_target_identity_is_refused(data):
    images, writers = data
    with pytest.raises(InvalidInputError, match=r"one of the private labels \[0, 1, 2, 3\], got 9"):
        Anonymizer(tiny_config(target_identity=9, substitution="target")).fit(images, writers)


def test_targeted_training_resumes_exactly(data, tmp_path):
    images, writers = data
    config = tiny_config(target_identity=1, substitution="none", disc_steps=2)
    whole = Anonymizer(config).fit(images, writers)
    checkpoint = tmp_path / "run.ckpt"
    Anonymizer(config.replace(adversarial_epochs=1)).fit(images, writers, checkpoint=checkpoint)
    resumed = Anonymizer(config).fit(images, writers, checkpoint=checkpoint, resume=True)
    for (name, a), b in zip(
        whole.autoencoder_.state_dict().items(), resumed.autoencoder_.state_dict().values()
    ):
        assert torch.equal(a, b), name
