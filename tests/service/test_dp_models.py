"""Differentially private guards in the service: admitted, and listed with their epsilon and delta
(read from the stored file's metadata, no column)."""

from __future__ import annotations

import pytest
import torch

from imgprivacy.docl import AutoencoderConfig, OneClassAutoencoder, autoencoder_to_bytes
from imgprivacy.docl.private_budget import PrivacyBudget
from imgprivacy.service.model_privacy import HEADER_PREFIX, privacy_of
from tests.service.conftest import FEATURES, TEST_CONFIG, in_process_service

TINY = AutoencoderConfig(
    hidden_dim=4,
    layer_widths=(),
    epochs=1,
    batch_size=16,
    feature_extractor=FEATURES,
)


@pytest.fixture(scope="module")
def tiny_models() -> dict[str, bytes]:
    """A DP and a non-private 784-4-784 model (the in-process service runs no probe check)."""
    x = torch.rand(48, 784, generator=torch.Generator().manual_seed(0))
    private = OneClassAutoencoder(TINY).fit(x, privacy=PrivacyBudget(epsilon=3.0, delta=1e-6))
    return {"dp": private.to_bytes(), "plain": OneClassAutoencoder(TINY).fit(x).to_bytes()}


def test_the_listing_shows_a_dp_models_budget(tmp_path, tiny_models):
    with in_process_service(tmp_path) as service:
        user = service.token("dp")
        put = service.request("PUT", "/v1/models/private", content=tiny_models["dp"], headers=user)
        assert put.status_code == 201, put.text
        assert (put.json()["dp_epsilon"], put.json()["dp_delta"]) == (3.0, 1e-6)
        plain = service.request(
            "PUT", "/v1/models/plain", content=tiny_models["plain"], headers=user
        )
        assert plain.status_code == 201, plain.text
        listed = {m["name"]: m for m in service.request("GET", "/v1/models", headers=user).json()}
        assert (listed["private"]["dp_epsilon"], listed["private"]["dp_delta"]) == (3.0, 1e-6)
        assert listed["plain"]["dp_epsilon"] is None and listed["plain"]["dp_delta"] is None
        one = service.request("GET", "/v1/models/private", headers=user).json()
        assert one["dp_epsilon"] == 3.0


def test_privacy_is_read_from_the_start_of_the_file(tiny_models):
    assert privacy_of(tiny_models["dp"][:HEADER_PREFIX]) == (3.0, 1e-6)
    assert privacy_of(tiny_models["plain"][:HEADER_PREFIX]) == (None, None)
    assert privacy_of(tiny_models["dp"][:100]) == (None, None)  # a header cut short
    assert privacy_of(b"garbage garbage") == (None, None)


@pytest.mark.slow
def test_the_real_service_admits_and_lists_a_dp_guard(server, new_user, digits):
    """A DP guard on 300 images of one digit passes every admission check, probes included."""
    config = AutoencoderConfig(**TEST_CONFIG)
    guard = OneClassAutoencoder(config).fit(digits["train"][0], privacy=PrivacyBudget(epsilon=2.0))
    client = new_user("dp")
    info = client.upload("digit0", autoencoder_to_bytes(guard))
    assert info["dp_epsilon"] == 2.0 and info["dp_delta"] == 1e-5
    assert [m["dp_epsilon"] for m in client.models()] == [2.0]
