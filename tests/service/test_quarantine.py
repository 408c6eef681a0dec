"""Quarantine (``quarantine_refused``): uploads refused for their behaviour wait for the admin,
who approves them into the bank or rejects them; nothing else is ever quarantined."""

from __future__ import annotations

import torch

from imgprivacy.docl import AutoencoderConfig, OneClassAutoencoder, autoencoder_to_bytes
from imgprivacy.docl.persistence import expected_shapes
from tests.service.conftest import ADMIN, FEATURES, in_process_service

ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN}"}


def overflowing_bytes() -> bytes:
    """The default architecture, finite weights, a hidden layer that overflows: NaN distances."""
    config = AutoencoderConfig(feature_extractor=FEATURES)
    weights = {name: torch.zeros(shape) for name, shape in expected_shapes(config).items()}
    weights["layers.0.bias"].fill_(3e38)
    weights["layers.1.weight"].fill_(3e38)
    model = OneClassAutoencoder.from_weights(config, weights, error_mean=20.0, error_std=5.0)
    return autoencoder_to_bytes(model)


def shadow_bytes() -> bytes:
    """A fitted model whose statistics claim far better reconstructions than it gives."""
    x = torch.rand(64, 784, generator=torch.Generator().manual_seed(0))
    model = OneClassAutoencoder(
        AutoencoderConfig(hidden_dim=4, layer_widths=(), epochs=1, feature_extractor=FEATURES)
    ).fit(x)
    model.error_mean_, model.error_std_ = 1e-3, 1e-3
    return autoencoder_to_bytes(model)


def test_without_the_setting_a_refused_upload_is_dropped(tmp_path):
    with in_process_service(tmp_path) as service:
        user = service.token("alice")
        response = service.request("PUT", "/v1/models/m", content=overflowing_bytes(), headers=user)
        assert (response.status_code, response.json()["detail"]) == (
            422,
            "model gives non-finite distances",
        )
        assert service.request("GET", "/v1/admin/quarantine", headers=ADMIN_AUTH).json() == []


def test_a_quarantined_upload_waits_then_is_rejected(tmp_path):
    with in_process_service(tmp_path, quarantine_refused=True) as service:
        user = service.token("alice")
        owner = service.request("GET", "/v1/me", headers=user).json()["name"]
        response = service.request("PUT", "/v1/models/m", content=overflowing_bytes(), headers=user)
        assert response.status_code == 202
        body = response.json()
        assert (body["name"], body["detail"], body["reason"]) == (
            "m",
            "model quarantined for review",
            "model gives non-finite distances",
        )
        assert "NaN" in body["problems"][0]
        # Not the user's model, not in the bank.
        assert service.request("GET", "/v1/models", headers=user).json() == []
        assert service.request("GET", "/readyz").json()["models"] == 0
        [row] = service.request("GET", "/v1/admin/quarantine", headers=ADMIN_AUTH).json()
        assert (row["owner"], row["name"], row["reason"]) == (
            owner,
            "m",
            "model gives non-finite distances",
        )
        assert row["problems"] == body["problems"] and row["created_at"].endswith("Z")
        assert row["probe_claim"] == 0.0  # no probe set in this service
        # Only the admin reviews.
        for method, path in (
            ("GET", "/v1/admin/quarantine"),
            ("DELETE", f"/v1/admin/quarantine/{owner}/m"),
            ("POST", f"/v1/admin/quarantine/{owner}/m/approve"),
        ):
            assert service.request(method, path, headers=user).status_code == 403
        rejected = service.request("DELETE", f"/v1/admin/quarantine/{owner}/m", headers=ADMIN_AUTH)
        assert rejected.status_code == 204
        assert service.request("GET", "/v1/admin/quarantine", headers=ADMIN_AUTH).json() == []
        again = service.request("DELETE", f"/v1/admin/quarantine/{owner}/m", headers=ADMIN_AUTH)
        assert (again.status_code, again.json()["detail"]) == (404, "model not found")


def test_an_approved_upload_enters_the_bank(tmp_path, data_dir):
    settings = dict(quarantine_refused=True, probe_count=20, probe_seed=0, data_dir=str(data_dir))
    with in_process_service(tmp_path, **settings) as service:
        user = service.token("bob")
        owner = service.request("GET", "/v1/me", headers=user).json()["name"]
        body = shadow_bytes()
        response = service.request("PUT", "/v1/models/shadow", content=body, headers=user)
        assert response.status_code == 202
        assert response.json()["reason"] == "model statistics do not match its distances"
        # A format refusal is never quarantined: there is nothing to review.
        bad = service.request("PUT", "/v1/models/junk", content=b"not a model", headers=user)
        assert (bad.status_code, bad.json()["detail"]) == (422, "invalid model file")
        listed = service.request("GET", "/v1/admin/quarantine", headers=ADMIN_AUTH).json()
        assert [(q["owner"], q["name"]) for q in listed] == [(owner, "shadow")]

        approved = service.request(
            "POST", f"/v1/admin/quarantine/{owner}/shadow/approve", headers=ADMIN_AUTH
        )
        assert approved.status_code == 200, approved.text
        assert (approved.json()["owner"], approved.json()["name"]) == (owner, "shadow")
        assert approved.json()["size_bytes"] == len(body)
        assert service.request("GET", "/readyz").json()["models"] == 1
        mine = service.request("GET", "/v1/models", headers=user).json()
        assert [m["name"] for m in mine] == ["shadow"]
        assert service.request("GET", "/v1/admin/quarantine", headers=ADMIN_AUTH).json() == []
        twice = service.request(
            "POST", f"/v1/admin/quarantine/{owner}/shadow/approve", headers=ADMIN_AUTH
        )
        assert twice.status_code == 404


def test_quarantine_room_per_user_and_cascade_on_user_deletion(tmp_path):
    with in_process_service(tmp_path, quarantine_refused=True, max_models_per_user=1) as service:
        user = service.token("carol")
        owner = service.request("GET", "/v1/me", headers=user).json()["name"]
        nan = overflowing_bytes()
        assert service.request("PUT", "/v1/models/a", content=nan, headers=user).status_code == 202
        # The same name replaces its entry; a second name needs room.
        assert service.request("PUT", "/v1/models/a", content=nan, headers=user).status_code == 202
        second = service.request("PUT", "/v1/models/b", content=nan, headers=user)
        assert (second.status_code, second.json()["detail"]) == (422, "too many models")
        assert len(service.request("GET", "/v1/admin/quarantine", headers=ADMIN_AUTH).json()) == 1
        deleted = service.request("DELETE", f"/v1/admin/users/{owner}", headers=ADMIN_AUTH)
        assert deleted.status_code == 204
        assert service.request("GET", "/v1/admin/quarantine", headers=ADMIN_AUTH).json() == []


def test_quarantine_statuses_are_in_the_openapi(tmp_path):
    with in_process_service(tmp_path) as service:
        paths = service.request("GET", "/openapi.json").json()["paths"]
    assert "202" in paths["/v1/models/{name}"]["put"]["responses"]
    assert set(paths["/v1/admin/quarantine"]["get"]["responses"]) >= {"200", "401", "403"}
    approve = paths["/v1/admin/quarantine/{owner}/{name}/approve"]["post"]["responses"]
    assert set(approve) >= {"200", "401", "403", "404", "422"}
    reject = paths["/v1/admin/quarantine/{owner}/{name}"]["delete"]["responses"]
    assert set(reject) >= {"204", "401", "403", "404", "422"}
