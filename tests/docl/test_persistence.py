import json

import pytest
import torch
from safetensors.torch import save as save_bytes

from imgprivacy.docl import (
    AutoencoderConfig,
    OneClassAutoencoder,
    autoencoder_from_bytes,
    autoencoder_to_bytes,
    load_autoencoder,
    save_autoencoder,
)
from imgprivacy.docl.defaults import DEFAULT_FEATURE_EXTRACTOR
from imgprivacy.docl.persistence import METADATA_KEY
from imgprivacy.errors import (
    CorruptFileError,
    DataNotFoundError,
    InvalidInputError,
    NotFittedError,
)

CFG = AutoencoderConfig(input_dim=12, hidden_dim=3, layer_widths=(), epochs=2)


@pytest.fixture(scope="module")
def model():
    return OneClassAutoencoder(CFG).fit(
        torch.rand(20, 12, generator=torch.Generator().manual_seed(0))
    )


def test_round_trip_keeps_weights_config_and_statistics(tmp_path, model):
    path = model.save(tmp_path / "m.safetensors")
    loaded = OneClassAutoencoder.load(path)
    assert loaded.config == model.config
    assert (loaded.error_mean_, loaded.error_std_) == (model.error_mean_, model.error_std_)
    x = torch.rand(5, 12)
    torch.testing.assert_close(loaded.distances(x), model.distances(x))


def test_bytes_round_trip_through_the_methods(model):
    loaded = OneClassAutoencoder.from_bytes(model.to_bytes())
    assert loaded.config == model.config and loaded.error_std_ == model.error_std_
    for name, tensor in model.weights().items():
        assert torch.equal(loaded.weights()[name], tensor)


def test_free_functions_are_the_methods(tmp_path, model):
    assert autoencoder_to_bytes(model) == model.to_bytes()
    by_function = save_autoencoder(model, tmp_path / "f.safetensors")
    by_method = model.save(tmp_path / "m.safetensors")
    assert by_function.read_bytes() == by_method.read_bytes()
    loaded = load_autoencoder(by_method)
    assert isinstance(loaded, OneClassAutoencoder) and loaded.error_mean_ == model.error_mean_


def test_saving_an_unfitted_model_raises_and_writes_nothing(tmp_path):
    unfitted = OneClassAutoencoder(CFG)
    for call in (unfitted.to_bytes, lambda: unfitted.save(tmp_path / "m.safetensors")):
        with pytest.raises(NotFittedError, match=r"not fitted yet.*OneClassAutoencoder\.load"):
            call()
    with pytest.raises(NotFittedError, match="not fitted yet"):
        unfitted.distances(torch.rand(2, 12))
    assert list(tmp_path.iterdir()) == []


def test_file_is_plain_safetensors_with_json_metadata(tmp_path, model):
    path = save_autoencoder(model, tmp_path / "m.safetensors")
    raw = path.read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    meta = json.loads(header["__metadata__"][METADATA_KEY])
    assert meta["feature_extractor"] == DEFAULT_FEATURE_EXTRACTOR and meta["input_dim"] == 12
    assert {"config", "error_mean", "error_std", "imgprivacy_version"} <= set(meta)
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temporary file


def _with(model, *, tensors=None, meta=None):
    weights = dict(model.weights()) if tensors is None else tensors
    raw = autoencoder_to_bytes(model)
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    metadata = json.loads(header["__metadata__"][METADATA_KEY])
    metadata.update(meta or {})
    return save_bytes(weights, metadata={METADATA_KEY: json.dumps(metadata)})


def test_rejects_nan_weights_and_bad_statistics_all_at_once(model):
    weights = dict(model.weights())
    weights["layers.1.bias"] = torch.full_like(weights["layers.1.bias"], float("nan"))
    with pytest.raises(InvalidInputError) as info:
        autoencoder_from_bytes(_with(model, tensors=weights, meta={"error_std": -1.0}))
    message = str(info.value)
    assert "layers.1.bias contains NaN" in message and "error_std must be" in message


def test_rejects_wrong_shapes_names_and_dtypes(model):
    weights = dict(model.weights())
    weights["layers.0.weight"] = torch.zeros(4, 12)
    weights["layers.1.weight"] = weights["layers.1.weight"].double()
    weights["extra"] = torch.zeros(1)
    del weights["layers.0.bias"]
    with pytest.raises(InvalidInputError) as info:
        autoencoder_from_bytes(_with(model, tensors=weights))
    message = str(info.value)
    for fragment in (
        "missing tensors ['layers.0.bias']",
        "unexpected tensors ['extra']",
        "shape (4, 12), expected (3, 12)",
        "dtype torch.float64",
    ):
        assert fragment in message


@pytest.mark.parametrize("blob", [b"", b"garbage" * 10, b"\xff" * 8 + b"{}"])
def test_rejects_non_safetensors_bytes(blob):
    with pytest.raises(CorruptFileError, match="not an imgprivacy autoencoder"):
        autoencoder_from_bytes(blob)


def test_rejects_foreign_safetensors_file():
    with pytest.raises(CorruptFileError):
        autoencoder_from_bytes(save_bytes({"w": torch.zeros(2)}))


@pytest.mark.parametrize("load", [OneClassAutoencoder.load, load_autoencoder])
def test_missing_file(tmp_path, load):
    with pytest.raises(DataNotFoundError, match="no.safetensors"):
        load(tmp_path / "no.safetensors")


def test_from_bytes_names_the_source_in_errors(model):
    with pytest.raises(CorruptFileError, match="^alice.safetensors is not an imgprivacy"):
        OneClassAutoencoder.from_bytes(b"garbage", source="alice.safetensors")


def test_rejects_metadata_without_config_or_with_huge_numbers(model):
    data = autoencoder_to_bytes(model)
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_len])
    for change in ({"config": None}, {"error_mean": 10**400}):
        meta = json.loads(header["__metadata__"][METADATA_KEY])
        for key, value in change.items():
            if value is None:
                del meta[key]
            else:
                meta[key] = value
        edited = dict(header, __metadata__={METADATA_KEY: json.dumps(meta)})
        raw = json.dumps(edited).encode()
        blob = len(raw).to_bytes(8, "little") + raw + data[8 + header_len :]
        with pytest.raises(InvalidInputError):
            autoencoder_from_bytes(blob)
