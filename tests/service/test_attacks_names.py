"""User and model names are checked whole: a trailing newline (which ``re.match`` with ``$``
lets through) is refused like any other character outside the name alphabet."""

from __future__ import annotations

import pytest

from tests.service.conftest import FEATURES, in_process_service


@pytest.mark.parametrize("name", ["bob\n", "bob\r\n", "b\nob"])
def test_a_user_name_with_a_newline_is_refused(tmp_path, name):
    with in_process_service(tmp_path, feature_extractor=FEATURES) as service:
        response = service.request("POST", "/v1/users", json={"name": name})
        assert response.status_code == 422
        assert response.json()["detail"] == "invalid user name"
        assert "letters, digits" in response.json()["problems"][0]
        # The name without the newline is still free.
        assert service.request("POST", "/v1/users", json={"name": "bob"}).status_code == 201


def test_a_model_name_with_a_trailing_newline_is_refused(tmp_path):
    with in_process_service(tmp_path, feature_extractor=FEATURES) as service:
        user = service.token("alice")
        response = service.request("PUT", "/v1/models/m%0A", content=b"12345678", headers=user)
        assert response.status_code == 422
        assert response.json()["detail"] == "invalid model name"
