"""`guard train`, `serve`, the edge client and the MNIST reproduction use the library's default
model, trained as a device trains it (against the public negative set)."""

import inspect

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from imgprivacy.cli import app
from imgprivacy.cli.serve import load_settings
from imgprivacy.docl import AutoencoderConfig
from imgprivacy.docl.defaults import DEFAULT_FEATURE_EXTRACTOR

runner = CliRunner(env={"COLUMNS": "400"})


@pytest.fixture
def trained(monkeypatch, tmp_path):
    """Run `guard train` with the given flags; the config it trains with."""
    configs = []

    def fake_train_guard(images, *, out, config, **kwargs):
        configs.append(config)
        raise SystemExit(0)

    monkeypatch.setattr("imgprivacy.client.train_guard", fake_train_guard)
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(folder / "0.png")

    def run(*flags):
        result = runner.invoke(
            app, ["guard", "train", "--images", str(folder), "--out", str(tmp_path / "g"), *flags]
        )
        assert result.exit_code == 0, result.output
        return configs[-1]

    return run


def test_guard_train_trains_the_library_default_against_the_negatives(trained):
    assert trained() == AutoencoderConfig.for_edge() == AutoencoderConfig(negative_weight=1.0)
    assert trained("--negative-weight", "0") == AutoencoderConfig()
    # measured no better on CIFAR-10: that extractor's default trains without them
    assert trained("--features", "resnet20-cifar") == AutoencoderConfig.for_features(
        "resnet20-cifar"
    )
    assert trained("--epochs", "3", "--hidden-dim", "8", "--seed", "2") == AutoencoderConfig(
        epochs=3, hidden_dim=8, seed=2, negative_weight=1.0
    )


def test_private_training_defaults_to_no_negatives_and_refuses_them(trained):
    assert trained("--dp-epsilon", "4").negative_weight == 0.0
    result = runner.invoke(app, ["guard", "train", "--images", ".", "--out", "g", "--dp-epsilon",
                                 "4", "--negative-weight", "1"])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "does not support the public negative set" in result.output


def test_serve_defaults_to_the_library_default_extractor(monkeypatch):
    monkeypatch.delenv("IMGPRIVACY_FEATURE_EXTRACTOR", raising=False)
    assert load_settings({}).feature_extractor == DEFAULT_FEATURE_EXTRACTOR
    assert load_settings({"feature_extractor": "pixels"}).feature_extractor == "pixels"


def test_help_shows_the_default_extractor():
    for command in (["serve"], ["guard", "train"]):
        output = runner.invoke(app, [*command, "--help"]).output
        assert f"(default: {DEFAULT_FEATURE_EXTRACTOR})" in output, command


def test_guard_train_help_says_how_to_turn_the_negatives_off():
    output = " ".join(runner.invoke(app, ["guard", "train", "--help"]).output.split())
    assert "Default: 1 for pixels-smooth" in output
    assert "Turn it off with --negative-weight 0" in output


def test_features_list_shows_each_default_model():
    result = runner.invoke(app, ["features", "list"])
    assert result.exit_code == 0
    default = "-".join(map(str, AutoencoderConfig().layer_dims))
    assert f"{DEFAULT_FEATURE_EXTRACTOR} (default)" in result.output and default in result.output
    assert "64-256-32-256-64, Adam, 15 epochs" in result.output


def test_the_client_and_the_mnist_reproduction_use_the_default():
    from imgprivacy.client.training import folder_features
    from imgprivacy.reproduce.docl_mnist import configurations

    default = inspect.signature(folder_features).parameters["feature_extractor"].default
    assert default == DEFAULT_FEATURE_EXTRACTOR
    assert configurations(quick=False)["default"] == AutoencoderConfig.for_edge()
    assert configurations(quick=False, negatives=False)["default"] == AutoencoderConfig()
