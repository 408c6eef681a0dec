"""Held-out calibration: mu and sigma (eq. 6) from images held out of training."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from imgprivacy.client.model_file import check_guard_bytes
from imgprivacy.docl import AutoencoderConfig, OneClassAutoencoder
from imgprivacy.docl.calibration import calibration_split
from imgprivacy.docl.checkpoint import fingerprint
from imgprivacy.docl.persistence import METADATA_KEY
from imgprivacy.errors import InvalidInputError
from tests.conftest import blobs

TINY = AutoencoderConfig(input_dim=3, hidden_dim=2, layer_widths=(), epochs=3, batch_size=4)


def by_hand(model: OneClassAutoencoder, x: np.ndarray) -> np.ndarray:
    """Eq. (2)-(3) and (6) in numpy from the model's weights: sum of (x - sigmoid(...))^2."""
    w = {k: v.double().numpy() for k, v in model.weights().items()}
    hidden = np.maximum(x @ w["layers.0.weight"].T + w["layers.0.bias"], 0.0)
    reconstruction = 1 / (1 + np.exp(-(hidden @ w["layers.1.weight"].T + w["layers.1.bias"])))
    return ((x - reconstruction) ** 2).sum(axis=1)


@pytest.fixture(scope="module")
def tiny_x():
    return torch.rand(8, 3, generator=torch.Generator().manual_seed(3))


def test_split_sizes_are_the_ceiling_and_at_least_two():
    for n, fraction, held in [
        (10, 0.2, 2),
        (10, 0.25, 3),
        (10, 0.05, 2),
        (45, 0.2, 9),
        (7, 0.5, 4),
    ]:
        train, held_out = calibration_split(n, config=TINY.replace(calibration_fraction=fraction))
        assert len(held_out) == held
        assert sorted([*train.tolist(), *held_out.tolist()]) == list(range(n))
    train, held_out = calibration_split(10, config=TINY)
    assert (train.tolist(), held_out.tolist()) == (list(range(10)), [])


def test_split_is_seeded_by_the_config():
    config = TINY.replace(calibration_fraction=0.3)
    first = calibration_split(20, config=config)[1].tolist()
    assert calibration_split(20, config=config)[1].tolist() == first
    assert calibration_split(20, config=config.replace(seed=1))[1].tolist() != first


def test_statistics_are_those_of_the_held_out_rows_computed_by_hand(tiny_x):
    config = TINY.replace(calibration_fraction=0.25)
    model = OneClassAutoencoder(config).fit(tiny_x)
    train_rows, held_out = calibration_split(8, config=config)
    assert held_out.tolist() == sorted(held_out.tolist()) and len(held_out) == 2
    d = by_hand(model, tiny_x[held_out].double().numpy())
    assert model.error_mean_ == pytest.approx((d[0] + d[1]) / 2, rel=1e-5)
    assert model.error_std_ == pytest.approx(abs(d[0] - d[1]) / np.sqrt(2), rel=1e-4)
    assert model.calibration_size_ == 2
    # trained on the other six rows only: the same network as a paper-exact fit on them
    rest = OneClassAutoencoder(TINY).fit(tiny_x[train_rows])
    for name, weight in rest.weights().items():
        torch.testing.assert_close(model.weights()[name], weight, rtol=0, atol=0)
    assert rest.error_mean_ != pytest.approx(model.error_mean_)


def test_fraction_zero_is_the_paper_statistics_of_every_training_row(tiny_x):
    model = OneClassAutoencoder(TINY).fit(tiny_x)
    d = by_hand(model, tiny_x.double().numpy())
    assert model.error_mean_ == pytest.approx(d.mean(), rel=1e-5)
    assert model.error_std_ == pytest.approx(d.std(ddof=1), rel=1e-4)
    assert model.calibration_size_ == 0
    assert AutoencoderConfig.paper().calibration_fraction == 0.0


@pytest.mark.parametrize("value", [0.6, -0.1, float("nan"), True, "0.1"])
def test_an_invalid_fraction_is_refused_with_the_range_and_a_fix(value):
    with pytest.raises(
        InvalidInputError,
        match=r"calibration_fraction must be a number in "
        r"\[0.0, 0.5\] \(0 = the paper's statistics.*e\.g\. 0\.2 holds out",
    ):
        AutoencoderConfig(calibration_fraction=value)


def test_too_few_images_to_hold_out_says_how_to_fix():
    config = TINY.replace(calibration_fraction=0.1)
    with pytest.raises(
        InvalidInputError,
        match=r"holds out 2 of 3 images .* leaving 1 to train on.*set calibration_fraction=0",
    ):
        OneClassAutoencoder(config).fit(torch.rand(3, 3))
    OneClassAutoencoder(config).fit(torch.rand(4, 3))  # 2 held out, 2 to train on


def test_save_load_and_the_guard_file_keep_the_fraction(tmp_path, tiny_x):
    model = OneClassAutoencoder(TINY.replace(calibration_fraction=0.25)).fit(tiny_x)
    loaded = OneClassAutoencoder.load(model.save(tmp_path / "m.safetensors"))
    assert loaded.config.calibration_fraction == 0.25
    assert (loaded.error_mean_, loaded.error_std_) == (model.error_mean_, model.error_std_)
    assert check_guard_bytes(model.to_bytes())["config"]["calibration_fraction"] == 0.25


def test_a_file_without_the_field_loads_as_paper_statistics(tiny_x):
    """Files written before calibration existed were trained on training-image statistics,
    whatever today's default fraction is."""
    data = OneClassAutoencoder(TINY.replace(calibration_fraction=0.25)).fit(tiny_x).to_bytes()
    metadata = json.loads(_metadata(data)[METADATA_KEY])
    del metadata["config"]["calibration_fraction"]
    old = save_tensors(load_tensors(data), metadata={METADATA_KEY: json.dumps(metadata)})
    assert OneClassAutoencoder.from_bytes(old).config.calibration_fraction == 0.0


def _metadata(data: bytes) -> dict:
    header = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + header])["__metadata__"]


def test_held_out_statistics_cover_more_of_the_owners_new_images():
    """A small model fitted hard on 48 images reconstructs them better than new ones of the
    same owner: the paper's interval mu + sigma then misses more of the new images."""
    x, y = blobs(n_per_class=160, dim=16, classes=1, seed=5)
    train, new = x[:48], x[48:]
    config = AutoencoderConfig(
        input_dim=16,
        hidden_dim=8,
        layer_widths=(32,),
        epochs=150,
        batch_size=16,
        optimizer="adam",
        learning_rate=3e-3,
    )
    coverage = {}
    for fraction in (0.0, 0.25):
        model = OneClassAutoencoder(config.replace(calibration_fraction=fraction)).fit(train)
        inside = model.distances(new) <= model.error_mean_ + model.error_std_
        coverage[fraction] = float(inside.double().mean())
    assert coverage[0.25] > coverage[0.0] + 0.05, coverage


def test_the_config_dict_round_trips_the_fraction():
    assert TINY.to_dict()["calibration_fraction"] == 0.0
    calibrated = TINY.replace(calibration_fraction=0.1)
    assert calibrated.to_dict()["calibration_fraction"] == 0.1
    assert AutoencoderConfig.from_dict(calibrated.to_dict()) == calibrated
    assert AutoencoderConfig.from_dict(TINY.to_dict()) == TINY


def test_checkpoints_of_paper_statistics_keep_the_fingerprint_they_had_before_the_field():
    """A checkpoint written before ``calibration_fraction`` existed hashed every other field; the
    same run (fraction 0) must hash the same so it resumes; a set fraction is a different run."""
    x = torch.rand(6, 4, generator=torch.Generator().manual_seed(0))
    config = AutoencoderConfig(
        input_dim=4, hidden_dim=2, layer_widths=(), feature_extractor="pixels"
    )
    later = ("epochs", "calibration_fraction", "negative_weight", "negative_margin")
    old_fields = {k: v for k, v in config.to_dict().items() if k not in later}
    old = hashlib.sha256(x.numpy().tobytes())
    old.update(json.dumps(old_fields, sort_keys=True).encode())
    assert fingerprint(x, config) == old.hexdigest()
    calibrated = AutoencoderConfig(**{**config.to_dict(), "calibration_fraction": 0.2})
    assert fingerprint(x, calibrated) != old.hexdigest()
