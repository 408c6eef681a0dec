"""The edge checks a guard before writing or uploading it, and refuses what the service would."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from imgprivacy.client import GuardClient, check_guard_bytes, model_file, train_guard
from imgprivacy.docl import (
    AutoencoderConfig,
    OneClassAutoencoder,
    autoencoder_to_bytes,
    persistence,
)
from imgprivacy.errors import CorruptFileError, InvalidInputError

CONFIG = AutoencoderConfig(input_dim=16, hidden_dim=4, layer_widths=(8,), epochs=2, batch_size=8)


@pytest.fixture(scope="module")
def honest() -> OneClassAutoencoder:
    return OneClassAutoencoder(CONFIG).fit(
        torch.rand(24, 16, generator=torch.Generator().manual_seed(0))
    )


def altered(model: OneClassAutoencoder, *, error_std=None, nan_weight=False) -> bytes:
    weights = {k: v.clone() for k, v in model.weights().items()}
    if nan_weight:
        weights["layers.0.weight"][0, 0] = float("nan")
    copy = OneClassAutoencoder.from_weights(
        CONFIG, weights, error_mean=model.error_mean_, error_std=model.error_std_
    )
    if error_std is not None:
        copy.error_std_ = error_std
    return autoencoder_to_bytes(copy)


def recording_client():
    calls = []

    def handler(request):
        calls.append(request)
        return httpx.Response(200, json={"name": "g"})

    return calls, GuardClient("http://svc", "t", retries=0, transport=httpx.MockTransport(handler))


def test_the_client_reads_the_layout_docl_writes():
    assert model_file.FORMAT == persistence.FORMAT
    assert model_file.METADATA_KEY == persistence.METADATA_KEY


def test_an_honest_guard_passes_and_returns_its_metadata(honest):
    metadata = check_guard_bytes(autoencoder_to_bytes(honest))
    assert metadata["error_std"] == honest.error_std_ and metadata["input_dim"] == 16


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"error_std": 0.0}, "sigma is 0 for mu = .*identical"),
        ({"error_std": 1e-9}, "sigma is 1e-09 .*identical"),
        ({"error_std": float("nan")}, "sigma must be a finite number > 0, got nan"),
        ({"error_std": -1.0}, "sigma must be a finite number > 0, got -1.0"),
        ({"nan_weight": True}, "tensor layers.0.weight contains NaN"),
    ],
)
def test_a_guard_the_service_would_refuse_is_not_uploaded(honest, change, match):
    blob = altered(honest, **change)
    with pytest.raises(InvalidInputError, match=match):
        check_guard_bytes(blob)
    calls, client = recording_client()
    with pytest.raises(InvalidInputError, match=match):
        client.upload("g", blob)
    assert calls == []  # nothing left the machine
    assert client.upload("g", blob, check=False) == {"name": "g"} and len(calls) == 1


def test_a_file_that_is_not_a_guard_is_corrupt(honest, tmp_path):
    other_format = autoencoder_to_bytes(honest).replace(
        persistence.FORMAT.encode(), b"imgprivacy.other.autoencoder"[: len(persistence.FORMAT)]
    )
    for blob in (b"not a safetensors file", b"\x10\x00\x00\x00\x00\x00\x00\x00{}", other_format):
        with pytest.raises(CorruptFileError, match="not a guard file written by"):
            check_guard_bytes(blob, source="x.safetensors")
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(b"garbage")
    calls, client = recording_client()
    with pytest.raises(CorruptFileError, match=str(path)):
        client.upload("g", path)
    assert calls == []


def test_guard_train_refuses_identical_images_and_writes_nothing(tmp_path):
    folder = tmp_path / "same"
    folder.mkdir()
    for k in range(8):
        Image.fromarray(np.full((28, 28), 120, np.uint8)).save(folder / f"{k}.png")
    out = tmp_path / "guard.safetensors"
    config = AutoencoderConfig(hidden_dim=4, layer_widths=(8,), epochs=2, batch_size=4)
    with pytest.raises(InvalidInputError, match=f"refusing to write {out}: sigma is .*identical"):
        train_guard(folder, out=out, config=config)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same"]  # no guard, no checkpoint


def test_only_png_and_jpeg_are_sent_for_checking(tmp_path):
    calls, client = recording_client()
    gif = tmp_path / "x.gif"
    Image.new("L", (4, 4)).save(gif)
    with pytest.raises(InvalidInputError, match=r"Expected a PNG or JPEG image, but .*x\.gif"):
        client.check_image(gif)
    assert calls == []


@pytest.mark.parametrize("server", ["foo", "127.0.0.1:8000", "ftp://host", "http://", ""])
def test_a_server_that_is_not_an_http_url_is_refused(server):
    with pytest.raises(InvalidInputError, match="Expected the service URL as http://HOST:PORT"):
        GuardClient(server)


def test_answers_that_are_not_the_service_are_clear_errors():
    from imgprivacy.client import ServiceRequestError

    def handler(request):
        if request.url.path == "/healthz":
            return httpx.Response(200, text="<html>a web page</html>")
        return httpx.Response(200, json={"unexpected": True})

    client = GuardClient("http://svc", "t", retries=0, transport=httpx.MockTransport(handler))
    with pytest.raises(ServiceRequestError, match="did not answer with JSON") as info:
        client.health()
    assert info.value.problems == ["<html>a web page</html>"]
    with pytest.raises(ServiceRequestError, match="unexpected answer from http://svc/v1/check"):
        client.check_features([0.5] * 4)
    with pytest.raises(ServiceRequestError, match="unexpected answer from http://svc/v1/users"):
        client.register("me")
