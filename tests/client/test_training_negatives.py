"""Edge training against the provider's public negative set (outlier exposure)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from imgprivacy.cli import app
from imgprivacy.client import folder_features, train_guard
from imgprivacy.client.training import negative_features
from imgprivacy.data import DATA_ENV_VAR, public_negative_images
from imgprivacy.docl import AutoencoderConfig, OneClassAutoencoder, load_autoencoder
from imgprivacy.errors import DataNotFoundError, InvalidInputError
from imgprivacy.features import get_extractor
from tests.docl.test_autoencoder import assert_same_model

GUARD = AutoencoderConfig(
    hidden_dim=4, layer_widths=(8,), epochs=2, batch_size=8, seed=2, negative_weight=1.0
)


@pytest.fixture()
def public_data(tmp_path, monkeypatch):
    """A data folder whose Fashion-MNIST holds 9000 random training images (the default negative
    set takes 9000 of them and adds 1000 noise images)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(9000, 28, 28), dtype=np.uint8)
    np.savez(
        tmp_path / "fashion_mnist.npz",
        x_train=images,
        y_train=np.zeros(9000, np.int64),
        x_test=images[:10],
        y_test=np.zeros(10, np.int64),
    )
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path))
    return tmp_path


@pytest.fixture()
def folder(tmp_path):
    path = tmp_path / "mine"
    path.mkdir()
    rng = np.random.default_rng(0)
    for k in range(16):
        pixels = (rng.random((28, 28)) * 60).astype(np.uint8)
        pixels[4 + k % 12 : 14 + k % 12, 6:18] = 230
        Image.fromarray(pixels).save(path / f"{k:03d}.png")
    return path


def test_negative_features_are_the_public_set_through_the_extractor(public_data):
    grey = negative_features(feature_extractor="pixels")
    assert tuple(grey.shape) == (10_000, 784)
    expected = get_extractor("pixels").transform(public_negative_images())
    assert torch.equal(grey, expected)


def test_guard_training_with_negatives_is_fit_against_them(public_data, folder, tmp_path):
    out = tmp_path / "guard.safetensors"
    model = train_guard(folder, out=out, config=GUARD)
    config = GUARD.replace(input_dim=784)
    reference = OneClassAutoencoder(config).fit(
        folder_features(folder), negatives=negative_features(feature_extractor="pixels-smooth")
    )
    assert_same_model(model, reference)
    assert load_autoencoder(out).config.negative_weight == 1.0


def test_cli_guard_train_takes_the_negative_weight(public_data, folder, tmp_path):
    out = tmp_path / "guard.safetensors"
    options = ["--images", str(folder), "--out", str(out), "--hidden-dim", "4", "--epochs", "1"]
    runner = CliRunner()
    result = runner.invoke(app, ["guard", "train", *options, "--negative-weight", "0.5"])
    assert result.exit_code == 0, result.output
    assert load_autoencoder(out).config.negative_weight == 0.5
    result = runner.invoke(app, ["guard", "train", *options, "--negative-weight", "-1"])
    assert result.exit_code == 2 and "--negative-weight" in result.output, result.output


def test_cli_guard_train_records_the_default_negative_weight(public_data, folder, tmp_path):
    out = tmp_path / "guard.safetensors"
    options = ["--images", str(folder), "--out", str(out), "--hidden-dim", "4", "--epochs", "1"]
    result = CliRunner().invoke(app, ["guard", "train", *options])
    assert result.exit_code == 0, result.output
    saved = load_autoencoder(out).config
    assert saved.negative_weight == 1.0 and saved.feature_extractor == "pixels-smooth"


def test_a_missing_negative_set_says_what_to_fix(tmp_path, folder, monkeypatch):
    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv(DATA_ENV_VAR, str(empty))
    out = tmp_path / "guard.safetensors"
    with pytest.raises(DataNotFoundError) as caught:
        train_guard(folder, out=out)  # the default config trains against the negatives
    message = str(caught.value)
    for fragment in ("public negative set", "fashion_mnist.npz", str(empty), "--negative-weight 0"):
        assert fragment in message, fragment
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "no-data"]  # nothing written
    options = ["--images", str(folder), "--out", str(out), "--hidden-dim", "4", "--epochs", "1"]
    result = CliRunner().invoke(app, ["guard", "train", *options])
    assert result.exit_code == 3, result.output
    assert "fashion_mnist.npz" in result.output and "--negative-weight 0" in result.output
    assert "Traceback" not in result.output and not out.exists()
    result = CliRunner().invoke(app, ["guard", "train", *options, "--negative-weight", "0"])
    assert result.exit_code == 0, result.output  # without them it needs no data folder
    assert load_autoencoder(out).config.negative_weight == 0.0


def test_fit_of_the_edge_default_without_negatives_says_how_to_pass_them():
    config = AutoencoderConfig.for_edge(hidden_dim=4, layer_widths=(8,), epochs=1)
    with pytest.raises(InvalidInputError, match=r"pass negatives=FEATURES") as caught:
        OneClassAutoencoder(config).fit(torch.rand(20, 784))
    assert "negative_features()" in str(caught.value)
    assert "negative_weight=0" in str(caught.value)


def test_private_training_with_the_default_config_trains_without_the_negatives(
    tmp_path, folder, monkeypatch
):
    from imgprivacy.client import training
    from imgprivacy.docl.private_budget import PrivacyBudget

    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv(DATA_ENV_VAR, str(empty))  # the negative set is never read
    seen = []

    def fake_train(features, *, config, negatives, **kwargs):
        seen.append((config, negatives, kwargs["privacy"]))
        raise SystemExit

    monkeypatch.setattr(training, "train_autoencoder", fake_train)
    budget = PrivacyBudget(epsilon=4.0)
    with pytest.raises(SystemExit):
        train_guard(folder, out=tmp_path / "g.safetensors", privacy=budget)
    ((config, negatives, privacy),) = seen
    assert config.negative_weight == 0.0 and negatives is None and privacy is budget
    assert config == AutoencoderConfig.for_edge(negative_weight=0.0, input_dim=config.input_dim)
