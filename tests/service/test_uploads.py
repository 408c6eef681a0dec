"""Every upload validation failure is a 4xx with a stable detail, and storage stays unchanged."""

from __future__ import annotations

import json

import httpx
import pytest
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from imgprivacy.docl import AutoencoderConfig, OneClassAutoencoder, autoencoder_to_bytes
from imgprivacy.docl.persistence import METADATA_KEY, read_metadata


def rebuild(blob: bytes, *, tensors=None, **metadata_changes) -> bytes:
    """``blob`` with some tensors and/or metadata fields replaced (a crafted upload)."""
    meta = read_metadata(blob)
    meta.update(metadata_changes)
    current = load_tensors(blob)
    current.update(tensors or {})
    return save_tensors(current, metadata={METADATA_KEY: json.dumps(meta)})


@pytest.fixture(scope="module")
def generalist(digits):
    """The paper's adversary pushed further: trained on many digits AND public images."""
    x = torch.cat([*(digits["train"][d][:150] for d in range(10)), digits["fashion"]])
    config = AutoencoderConfig(
        hidden_dim=64,
        layer_widths=(),
        epochs=6,
        optimizer="adam",
        learning_rate=3e-3,
        batch_size=64,
    )
    return autoencoder_to_bytes(OneClassAutoencoder(config).fit(x))


def crafted(honest: bytes, generalist: bytes) -> list[tuple[str, bytes, int, str]]:
    tensors = load_tensors(honest)
    first = sorted(tensors)[0]
    wrong_shape = {first: torch.zeros(3, 3)}
    float64 = {first: tensors[first].double()}
    nan = {first: torch.full_like(tensors[first], float("nan"))}
    meta = read_metadata(honest)
    other_features = dict(meta["config"], feature_extractor="resnet20-cifar")
    return [
        ("garbage", b"definitely not safetensors", 422, "invalid model file"),
        ("empty", b"", 422, "invalid model file"),
        ("truncated", honest[: len(honest) // 2], 422, "invalid model file"),
        ("wrong shape", rebuild(honest, tensors=wrong_shape), 422, "invalid model file"),
        ("float64", rebuild(honest, tensors=float64), 422, "invalid model file"),
        ("NaN weights", rebuild(honest, tensors=nan), 422, "invalid model file"),
        ("mu = 0", rebuild(honest, error_mean=0.0), 422, "invalid model file"),
        ("sigma < 0", rebuild(honest, error_std=-1.0), 422, "invalid model file"),
        ("sigma infinite", rebuild(honest, error_std=float("inf")), 422, "invalid model file"),
        ("format version", rebuild(honest, format_version=99), 422, "invalid model file"),
        (
            "other features",
            rebuild(honest, config=other_features, feature_extractor="resnet20-cifar"),
            422,
            "model does not match this service",
        ),
        (
            "implausible sigma",
            rebuild(honest, error_std=5000.0),
            422,
            "model does not match this service",
        ),
        (
            "interval covers everything",
            rebuild(honest, error_std=40.0 * meta["error_std"]),
            422,
            "model claims public probe images",
        ),
        ("generalist autoencoder", generalist, 422, "model claims public probe images"),
    ]


def test_every_invalid_upload_is_refused_and_changes_nothing(
    server, new_user, honest_bytes, generalist
):
    user = new_user()
    user.upload("mine", honest_bytes[0])
    before_models = user.models()
    before_revision = user.ready()["revision"]
    url, auth = f"{server.url}/v1/models/mine", {"Authorization": f"Bearer {user.token}"}
    for label, body, status, detail in crafted(honest_bytes[0], generalist):
        for name in ("mine", "new"):  # replacing an existing model and creating one
            response = httpx.put(url.replace("mine", name), content=body, headers=auth)
            assert (response.status_code, response.json()["detail"]) == (status, detail), label
            assert response.json()["problems"], label
    assert user.models() == before_models
    assert user.ready()["revision"] == before_revision


def test_size_cap_name_and_architecture_limits(server, new_user, honest_bytes, digits):
    user = new_user()
    auth = {"Authorization": f"Bearer {user.token}"}
    big = httpx.put(
        f"{server.url}/v1/models/big", content=b"\0" * (4 * 1024 * 1024 + 1), headers=auth
    )
    assert (big.status_code, big.json()["detail"]) == (413, "upload too large")
    bad_name = httpx.put(f"{server.url}/v1/models/..%2Fx", content=honest_bytes[0], headers=auth)
    assert bad_name.status_code in (404, 422)
    wrong_dim = autoencoder_to_bytes(
        OneClassAutoencoder(
            AutoencoderConfig(input_dim=16, hidden_dim=4, layer_widths=(), epochs=1)
        ).fit(torch.rand(8, 16))
    )
    response = httpx.put(f"{server.url}/v1/models/small", content=wrong_dim, headers=auth)
    assert (response.status_code, response.json()["detail"]) == (
        422,
        "model does not match this service",
    )
    assert "input_dim is 16" in response.json()["problems"][0]
    assert user.models() == []
