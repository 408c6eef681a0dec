"""Feature extractors: registry, the ResNet-20 port, the face extractor file, scaling, mismatches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imgprivacy.docl import AutoencoderConfig, FilterBank, OneClassAutoencoder
from imgprivacy.errors import (
    CorruptFileError,
    DataNotFoundError,
    InvalidInputError,
    UnknownNameError,
)
from imgprivacy.features import FEATURES, get_extractor
from imgprivacy.features.face_training import train_face_net
from imgprivacy.features.faces import (
    PATH_ENV_VAR,
    FaceNetConfig,
    load_face_extractor,
    save_face_extractor,
)
from imgprivacy.features.resnet20 import (
    CifarResNet,
    build_resnet20,
    load_resnet20,
    load_scale,
    raw_features,
    read_state_dict,
)
from imgprivacy.reproduce.docl_data import DoclData
from imgprivacy.reproduce.docl_protocol import ProtocolSettings, evaluate_configuration


def test_registry_names_and_unknown_name_lists_them():
    assert {"pixels", "pixels-smooth", "resnet20-cifar", "faces-cnn"} <= set(FEATURES)
    with pytest.raises(UnknownNameError, match="Valid names: .*faces-cnn.*resnet20-cifar"):
        get_extractor("resnet50")


def test_resnet20_npz_round_trip_and_key_errors(tmp_path):
    torch.manual_seed(0)
    reference = CifarResNet().eval()
    state = {k: v.numpy() for k, v in reference.state_dict().items() if "num_batches" not in k}
    path = tmp_path / "weights.npz"
    np.savez(path, **state)
    net = build_resnet20(read_state_dict(path))
    images = torch.randint(0, 256, (3, 32, 32, 3), dtype=torch.uint8)
    assert torch.allclose(raw_features(net, images), raw_features(reference, images))
    assert raw_features(net, images).shape == (3, 64)
    broken = dict(state)
    broken["conv9.weight"] = broken.pop("conv1.weight")
    with pytest.raises(CorruptFileError, match=r"missing tensors \['conv1.weight'\].*conv9"):
        build_resnet20({k: torch.as_tensor(v) for k, v in broken.items()})
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(CorruptFileError, match="intact copy"):
        read_state_dict(tmp_path / "bad.npz")


def test_resnet20_features_are_scaled_to_unit_interval(data_dir):
    extractor = get_extractor("resnet20-cifar")
    images = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    features = extractor.transform(images)
    assert features.shape == (6, 64) and features.dtype == torch.float32
    assert float(features.min()) >= 0.0 and float(features.max()) <= 1.0
    raw = raw_features(load_resnet20(), images)
    assert torch.allclose(features, (raw / load_scale()).clamp(0, 1))
    assert load_scale().shape == (64,) and bool((load_scale() > 0).all())
    with pytest.raises(InvalidInputError, match=r"\(N, 32, 32, 3\).*images\[None\]"):
        extractor.transform(images[0])
    with pytest.raises(InvalidInputError, match="uint8"):
        extractor.transform(images.astype(np.float32))


@pytest.fixture(scope="module")
def face_file(tmp_path_factory):
    """A tiny face extractor trained on 2 random 'identities' (1 epoch)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 24, 20), dtype=np.uint8)
    images[8:] //= 2  # the second identity is darker
    config = FaceNetConfig(
        input_size=(24, 20), channels=(4, 8), embedding_dim=16, epochs=1, batch_size=8
    )
    model = train_face_net(images, np.repeat([3, 5], 8), config=config)
    path = tmp_path_factory.mktemp("faces") / "faces.safetensors"
    save_face_extractor(model, path)
    return path, images


def test_face_extractor_file_round_trip_and_scaling(face_file, monkeypatch):
    path, images = face_file
    model = load_face_extractor(path)
    assert model.info["identities"] == [3, 5] and model.config.num_classes == 2
    monkeypatch.setenv(PATH_ENV_VAR, str(path))
    extractor = get_extractor("faces-cnn")  # found by name through the environment
    assert (extractor.dim, extractor.input_size, extractor.mode) == (16, (24, 20), "L")
    features = extractor.transform(images)
    assert features.shape == (16, 16)
    assert float(features.min()) >= 0.0 and float(features.max()) <= 1.0
    assert torch.allclose(features, (model.raw_features(images) / model.scale).clamp(0, 1))
    with pytest.raises(InvalidInputError, match=r"\(N, 24, 20\)"):
        extractor.transform(images[:, :10])


def test_face_extractor_missing_or_corrupt_file_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv(PATH_ENV_VAR, str(tmp_path / "none.safetensors"))
    with pytest.raises(DataNotFoundError, match="imgprivacy features train-face-extractor"):
        get_extractor("faces-cnn").transform(np.zeros((1, 96, 84), np.uint8))
    (tmp_path / "bad.safetensors").write_bytes(b"\x08" + b"\x00" * 20)
    with pytest.raises(CorruptFileError, match="not an imgprivacy face extractor"):
        load_face_extractor(tmp_path / "bad.safetensors")


def _fitted(extractor: str, dim: int = 8) -> OneClassAutoencoder:
    config = AutoencoderConfig(
        input_dim=dim, hidden_dim=2, layer_widths=(), epochs=1, feature_extractor=extractor
    )
    return OneClassAutoencoder(config).fit(torch.rand(8, dim))


def test_bank_refuses_a_model_of_another_extractor():
    bank = FilterBank(input_dim=8, feature_extractor="resnet20-cifar")
    bank.add(_fitted("resnet20-cifar"), owner="alice")
    with pytest.raises(
        InvalidInputError, match="trained on 'pixels' features but this bank uses 'resnet20-cifar'"
    ):
        bank.add(_fitted("pixels"), owner="bob")
    assert bank.owners == ("alice",)


def test_protocol_refuses_features_of_another_extractor():
    x = torch.rand(20, 8)
    y = np.repeat([0, 1], 10)
    data = DoclData("toy", (0, 1), x, y, x, y, x, "toy", feature_extractor="resnet20-cifar")
    config = AutoencoderConfig(hidden_dim=2, epochs=1, feature_extractor="faces-cnn")
    with pytest.raises(InvalidInputError, match="expects 'faces-cnn' features .* 'resnet20-cifar'"):
        evaluate_configuration(data, config, settings=ProtocolSettings(adversary=False), label="x")
