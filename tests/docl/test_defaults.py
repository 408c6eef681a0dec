"""The default model is written down once: every entry point that trains or serves agrees."""

import dataclasses
from pathlib import Path

import pytest

from imgprivacy.docl import AutoencoderConfig, FilterBank, OneClassAutoencoderDetector
from imgprivacy.docl.defaults import (
    DEFAULT_FEATURE_EXTRACTOR,
    MODEL_DEFAULTS,
    model_defaults,
    model_shape,
)
from imgprivacy.errors import UnknownNameError
from imgprivacy.features import FEATURES, get_extractor
from imgprivacy.features.faces import FaceNetConfig


def test_the_config_defaults_are_the_default_extractors_model():
    config = AutoencoderConfig()
    assert config.feature_extractor == DEFAULT_FEATURE_EXTRACTOR
    assert config == AutoencoderConfig.for_features(DEFAULT_FEATURE_EXTRACTOR)
    for field, value in MODEL_DEFAULTS[DEFAULT_FEATURE_EXTRACTOR].items():
        assert getattr(config, field) == value, field


def test_every_extractor_has_a_default_model_of_its_dimension():
    assert set(MODEL_DEFAULTS) == set(FEATURES)
    for name in ("pixels", "pixels-smooth"):
        assert MODEL_DEFAULTS[name]["input_dim"] == get_extractor(name).dim
    assert MODEL_DEFAULTS["faces-cnn"]["input_dim"] == FaceNetConfig().embedding_dim
    for name in FEATURES:
        config = AutoencoderConfig.for_features(name)
        assert config.feature_extractor == name
        assert config.hidden_dim < config.input_dim  # the paper's M < D


def test_for_features_applies_overrides_and_names_unknown_extractors():
    config = AutoencoderConfig.for_features("resnet20-cifar", epochs=3, seed=7)
    assert (config.input_dim, config.epochs, config.seed) == (64, 3, 7)
    assert model_shape("resnet20-cifar") == "64-256-32-256-64"
    assert model_shape("faces-cnn") == "256-32-256"
    with pytest.raises(UnknownNameError, match="No default model for feature extractor 'vgg'"):
        AutoencoderConfig.for_features("vgg")
    with pytest.raises(UnknownNameError, match="pixels-smooth"):
        model_defaults("vgg")


def test_the_paper_model_stays_on_raw_pixels():
    paper = AutoencoderConfig.paper()
    assert paper.feature_extractor == "pixels" and paper.layer_dims == [784, 32, 784]
    assert AutoencoderConfig.paper(feature_extractor="faces-cnn").feature_extractor == "faces-cnn"


def test_the_bank_and_the_detector_default_to_the_same_model():
    assert FilterBank().feature_extractor == DEFAULT_FEATURE_EXTRACTOR
    detector = OneClassAutoencoderDetector()
    config = AutoencoderConfig()
    for field in dataclasses.fields(config):
        if field.name != "input_dim":  # the detector reads D from X
            assert getattr(detector, field.name) == getattr(config, field.name), field.name


def test_the_readme_names_the_default_model():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert f"by default `{DEFAULT_FEATURE_EXTRACTOR}`" in readme
    assert readme.count(model_shape(DEFAULT_FEATURE_EXTRACTOR)) >= 2  # prose and the example


def test_the_readme_example_uses_the_services_guard_point(monkeypatch):
    from imgprivacy.service.settings import ServiceSettings

    for name in ("IMGPRIVACY_ALPHA", "IMGPRIVACY_MARGIN", "IMGPRIVACY_POLICY"):
        monkeypatch.delenv(name, raising=False)
    settings = ServiceSettings()
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    example = (
        f'Guard(policy="{settings.policy}", alpha={settings.alpha:g}, margin={settings.margin:.1f})'
    )
    assert example in readme
