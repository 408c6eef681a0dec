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
