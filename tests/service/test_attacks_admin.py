"""Admin answers that speak to the admin, and the Ray worker check that a blank address does not
pass."""

from __future__ import annotations

import pytest

from imgprivacy.errors import InvalidInputError
from imgprivacy.service.ray_bank import check_workers
from tests.service.conftest import ADMIN, FEATURES, in_process_service

ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN}"}


def test_deleting_a_missing_model_as_admin_points_to_the_admin_listing(tmp_path):
    with in_process_service(tmp_path, feature_extractor=FEATURES) as service:
        service.token("alice")
        response = service.request("DELETE", "/v1/admin/models/alice/nope", headers=ADMIN_AUTH)
        assert response.status_code == 404
        body = response.json()
        assert body["detail"] == "model not found"
        assert body["problems"][0].startswith("No model alice/nope; GET /v1/admin/models")


@pytest.mark.parametrize("address", [None, "", "  "])
def test_several_workers_on_ray_need_a_real_address(address):
    with pytest.raises(InvalidInputError, match="needs --ray-address"):
        check_workers(workers=2, bank="ray", ray_address=address)


def test_one_address_is_enough_for_several_workers():
    check_workers(workers=2, bank="ray", ray_address="127.0.0.1:6379")  # no error


def test_admin_paths_match_user_names_without_regard_to_case(tmp_path):
    from imgprivacy.service.quarantine import QuarantineStore
    from tests.service.test_attacks_quarantine import _upload

    with in_process_service(tmp_path, approve_registrations=True) as service:
        state = service.app.state.service
        for name in ("Alice-Case", "Bob-Case", "Carol-Case"):
            assert service.register(name).status_code == 202  # waits for approval
        approved = service.request(
            "POST", "/v1/admin/registrations/alice-case/approve", headers=ADMIN_AUTH
        )
        assert approved.status_code == 200 and approved.json()["name"] == "Alice-Case"
        rejected = service.request("DELETE", "/v1/admin/registrations/BOB-CASE", headers=ADMIN_AUTH)
        assert rejected.status_code == 204
        assert [p.name for p in state.storage.pending_users()] == ["Carol-Case"]

        alice = state.storage.list_users()[0][0]
        for model in ("m1", "m2"):
            info, _ = state.storage.put_model(alice, model, _upload(), max_models=4)
            assert info.owner == "Alice-Case"
        gone = service.request("DELETE", "/v1/admin/models/ALICE-CASE/m1", headers=ADMIN_AUTH)
        assert gone.status_code == 204
        assert [m.name for m in state.storage.list_models()] == ["m2"]
        # Model names stay case-sensitive.
        missing = service.request("DELETE", "/v1/admin/models/alice-case/M2", headers=ADMIN_AUTH)
        assert missing.status_code == 404

        store = QuarantineStore(state.storage)
        for model in ("q1", "q2"):
            store.hold(alice, model, _upload(), reason="r", problems=["p"], max_models=4)
        took = service.request(
            "POST", "/v1/admin/quarantine/aLiCe-cAsE/q1/approve", headers=ADMIN_AUTH
        )
        assert took.status_code == 200 and took.json()["owner"] == "Alice-Case"
        dropped = service.request(
            "DELETE", "/v1/admin/quarantine/ALICE-case/q2", headers=ADMIN_AUTH
        )
        assert dropped.status_code == 204 and store.list() == []

        assert (
            service.request("DELETE", "/v1/admin/users/alice-CASE", headers=ADMIN_AUTH).status_code
            == 204
        )
        assert state.storage.list_users() == []
        unknown = service.request("DELETE", "/v1/admin/users/nobody", headers=ADMIN_AUTH)
        assert unknown.status_code == 404 and unknown.json()["detail"] == "user not found"
