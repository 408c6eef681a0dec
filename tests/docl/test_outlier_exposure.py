"""Outlier exposure: the owner's autoencoder trained to reconstruct a public negative set badly."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from imgprivacy.client.model_file import check_guard_bytes
from imgprivacy.data import public_negative_images
from imgprivacy.docl import AutoencoderConfig, OneClassAutoencoder
from imgprivacy.docl.checkpoint import fingerprint
from imgprivacy.docl.detector import OneClassAutoencoderDetector
from imgprivacy.docl.persistence import METADATA_KEY
from imgprivacy.docl.private_budget import PrivacyBudget
from imgprivacy.errors import InvalidInputError

TINY = AutoencoderConfig(input_dim=3, hidden_dim=2, layer_widths=(), epochs=3, batch_size=4)
EXPOSED = TINY.replace(negative_weight=1.0)


@pytest.fixture(scope="module")
def tiny_x():
    return torch.rand(8, 3, generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def tiny_negatives():
    return torch.rand(20, 3, generator=torch.Generator().manual_seed(4))


@pytest.mark.parametrize("value", [-0.5, float("nan"), float("inf"), True, "1"])
def test_an_invalid_weight_is_refused_with_a_fix(value):
    with pytest.raises(
        InvalidInputError,
        match=r"negative_weight must be a number >= 0 \(0 = train on the owner's images only, "
        r"e\.g\. 1\.0 pushes",
    ):
        AutoencoderConfig(negative_weight=value)


@pytest.mark.parametrize("value", [-1.0, 25.0, float("nan"), None])
def test_an_invalid_margin_is_refused_with_the_range(value):
    with pytest.raises(
        InvalidInputError, match=r"negative_margin must be a number in \[0\.0, 20\.0\]"
    ):
        AutoencoderConfig(negative_margin=value)


def test_the_paper_model_and_the_defaults_train_without_negatives():
    assert AutoencoderConfig.paper().negative_weight == 0.0
    assert AutoencoderConfig.paper(negative_weight=2.0).negative_weight == 2.0


def test_negatives_and_the_weight_go_together(tiny_x, tiny_negatives):
    with pytest.raises(InvalidInputError, match=r"negative_weight=1 .* pass negatives=FEATURES"):
        OneClassAutoencoder(EXPOSED).fit(tiny_x)
    with pytest.raises(InvalidInputError, match=r"negatives were given but negative_weight is 0"):
        OneClassAutoencoder(TINY).fit(tiny_x, negatives=tiny_negatives)
    with pytest.raises(InvalidInputError, match=r"negative features of shape \(N, 3\)"):
        OneClassAutoencoder(EXPOSED).fit(tiny_x, negatives=torch.rand(5, 4))
    with pytest.raises(InvalidInputError, match=r"private training does not support"):
        OneClassAutoencoder(EXPOSED).fit(
            tiny_x, negatives=tiny_negatives, privacy=PrivacyBudget(epsilon=1.0)
        )


def test_statistics_stay_those_of_the_owners_training_images(tiny_x, tiny_negatives):
    model = OneClassAutoencoder(EXPOSED).fit(tiny_x, negatives=tiny_negatives)
    d = model.distances(tiny_x).double()
    assert model.error_mean_ == pytest.approx(float(d.mean()), rel=1e-5)
    assert model.error_std_ == pytest.approx(float(d.std()), rel=1e-4)
    # the hinge changed the training: another network than the paper's on the same seed
    plain = OneClassAutoencoder(TINY).fit(tiny_x)
    assert not torch.equal(plain.weights()["layers.0.weight"], model.weights()["layers.0.weight"])


def test_the_same_seed_gives_the_same_model(tiny_x, tiny_negatives):
    first = OneClassAutoencoder(EXPOSED).fit(tiny_x, negatives=tiny_negatives)
    again = OneClassAutoencoder(EXPOSED).fit(tiny_x, negatives=tiny_negatives)
    for name, weight in first.weights().items():
        torch.testing.assert_close(again.weights()[name], weight, rtol=0, atol=0)


def test_a_resumed_run_ends_with_the_uninterrupted_model(tmp_path, tiny_x, tiny_negatives):
    config = EXPOSED.replace(epochs=4)
    whole = OneClassAutoencoder(config).fit(tiny_x, negatives=tiny_negatives)
    checkpoint = tmp_path / "run.ckpt"
    OneClassAutoencoder(config.replace(epochs=2)).fit(
        tiny_x, negatives=tiny_negatives, checkpoint=checkpoint
    )
    resumed = OneClassAutoencoder(config).fit(
        tiny_x, negatives=tiny_negatives, checkpoint=checkpoint, resume=True
    )
    assert resumed.history_.epoch_loss == whole.history_.epoch_loss
    for name, weight in whole.weights().items():
        torch.testing.assert_close(resumed.weights()[name], weight, rtol=0, atol=0)
    with pytest.raises(InvalidInputError):  # other negatives: another run
        OneClassAutoencoder(config).fit(
            tiny_x, negatives=tiny_negatives[:10], checkpoint=checkpoint, resume=True
        )


def test_the_detector_trains_against_negatives_like_the_autoencoder(tiny_x, tiny_negatives):
    params = dict(hidden_dim=2, layer_widths=(), epochs=3, batch_size=4, negative_weight=1.0)
    detector = OneClassAutoencoderDetector(**params).fit(
        tiny_x.numpy(), negatives=tiny_negatives.numpy()
    )
    model = OneClassAutoencoder(EXPOSED).fit(tiny_x, negatives=tiny_negatives)
    assert detector.model_.config == model.config
    torch.testing.assert_close(detector.model_.distances(tiny_x), model.distances(tiny_x))
    with pytest.raises(InvalidInputError, match=r"pass negatives=FEATURES"):
        OneClassAutoencoderDetector(**params).fit(tiny_x.numpy())


def test_save_load_and_the_guard_file_keep_the_option(tmp_path, tiny_x, tiny_negatives):
    config = EXPOSED.replace(negative_weight=0.5, negative_margin=2.0)
    model = OneClassAutoencoder(config).fit(tiny_x, negatives=tiny_negatives)
    loaded = OneClassAutoencoder.load(model.save(tmp_path / "m.safetensors"))
    assert (loaded.config.negative_weight, loaded.config.negative_margin) == (0.5, 2.0)
    assert loaded.config == model.config
    torch.testing.assert_close(loaded.distances(tiny_x), model.distances(tiny_x))
    recorded = check_guard_bytes(model.to_bytes())["config"]
    assert (recorded["negative_weight"], recorded["negative_margin"]) == (0.5, 2.0)
    assert AutoencoderConfig.from_dict(config.to_dict()) == config


def test_a_file_without_the_fields_loads_as_trained_without_negatives(tiny_x, tiny_negatives):
    data = OneClassAutoencoder(EXPOSED).fit(tiny_x, negatives=tiny_negatives).to_bytes()
    header = int.from_bytes(data[:8], "little")
    metadata = json.loads(json.loads(data[8 : 8 + header])["__metadata__"][METADATA_KEY])
    del metadata["config"]["negative_weight"], metadata["config"]["negative_margin"]
    old = save_tensors(load_tensors(data), metadata={METADATA_KEY: json.dumps(metadata)})
    config = OneClassAutoencoder.from_bytes(old).config
    assert (config.negative_weight, config.negative_margin) == (0.0, 3.0)


def test_checkpoints_without_negatives_keep_their_fingerprint():
    x = torch.rand(6, 4, generator=torch.Generator().manual_seed(0))
    config = AutoencoderConfig(
        input_dim=4, hidden_dim=2, layer_widths=(), feature_extractor="pixels"
    )
    old_fields = {
        k: v
        for k, v in config.to_dict().items()
        if k not in ("epochs", "calibration_fraction", "negative_weight", "negative_margin")
    }
    old = hashlib.sha256(x.numpy().tobytes())
    old.update(json.dumps(old_fields, sort_keys=True).encode())
    assert fingerprint(x, config) == old.hexdigest()
    exposed = config.replace(negative_weight=1.0)
    negatives = torch.rand(3, 4)
    assert fingerprint(x, exposed, negatives=negatives) != old.hexdigest()
    assert fingerprint(x, exposed, negatives=negatives) != fingerprint(
        x, exposed, negatives=negatives[:2]
    )


def _half_cube(n: int, *, seed: int, owner: bool) -> torch.Tensor:
    """Uniform points of [0.1, 0.9]^8 whose first coordinate is below 0.45 (the owner's) or
    above 0.55 (everyone else's)."""
    generator = torch.Generator().manual_seed(seed)
    x = 0.1 + 0.8 * torch.rand(n, 8, generator=generator)
    x[:, 0] = 0.1 + 0.35 * torch.rand(n, generator=generator) + (0.0 if owner else 0.45)
    return x


def test_negatives_end_up_farther_from_the_owner_than_without_them():
    """An autoencoder as wide as its input reconstructs the other half of the cube almost as
    well as its owner's half: its interval mu + 2 sigma holds many of those images. Trained
    against negatives from that half, it holds few of the new ones, and as many of the owner's."""
    train, new_owner = _half_cube(200, seed=1, owner=True), _half_cube(100, seed=2, owner=True)
    negatives, new_other = (
        _half_cube(200, seed=3, owner=False),
        _half_cube(100, seed=4, owner=False),
    )
    config = AutoencoderConfig(
        input_dim=8,
        hidden_dim=8,
        layer_widths=(32,),
        epochs=60,
        batch_size=16,
        optimizer="adam",
        learning_rate=3e-3,
    )
    inside = {}
    for weight in (0.0, 1.0):
        model = OneClassAutoencoder(config.replace(negative_weight=weight)).fit(
            train, negatives=negatives if weight else None
        )
        bound = model.error_mean_ + 2 * model.error_std_
        inside[weight] = tuple(
            float((model.distances(x) <= bound).double().mean()) for x in (new_other, new_owner)
        )
    assert inside[0.0][0] > 0.3 and inside[1.0][0] < inside[0.0][0] / 3, inside
    assert inside[1.0][1] >= inside[0.0][1] - 0.05, inside


def _fake_fashion(tmp_path, n: int = 50) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[:, 0, 0] = np.arange(n)  # each row recognisable by its first pixel
    np.savez(
        tmp_path / "fashion_mnist.npz",
        x_train=images,
        y_train=np.zeros(n, np.int64),
        x_test=images[:5],
        y_test=np.zeros(5, np.int64),
    )


def test_the_public_negative_set_is_seeded_and_skips_excluded_rows(tmp_path):
    _fake_fashion(tmp_path)
    images = public_negative_images(
        count=20, noise_share=0.25, exclude=range(30), data_dir=tmp_path
    )
    assert images.shape == (20, 28, 28) and images.dtype == np.uint8
    taken = images[:15, 0, 0]
    assert (taken >= 30).all() and len(set(taken.tolist())) == 15
    again = public_negative_images(count=20, noise_share=0.25, exclude=range(30), data_dir=tmp_path)
    np.testing.assert_array_equal(images, again)
    other = public_negative_images(
        count=20, noise_share=0.25, exclude=range(30), seed=1, data_dir=tmp_path
    )
    assert not np.array_equal(images[15:], other[15:])


def test_the_public_negative_set_refuses_impossible_requests(tmp_path):
    _fake_fashion(tmp_path)
    with pytest.raises(InvalidInputError, match=r"asked for 30 .* only 20 are left"):
        public_negative_images(count=30, noise_share=0.0, exclude=range(30), data_dir=tmp_path)
    with pytest.raises(InvalidInputError) as error:
        public_negative_images(count=0, noise_share=1.5, data_dir=tmp_path)
    assert len(error.value.problems) == 2
