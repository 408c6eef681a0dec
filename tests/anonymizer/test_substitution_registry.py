"""The substitution registry: names, one interface, fitted state, and model files of every age."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load as load_bytes

from imgprivacy.anonymizer import Anonymizer, AnonymizerConfig
from imgprivacy.anonymizer.substitution import (
    SUBSTITUTIONS,
    NoSubstitution,
    PrototypeSubstitution,
    TargetSubstitution,
    get_substitution,
)
from imgprivacy.anonymizer.substitution.prototypes import gaussian_blur
from imgprivacy.errors import InvalidInputError, NotFittedError, UnknownNameError
from tests.anonymizer.model_files import TINY_CONFIG, model_file
from tests.conftest import tiny_config


def test_registry_keeps_the_config_values_and_lists_them_for_unknown_names():
    assert list(SUBSTITUTIONS) == [
        "none",
        "prototypes",
        "target",
        "code-nearest",
        "spectral-clusters",
    ]
    assert SUBSTITUTIONS["prototypes"] is PrototypeSubstitution
    assert get_substitution("target") is TargetSubstitution
    with pytest.raises(
        UnknownNameError,
        match="'nearest'. Valid names: none, prototypes, target, code-nearest, spectral-clusters",
    ):
        get_substitution("nearest")
    with pytest.raises(
        InvalidInputError,
        match=r"one of \['none', 'prototypes', 'target', 'code-nearest', 'spectral-clusters'\]",
    ):
        AnonymizerConfig(substitution="nearest")


@pytest.mark.parametrize(
    "name", ["none", "prototypes", "target", "code-nearest", "spectral-clusters"]
)
def test_every_method_fits_transforms_and_round_trips_its_state(name):
    config = tiny_config(substitution=name, target_identity=1, n_prototypes=3)
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(12, 64, generator=gen)
    labels = np.repeat([0, 1, 2], 4)
    outputs = torch.rand(5, 64, generator=gen)
    method = get_substitution(name).from_config(config)
    fitted = method.fit(images, labels, autoencode=lambda x: x.flip(1))
    assert fitted is method
    released = fitted.transform(outputs, batch_size=2)
    assert released.shape == (5, 64) and released.dtype == torch.uint8
    tensors, metadata = fitted.state()
    # every tensor is a declared one; only code-nearest's query maps are optional (fit without them)
    optional = {"code_query_maps"}
    assert (
        set(type(method).tensor_names) - optional <= set(tensors) <= set(type(method).tensor_names)
    )
    restored = type(method).from_state(tensors, metadata, config=config)
    assert torch.equal(restored.transform(outputs), released)


def test_each_method_releases_what_it_promises():
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(12, 64, generator=gen)
    labels = np.repeat([5, 6, 7], 4)
    outputs = torch.rand(6, 64, generator=gen)
    config = tiny_config(substitution="none")
    as_is = NoSubstitution.from_config(config).transform(outputs)
    assert torch.equal(as_is, torch.round(outputs * 255).to(torch.uint8))
    target = TargetSubstitution(target_identity=6).fit(images, labels, autoencode=_never)
    assert torch.equal(target.references_, torch.round(images[4:8] * 255).to(torch.uint8))
    released = target.transform(outputs)
    distances = torch.cdist(outputs.double(), target.references_.double() / 255)
    assert torch.equal(released, target.references_[distances.argmin(1)])
    with pytest.raises(InvalidInputError, match=r"target identity 9.*\[5, 6, 7\]"):
        TargetSubstitution(target_identity=9).fit(images, labels, autoencode=_never)
    prototypes = PrototypeSubstitution(n_prototypes=3, sigma=1.0, image_size=8).fit(
        images, labels, autoencode=lambda x: x
    )
    assert len(torch.unique(prototypes.transform(outputs), dim=0)) <= 3


def test_unfitted_methods_and_bad_state_are_refused():
    with pytest.raises(NotFittedError, match="PrototypeSubstitution is not fitted"):
        PrototypeSubstitution(n_prototypes=3, sigma=1.0, image_size=8).transform(torch.zeros(1, 64))
    with pytest.raises(NotFittedError, match="TargetSubstitution is not fitted"):
        TargetSubstitution(target_identity=0).state()
    config = tiny_config(substitution="target", target_identity=0)
    with pytest.raises(InvalidInputError, match=r"target_references has dtype torch.float32"):
        TargetSubstitution.from_state({"target_references": torch.zeros(3, 64)}, {}, config=config)
    config = tiny_config(n_prototypes=3)
    bad = {"prototypes": torch.zeros(3, 64), "prototype_centres": torch.zeros(3, 63)}
    with pytest.raises(InvalidInputError, match=r"prototype_centres has shape \(3, 63\)"):
        PrototypeSubstitution.from_state(bad, {}, config=config)


# -- model files written before the registry --------------------------------------------------
def _expected_outputs(weights: dict, images: np.ndarray) -> torch.Tensor:
    from imgprivacy.anonymizer.networks import build_autoencoder

    net = build_autoencoder(AnonymizerConfig(**TINY_CONFIG))
    net.load_state_dict(weights)
    x = torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 255)
    with torch.inference_mode():
        return torch.sigmoid(net(x))


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, size=(10, 8, 8), dtype=np.uint8)


def test_old_prototype_model_file_loads_and_substitutes(images, tmp_path):
    gen = torch.Generator().manual_seed(2)
    prototypes, centres = torch.rand(6, 64, generator=gen), torch.rand(6, 64, generator=gen)
    data, weights = model_file(
        config=TINY_CONFIG, extra_tensors={"prototypes": prototypes, "prototype_centres": centres}
    )
    (tmp_path / "old.safetensors").write_bytes(data)
    model = Anonymizer.load(tmp_path / "old.safetensors")
    assert isinstance(model.substitution_, PrototypeSubstitution)
    assert model.history_.epochs[0]["phase"] == "pretrain"
    outputs = _expected_outputs(weights, images)
    nearest = torch.cdist(gaussian_blur(outputs, sigma=1.5, image_size=8), centres).argmin(1)
    expected = np.rint(prototypes[nearest].numpy() * 255).astype(np.uint8).reshape(-1, 8, 8)
    assert np.array_equal(model.transform(images), expected)
    # saving it again writes the same layout: the same tensors and metadata under the same names
    again = model.to_bytes()
    assert _tensors(again) == _tensors(data)
    assert _metadata(again) == _metadata(data)


def _tensors(data: bytes) -> dict:
    return {k: (v.dtype, v.tolist()) for k, v in load_bytes(data).items()}


def _metadata(data: bytes) -> dict:
    length = int.from_bytes(data[:8], "little")
    metadata = json.loads(json.loads(data[8 : 8 + length])["__metadata__"]["imgprivacy"])
    del metadata["imgprivacy_version"]
    return metadata


def _never(x):
    raise AssertionError("this substitution must not autoencode")


def test_old_target_model_file_loads_and_releases_target_images(images, tmp_path):
    references = torch.from_numpy(images[:4].reshape(4, 64).copy())
    config = dict(TINY_CONFIG, substitution="target", target_identity=2)
    data, weights = model_file(config=config, extra_tensors={"target_references": references})
    (tmp_path / "old.safetensors").write_bytes(data)
    model = Anonymizer.load(tmp_path / "old.safetensors")
    assert torch.equal(model.substitution_.references_, references)
    outputs = _expected_outputs(weights, images).double()
    nearest = torch.cdist(outputs, references.double() / 255).argmin(1)
    assert np.array_equal(model.transform(images), references[nearest].numpy().reshape(-1, 8, 8))


def test_model_file_from_before_the_substitution_field_loads(images, tmp_path):
    config = {k: v for k, v in TINY_CONFIG.items() if k not in ("substitution", "n_prototypes")}
    data, weights = model_file(config=config, extra_tensors={})
    (tmp_path / "older.safetensors").write_bytes(data)
    model = Anonymizer.load(tmp_path / "older.safetensors")
    assert model.config.substitution == "none" and isinstance(model.substitution_, NoSubstitution)
    expected = np.rint(_expected_outputs(weights, images).numpy() * 255).astype(np.uint8)
    assert np.array_equal(model.transform(images), expected.reshape(-1, 8, 8))


class _Inverted(NoSubstitution):
    """A registered method with JSON metadata: releases 255 - the output, remembers a note."""

    name = "inverted"

    def state(self):
        return {}, {"note": "kept"}

    @classmethod
    def state_problems(cls, tensors, metadata, *, config):
        return [] if metadata == {"note": "kept"} else [f"expected the note, got {metadata!r}"]

    def transform(self, outputs, *, batch_size=2048):
        return 255 - super().transform(outputs)


def test_a_new_registered_method_saves_and_loads_its_metadata(tiny_data, tmp_path, monkeypatch):
    images, writers = tiny_data
    monkeypatch.setitem(SUBSTITUTIONS, "inverted", _Inverted)
    model = Anonymizer(tiny_config(substitution="inverted", adversarial_epochs=0)).fit(
        images, writers
    )
    raw = model.transform(images, substitution=False)
    assert np.array_equal(model.transform(images), 255 - raw)
    loaded = Anonymizer.load(model.save(tmp_path / "m.safetensors"))
    assert isinstance(loaded.substitution_, _Inverted)
    assert np.array_equal(loaded.transform(images), 255 - raw)


def test_an_earlier_name_in_a_config_or_a_model_file_resolves_to_the_kebab_case_one(tmp_path):
    from imgprivacy.anonymizer.substitution import SUBSTITUTION_ALIASES, CodeNearestSubstitution
    from imgprivacy.anonymizer.swap_config import SwapConfig
    from imgprivacy.anonymizer.swap_model import SwapAnonymizer

    assert all(name == name.lower().replace("_", "-") for name in SUBSTITUTIONS)
    assert SUBSTITUTION_ALIASES == {"code_nearest": "code-nearest"}
    assert get_substitution("code_nearest") is CodeNearestSubstitution
    old = tiny_config(substitution="code_nearest", target_identity=1)
    assert old.substitution == "code-nearest" and old == tiny_config(
        substitution="code-nearest", target_identity=1
    )
    stored = dict(TINY_CONFIG, substitution="code_nearest", target_identity=1)
    assert AnonymizerConfig.from_dict(stored).substitution == "code-nearest"
    swap = SwapConfig.from_dict({**SwapConfig().to_dict(), "substitution": "code_nearest"})
    assert swap.substitution == "code-nearest"

    # an identity-swap model file written with the earlier name loads and releases the same
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(24, 12, 12), dtype=np.uint8)
    config = SwapConfig(
        image_size=12,
        channels=2,
        code_dim=4,
        adversary_hidden=8,
        epochs=1,
        substitution="code-nearest",
    )
    model = SwapAnonymizer(config).fit(images, np.repeat([0, 1, 2], 8))
    data = model.save(tmp_path / "new.safetensors").read_bytes()
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])["__metadata__"]
    metadata = json.loads(header["imgprivacy"])
    assert metadata["config"]["substitution"] == "code-nearest"
    metadata["config"]["substitution"] = "code_nearest"  # as files of earlier versions say
    from safetensors.torch import save as save_bytes

    old_file = tmp_path / "old.safetensors"
    old_file.write_bytes(
        save_bytes(load_bytes(data), metadata={"imgprivacy": json.dumps(metadata)})
    )
    loaded = SwapAnonymizer.load(old_file)
    assert loaded.config.substitution == "code-nearest"
    assert isinstance(loaded.substitution_, CodeNearestSubstitution)
    assert np.array_equal(loaded.transform(images), model.transform(images))
