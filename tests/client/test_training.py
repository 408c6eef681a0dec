"""Edge training: train_autoencoder is fit(), train_guard resumes from <out>.ckpt, the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from imgprivacy.cli import app
from imgprivacy.client import folder_features, train_autoencoder, train_guard
from imgprivacy.docl import AutoencoderConfig, OneClassAutoencoder, load_autoencoder
from imgprivacy.errors import InvalidInputError
from tests.docl.test_autoencoder import Recorder, assert_same_model

SMALL = AutoencoderConfig(input_dim=16, hidden_dim=4, layer_widths=(8,), epochs=5, batch_size=16)
GUARD = AutoencoderConfig(hidden_dim=4, layer_widths=(8,), epochs=4, batch_size=8, seed=2)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """24 grey 28x28 PNGs of a bright square that moves (the pixels extractor's size)."""
    path = tmp_path_factory.mktemp("mine")
    rng = np.random.default_rng(0)
    for k in range(24):
        pixels = (rng.random((28, 28)) * 60).astype(np.uint8)
        pixels[4 + k % 12 : 14 + k % 12, 6:18] = 230
        Image.fromarray(pixels).save(path / f"{k:03d}.png")
    return path


@pytest.mark.parametrize(
    "config", [SMALL, SMALL.replace(optimizer="adam", learning_rate=1e-2, input_noise=0.1)]
)
def test_edge_training_equals_fit(config):
    x = torch.rand(40, 16, generator=torch.Generator().manual_seed(1))
    recorder = Recorder()
    edge = train_autoencoder(x, config=config, progress=recorder)
    assert_same_model(edge, OneClassAutoencoder(config).fit(x))
    assert recorder.tasks == [("training autoencoder", 5)] and len(recorder.statuses) == 5


def test_interrupted_training_resumes_and_refuses_other_images(tmp_path):
    x = torch.rand(40, 16, generator=torch.Generator().manual_seed(2))
    checkpoint = tmp_path / "guard.ckpt"
    with pytest.raises(KeyboardInterrupt):
        train_autoencoder(x, config=SMALL, checkpoint=checkpoint, progress=Recorder(stop_at=2))
    recorder = Recorder()
    resumed = train_autoencoder(x, config=SMALL, checkpoint=checkpoint, progress=recorder)
    assert recorder.statuses[:2] == ["resumed", "resumed"] and len(recorder.statuses) == 5
    assert_same_model(resumed, OneClassAutoencoder(SMALL).fit(x))
    other = torch.rand(40, 16)
    with pytest.raises(InvalidInputError, match="other features"):
        train_autoencoder(other, config=SMALL, checkpoint=checkpoint)
    restarted = train_autoencoder(other, config=SMALL, checkpoint=checkpoint, resume=False)
    assert_same_model(restarted, OneClassAutoencoder(SMALL).fit(other))


def test_interrupted_guard_resumes_from_its_checkpoint(folder, tmp_path):
    out = tmp_path / "guard.safetensors"
    checkpoint = tmp_path / "guard.safetensors.ckpt"
    with pytest.raises(KeyboardInterrupt):
        train_guard(folder, out=out, config=GUARD, progress=Recorder(stop_at=2))
    assert checkpoint.is_file() and not out.exists()
    recorder = Recorder()
    model = train_guard(folder, out=out, config=GUARD, progress=recorder)
    assert recorder.statuses[:2] == ["resumed", "resumed"]
    assert not checkpoint.exists()
    reference = OneClassAutoencoder(GUARD.replace(input_dim=784)).fit(folder_features(folder))
    assert_same_model(model, reference)
    saved = load_autoencoder(out)
    assert saved.error_mean_ == reference.error_mean_
    assert all(torch.equal(v, reference.weights()[k]) for k, v in saved.weights().items())


def test_cli_guard_train_resumes_or_restarts(folder, tmp_path):
    out = tmp_path / "guard.safetensors"
    checkpoint = tmp_path / "guard.safetensors.ckpt"
    options = ["--images", str(folder), "--out", str(out), "--hidden-dim", "4", "--epochs", "3"]
    options += ["--negative-weight", "0"]  # the images only: the negatives are tested apart
    # A checkpoint of another run: --resume (the default) refuses it, --restart starts over.
    OneClassAutoencoder(SMALL).fit(torch.rand(20, 16), checkpoint=checkpoint)
    runner = CliRunner()
    result = runner.invoke(app, ["guard", "train", *options])
    assert result.exit_code == 3 and "other features" in result.output, result.output
    assert "Traceback" not in result.output
    assert checkpoint.is_file() and not out.exists()
    result = runner.invoke(app, ["guard", "train", *options, "--restart"])
    assert result.exit_code == 0, result.output
    assert not checkpoint.exists()
    expected = OneClassAutoencoder(AutoencoderConfig(input_dim=784, hidden_dim=4, epochs=3))
    expected.fit(folder_features(folder))
    assert load_autoencoder(out).error_mean_ == expected.error_mean_


def test_guard_training_with_calibration_resumes_and_keeps_the_fraction(folder, tmp_path):
    config = GUARD.replace(calibration_fraction=0.25)
    out = tmp_path / "guard.safetensors"
    with pytest.raises(KeyboardInterrupt):
        train_guard(folder, out=out, config=config, progress=Recorder(stop_at=2))
    model = train_guard(folder, out=out, config=config)
    reference = OneClassAutoencoder(config.replace(input_dim=784)).fit(folder_features(folder))
    assert_same_model(model, reference)
    assert reference.calibration_size_ == 6  # a quarter of the 24 images
    saved = load_autoencoder(out)
    assert saved.config.calibration_fraction == 0.25
    assert (saved.error_mean_, saved.error_std_) == (reference.error_mean_, reference.error_std_)


def test_cli_guard_train_takes_the_calibration_fraction(folder, tmp_path):
    out = tmp_path / "guard.safetensors"
    options = ["--images", str(folder), "--out", str(out), "--hidden-dim", "4", "--epochs", "2"]
    options += ["--negative-weight", "0"]
    runner = CliRunner()
    result = runner.invoke(app, ["guard", "train", *options, "--calibration", "0.25"])
    assert result.exit_code == 0, result.output
    assert load_autoencoder(out).config.calibration_fraction == 0.25
    result = runner.invoke(app, ["guard", "train", *options, "--calibration", "0.7"])
    assert result.exit_code == 2 and "0.5" in result.output, result.output
