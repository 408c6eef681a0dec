"""Prototype substitution: blur, clustering, nearest-prototype replacement, persistence."""

import numpy as np
import pytest
import torch

from imgprivacy.anonymizer import Anonymizer, AnonymizerConfig
from imgprivacy.anonymizer.substitution import NoSubstitution
from imgprivacy.anonymizer.substitution.prototypes import (
    PrototypeSubstitution,
    fit_prototypes,
    gaussian_blur,
    substitute,
)
from imgprivacy.errors import InvalidInputError
from tests.anonymizer.model_files import without_tensors
from tests.conftest import tiny_config


def test_blur_keeps_ink_and_is_linear():
    x = torch.rand(3, 64)
    y = torch.rand(3, 64)
    blur = lambda t: gaussian_blur(t, sigma=1.0, image_size=8)  # noqa: E731
    assert torch.allclose(blur(2 * x + y), 2 * blur(x) + blur(y), atol=1e-5)
    assert torch.equal(gaussian_blur(x, sigma=0.0, image_size=8), x)


def test_substitute_replaces_each_image_by_its_nearest_prototype():
    prototypes = torch.zeros(2, 16)
    prototypes[0, :8] = 1.0  # ink in the top half
    prototypes[1, 8:] = 1.0  # ink in the bottom half
    images = torch.zeros(3, 16)
    images[0, 1] = 0.9
    images[1, 12] = 0.8
    images[2, 2:5] = 0.5
    centres = gaussian_blur(prototypes, sigma=0.5, image_size=4)
    shown = torch.eye(2, 16)
    out = substitute(images, centres=centres, prototypes=shown, sigma=0.5, image_size=4)
    assert torch.equal(out, shown[[0, 1, 0]])


def test_prototypes_are_cluster_means_without_labels():
    rng = np.random.default_rng(0)
    a = np.zeros(16, np.float32)
    a[:4] = 1
    b = np.zeros(16, np.float32)
    b[-4:] = 1
    pixels = np.stack([a] * 10 + [b] * 10) + 0.01 * rng.random((20, 16)).astype(np.float32)
    pixels = torch.as_tensor(pixels).clamp(0, 1)
    centres, prototypes = fit_prototypes(pixels, n_prototypes=2, sigma=0.5, image_size=4)
    assert prototypes.shape == centres.shape == (2, 16) and prototypes.dtype == torch.float32
    found = sorted(int(p.argmax()) for p in prototypes)
    assert found[0] < 4 and found[1] >= 12
    # the images shown for each cluster can differ from the clustered ones (the originals)
    _, shown = fit_prototypes(pixels, shown=1 - pixels, n_prototypes=2, sigma=0.5, image_size=4)
    assert sorted(int(p.argmin()) for p in shown) == found
    with pytest.raises(InvalidInputError, match="at least n_prototypes=30"):
        fit_prototypes(torch.zeros(5, 16), n_prototypes=30, sigma=1.0, image_size=4)


def test_outputs_take_at_most_n_prototypes_values(fitted, tiny_data):
    images, _ = tiny_data
    out = fitted.transform(images)
    assert len(np.unique(out.reshape(len(out), -1), axis=0)) <= fitted.config.n_prototypes
    raw = fitted.transform(images, substitution=False)
    assert len(np.unique(raw.reshape(len(raw), -1), axis=0)) > fitted.config.n_prototypes


def test_prototypes_are_saved_and_checked(fitted, tiny_data, tmp_path):
    images, _ = tiny_data
    loaded = Anonymizer.load(fitted.save(tmp_path / "m.safetensors"))
    assert isinstance(loaded.substitution_, PrototypeSubstitution)
    assert torch.equal(loaded.substitution_.prototypes_, fitted.substitution_.prototypes_)
    assert torch.equal(loaded.substitution_.centres_, fitted.substitution_.centres_)
    assert np.array_equal(loaded.transform(images), fitted.transform(images))
    # a file that declares prototypes but lacks them is refused with the tensors' names
    bad = without_tensors(fitted.to_bytes(), ["prototypes", "prototype_centres"])
    (tmp_path / "bad.safetensors").write_bytes(bad)
    with pytest.raises(
        InvalidInputError, match=r"missing tensors \['prototype_centres', 'prototypes'\]"
    ):
        Anonymizer.load(tmp_path / "bad.safetensors")


def test_no_substitution_when_substitution_is_none(tiny_data):
    images, writers = tiny_data
    model = Anonymizer(tiny_config(substitution="none")).fit(images, writers)
    assert isinstance(model.substitution_, NoSubstitution)
    assert np.array_equal(model.transform(images), model.transform(images, substitution=False))


def test_n_prototypes_is_validated():
    with pytest.raises(InvalidInputError, match="n_prototypes must be >= 2.*substitution='none'"):
        AnonymizerConfig(n_prototypes=1)
    assert AnonymizerConfig(n_prototypes=0, substitution="none").n_prototypes == 0
    with pytest.raises(InvalidInputError, match="substitution must be one of"):
        AnonymizerConfig(substitution="nearest")
    with pytest.raises(InvalidInputError, match="needs a target_identity"):
        AnonymizerConfig(substitution="target")
    with pytest.raises(InvalidInputError, match="prototype_blur"):
        AnonymizerConfig(prototype_blur=-1.0)
