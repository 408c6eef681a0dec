"""Registration, authorisation, checks and the operator endpoints over real HTTP."""

from __future__ import annotations

import io

import httpx
import pytest
import torch
from PIL import Image

from imgprivacy.client import GuardClient, ServiceRequestError
from imgprivacy.service.launcher import start_server
from tests.service.conftest import ADMIN, feature_png, local_decisions, server_env, unique


def test_owner_shares_and_others_are_blocked_like_in_process(
    server, new_user, honest_bytes, honest_models, digits, server_probes
):
    alice, bob = new_user("alice"), new_user("bob")
    assert alice.upload("digit0", honest_bytes[0])["hidden_dim"] == 16
    bob.upload("digit1", honest_bytes[1])
    # What the in-process bank and Guard decide with every model registered so far.
    state = alice.ready()
    users = {"alice": alice.me()["name"], "bob": bob.me()["name"]}
    x = digits["test_x"][torch.as_tensor(digits["test_y"] == 0)][:12]
    http = [alice.check_image(feature_png(row)) for row in x] + [
        bob.check_image(feature_png(row)) for row in x
    ]
    admin = httpx.get(
        f"{server.url}/v1/admin/models", headers={"Authorization": f"Bearer {ADMIN}"}
    ).json()
    if len(admin) == 2:  # only when this module's other tests have not added models yet
        models = {
            f"{users['alice']}/digit0": (users["alice"], honest_models[0]),
            f"{users['bob']}/digit1": (users["bob"], honest_models[1]),
        }
        uploaders = [users["alice"]] * 12 + [users["bob"]] * 12
        local = local_decisions(state, models, torch.cat([x, x]), uploaders, probes=server_probes)
        assert [r.share for r in http] == [d.share for d in local]
    assert all(r.share for r in http[:12])  # the owner's own digit is never blocked by their model
    assert not all(r.share for r in http[12:])  # someone else uploading alice's digit: blocked
    for result in http:
        assert users["alice"] not in result.reason and "digit0" not in result.reason
        assert result.policy == state["policy"]


def test_features_and_multipart_give_the_same_decision(server, new_user, honest_bytes, digits):
    user = new_user()
    user.upload("g", honest_bytes[3])
    row = digits["test_x"][0]
    by_json = user.check_features(row)
    by_png = user.check_image(feature_png(row))
    multipart = httpx.post(
        f"{server.url}/v1/check",
        files={"image": ("x.png", feature_png(row), "image/png")},
        headers={"Authorization": f"Bearer {user.token}"},
    )
    assert multipart.status_code == 200
    assert by_json.decision == by_png.decision == multipart.json()["decision"]
    buffer = io.BytesIO()
    Image.open(io.BytesIO(feature_png(row))).convert("RGB").resize((56, 56)).save(buffer, "JPEG")
    assert user.check_image(buffer.getvalue()).decision in ("share", "block")  # decoded, resized


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "missing token"),
        ({"Authorization": "Bearer ipk_nope"}, "invalid token"),
        ({"Authorization": "Basic abc"}, "missing token"),
    ],
)
def test_missing_or_invalid_token_is_401(server, headers, detail):
    for method, path in [
        ("GET", "/v1/models"),
        ("POST", "/v1/check"),
        ("PUT", "/v1/models/x"),
        ("DELETE", "/v1/models/x"),
        ("GET", "/v1/me"),
    ]:
        response = httpx.request(method, f"{server.url}{path}", headers=headers, content=b"x")
        assert response.status_code == 401, (method, path)
        assert response.json()["detail"] == detail
        assert response.headers["www-authenticate"] == "Bearer"


def test_users_cannot_touch_each_others_models(server, new_user, honest_bytes):
    alice, mallory = new_user("alice"), new_user("mallory")
    alice.upload("private", honest_bytes[0])
    for call in (
        lambda: mallory._request("GET", "/v1/models/private"),
        lambda: mallory.delete("private"),
    ):
        with pytest.raises(ServiceRequestError) as info:
            call()
        assert info.value.status == 404 and info.value.detail == "model not found"
    assert mallory.models() == []
    assert [m["name"] for m in alice.models()] == ["private"]  # untouched
    # Replacing "private" as mallory creates mallory's own model; alice's stays as it was.
    before = alice.models()[0]["sha256"]
    mallory.upload("private", honest_bytes[1])
    assert alice.models()[0]["sha256"] == before


def test_admin_endpoints(server, new_user, honest_bytes):
    user = new_user("abuser")
    user.upload("m", honest_bytes[7])
    name = user.me()["name"]
    for token in (user.token, "wrong"):
        response = httpx.get(
            f"{server.url}/v1/admin/users", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 403 and response.json()["detail"] == "admin token required"
    admin = GuardClient(server.url, ADMIN)
    assert name in [u["name"] for u in admin._request("GET", "/v1/admin/users").json()]
    rows = [m for m in admin._request("GET", "/v1/admin/models").json() if m["owner"] == name]
    assert len(rows) == 1 and "error_mean" not in rows[0] and "error_std" not in rows[0]
    admin._request("DELETE", f"/v1/admin/models/{name}/m")
    assert user.models() == []
    user.upload("n", honest_bytes[7])
    admin._request("DELETE", f"/v1/admin/users/{name}")  # cascades to the user's models
    remaining = admin._request("GET", "/v1/admin/models").json()
    assert not [m for m in remaining if m["owner"] == name]
    with pytest.raises(ServiceRequestError, match="invalid token"):
        user.models()


def test_registration_errors(server):
    client = GuardClient(server.url)
    name = unique("dup")
    client.register(name)
    with pytest.raises(ServiceRequestError) as info:
        client.register(name)
    assert (info.value.status, info.value.detail) == (409, "user already exists")
    with pytest.raises(ServiceRequestError) as info:
        client.register("bad name!")
    assert (info.value.status, info.value.detail) == (422, "invalid user name")


def test_check_input_errors(server, new_user):
    user = new_user()
    auth = {"Authorization": f"Bearer {user.token}"}
    cases = [
        (
            {"content": b"GIF89a", "headers": {**auth, "Content-Type": "image/png"}},
            422,
            "invalid image",
        ),
        (
            {
                "content": b"\x89PNG\r\n\x1a\nbroken",
                "headers": {**auth, "Content-Type": "image/png"},
            },
            422,
            "invalid image",
        ),
        (
            {"content": b"x", "headers": {**auth, "Content-Type": "text/plain"}},
            415,
            "unsupported media type",
        ),
        ({"json": {"features": [0.5] * 10}, "headers": auth}, 422, "invalid features"),
        ({"json": {"features": [2.0] * 784}, "headers": auth}, 422, "invalid features"),
        ({"json": {"pixels": []}, "headers": auth}, 422, "invalid features"),
        (
            {
                "content": b"\x89PNG\r\n\x1a\n" + b"0" * (3 * 1024 * 1024),
                "headers": {**auth, "Content-Type": "image/png"},
            },
            413,
            "upload too large",
        ),
    ]
    for kwargs, status, detail in cases:
        response = httpx.post(f"{server.url}/v1/check", **kwargs)
        assert (response.status_code, response.json()["detail"]) == (status, detail), kwargs.get(
            "json"
        )


def test_health_metrics_and_openapi(server, new_user):
    user = new_user()
    user.check_features([0.0] * 784)
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/readyz").json()
    assert ready["status"] == "ready" and ready["feature_dim"] == 784
    metrics = httpx.get(f"{server.url}/metrics").text
    for name in (
        "imgprivacy_checks_total",
        "imgprivacy_check_latency_seconds_bucket",
        "imgprivacy_batch_size_bucket",
        "imgprivacy_http_requests_total",
        "imgprivacy_models",
    ):
        assert name in metrics
    spec = httpx.get(f"{server.url}/openapi.json").json()
    body = spec["paths"]["/v1/check"]["post"]["requestBody"]["content"]
    assert {"image/png", "image/jpeg", "multipart/form-data", "application/json"} <= set(body)
    assert (
        "application/octet-stream"
        in spec["paths"]["/v1/models/{name}"]["put"]["requestBody"]["content"]
    )
    assert {"401", "413", "415", "422", "429"} <= set(
        spec["paths"]["/v1/check"]["post"]["responses"]
    )
    assert {"409", "413", "422", "429"} <= set(spec["paths"]["/v1/users"]["post"]["responses"])
    assert "404" in spec["paths"]["/v1/models/{name}"]["get"]["responses"]


def test_hostile_bodies_over_http(server, new_user):
    """Refused while streaming, in the error shape, and the server keeps serving."""
    sent = []

    def endless():
        while len(sent) < 400:  # 25 MB, chunked: no Content-Length to refuse early
            sent.append(1)
            yield b"x" * 65536

    response = httpx.post(
        f"{server.url}/v1/users",
        content=endless(),
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert (response.status_code, response.json()["detail"]) == (413, "upload too large")
    user = new_user()
    deep = b'{"features": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    response = httpx.post(
        f"{server.url}/v1/check",
        content=deep,
        headers={"Authorization": f"Bearer {user.token}", "Content-Type": "application/json"},
    )
    assert (response.status_code, response.json()["detail"]) == (422, "json too deeply nested")
    response = httpx.request("PATCH", f"{server.url}/v1/models/x")
    assert response.status_code == 405 and response.headers["allow"] == "DELETE, GET, PUT"
    assert response.json()["detail"] == "method not allowed"
    with pytest.raises(ServiceRequestError) as info:
        GuardClient(server.url).register(user.me()["name"].upper())
    assert (info.value.status, info.value.detail) == (409, "user already exists")
    assert user.me()["models"] == 0


# -- the OpenAPI against a live server ----------------------------------------------------------
@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    """A live server (SQLite, limits off: the fuzzer registers freely) and a user's token."""
    pytest.importorskip("schemathesis")  # the dev extra installs it
    tmp = tmp_path_factory.mktemp("fuzz")
    env = server_env(f"sqlite:///{tmp / 'fuzz.db'}", probe_count=0)
    with start_server(log_path=tmp / "service.log", env=env) as server:
        token = GuardClient(server.url).register(unique("fuzz"))
        yield server, token


def fuzz(operation, *, base_url: str, headers: dict[str, str], examples: int = 30) -> None:
    """Send ``examples`` generated requests to one operation; raise on the first failure."""
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
        response_headers_conformance,
    ]

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,  # no example database written into the repository
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def run(case):
        case.call_and_validate(base_url=base_url, headers=headers, checks=checks)

    run()


@pytest.mark.slow
def test_the_live_service_matches_its_openapi(fuzzed):
    """30 generated requests per operation: no 5xx; every status, body, header and content
    type as the OpenAPI documents it."""
    import schemathesis

    server, token = fuzzed
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()
        secret = ADMIN if operation.path.startswith("/v1/admin") else token
        try:
            fuzz(operation, base_url=server.url, headers={"Authorization": f"Bearer {secret}"})
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)


def _metric(text: str, name: str, **labels: str) -> float:
    """A sample of the Prometheus text format (0 when the series does not exist yet)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        series, _, value = line.rpartition(" ")
        if series == (f"{name}{{{wanted}}}" if labels else name):
            return float(value)
    return 0.0


def test_check_answers_and_their_metrics(server, new_user, honest_bytes, digits):
    from imgprivacy.service.routes.check import BLOCK_REASON

    owner, other = new_user("owner"), new_user("other")
    owner.upload("digit0", honest_bytes[0])
    state = owner.ready()
    zeros = digits["test_x"][torch.as_tensor(digits["test_y"] == 0)][:6]
    before = httpx.get(f"{server.url}/metrics").text
    answers = []
    for client in (owner, other):
        for row in zeros:
            response = httpx.post(
                f"{server.url}/v1/check",
                content=feature_png(row),
                headers={"Authorization": f"Bearer {client.token}", "Content-Type": "image/png"},
            )
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/json"
            answers.append(response.json())
    refused = httpx.post(
        f"{server.url}/v1/check", content=b"x", headers={"Authorization": "Bearer ipk_nope"}
    )
    assert refused.status_code == 401
    after = httpx.get(f"{server.url}/metrics").text

    for answer in answers:
        assert list(answer) == ["decision", "share", "reason", "policy", "alpha"]
        assert answer["share"] == (answer["decision"] == "share")
        assert (answer["policy"], answer["alpha"]) == (state["policy"], state["alpha"])
        assert (answer["reason"] == BLOCK_REASON) != answer["share"]
    # The server is shared with other tests whose users hold the same digit-0 model, so the
    # owner's own uploads may be claimed too: they are shared at least as often as another's.
    owner_shared = sum(a["share"] for a in answers[:6])
    assert owner_shared >= sum(a["share"] for a in answers[6:])
    blocked = sum(not a["share"] for a in answers)
    assert blocked > 0  # someone else uploading the owner's digits

    def delta(name, **labels):
        return _metric(after, name, **labels) - _metric(before, name, **labels)

    assert delta("imgprivacy_checks_total", decision="block") == blocked
    assert delta("imgprivacy_checks_total", decision="share") == len(answers) - blocked
    assert delta("imgprivacy_check_latency_seconds_count") == len(answers)
    check = {"method": "POST", "route": "/v1/check"}
    assert delta("imgprivacy_http_requests_total", **check, status="200") == len(answers)
    assert delta("imgprivacy_http_requests_total", **check, status="401") == 1
