"""Hostile clients against the in-process app: body caps while streaming, JSON nesting, rate
limits, case-insensitive names, service-wide caps, approval of registrations, UTC times,
405 ``Allow`` and the documented error statuses."""

from __future__ import annotations

import datetime as dt
import json
import random
import sqlite3

import pytest
import torch

from imgprivacy.docl import AutoencoderConfig, OneClassAutoencoder, autoencoder_to_bytes
from imgprivacy.errors import (
    AlreadyExistsError,
    CapacityError,
    RecordNotFoundError,
    StorageError,
)
from imgprivacy.service.limits import JsonDepthScanner
from imgprivacy.service.ratelimit import RateLimiter
from imgprivacy.service.storage import Storage
from tests.service.conftest import ADMIN, in_process_service, unique

CHUNK = 64 * 1024


MULTIPART_HEAD = (
    b'--x\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
    b"Content-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\n"
)


class StreamedBody:
    """An async body: ``head``, then 64 KiB chunks up to ``total`` bytes; counts the chunks."""

    def __init__(self, total: int, head: bytes = b""):
        self.total = total
        self.head = head
        self.chunks_sent = 0

    async def __aiter__(self):
        if self.head:
            yield self.head
        for _ in range(self.total // CHUNK):
            self.chunks_sent += 1
            yield b"x" * CHUNK


def assert_error(response, status: int, detail: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"detail", "problems"} and body["detail"] == detail, body
    assert all(isinstance(p, str) for p in body["problems"])
    return body


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with in_process_service(tmp_path_factory.mktemp("abuse")) as service:
        yield service


@pytest.fixture(scope="module")
def tiny_model() -> bytes:
    """A valid 784-4-784 model (the service under test runs no probe check)."""
    config = AutoencoderConfig(
        hidden_dim=4, layer_widths=(), epochs=1, batch_size=16, feature_extractor="pixels"
    )
    x = torch.rand(32, 784, generator=torch.Generator().manual_seed(0))
    return autoencoder_to_bytes(OneClassAutoencoder(config).fit(x))


# -- body caps ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "content_type", "cap"),
    [
        ("POST", "/v1/users", "application/json", 64 * 1024),
        ("POST", "/v1/check", "multipart/form-data; boundary=x", 2 * 1024 * 1024 + 16 * 1024),
        ("PUT", "/v1/models/big", "application/octet-stream", 4 * 1024 * 1024),
    ],
)
def test_an_oversized_streamed_body_is_refused_without_reading_it(
    service, method, path, content_type, cap
):
    headers = {**service.token(), "Content-Type": content_type}
    head = MULTIPART_HEAD if content_type.startswith("multipart") else b""
    body = StreamedBody(200 * 1024 * 1024, head)  # 200 MB, no Content-Length (chunked)
    response = service.request(method, path, content=body, headers=headers)
    problems = assert_error(response, 413, "upload too large")["problems"]
    assert f"at most {cap} bytes" in problems[0]
    assert body.chunks_sent <= cap // CHUNK + 2  # read up to the cap, not a byte of the rest


def test_a_declared_content_length_past_the_cap_is_refused_before_reading(service):
    body = StreamedBody(1024 * 1024)
    response = service.request(
        "POST",
        "/v1/users",
        content=body,
        headers={"Content-Length": str(1024 * 1024), "Content-Type": "application/json"},
    )
    assert_error(response, 413, "upload too large")
    assert body.chunks_sent == 0


def test_bodies_under_the_cap_still_work(service, tiny_model):
    auth = service.token()
    response = service.request("PUT", "/v1/models/small", content=tiny_model, headers=auth)
    assert response.status_code == 201, response.text
    check = service.request("POST", "/v1/check", json={"features": [0.5] * 784}, headers=auth)
    assert check.status_code == 200 and check.json()["decision"] in ("share", "block")


# -- JSON nesting -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "depth"),
    [("/v1/check", 33), ("/v1/check", 200_000), ("/v1/users", 33), ("/v1/users", 20_000)],
)
def test_deeply_nested_json_is_a_422_in_the_error_shape(service, path, depth):
    body = b'{"features": ' + b"[" * depth + b"]" * depth + b"}"
    headers = {**service.token(), "Content-Type": "application/json"}
    response = service.request("POST", path, content=body, headers=headers)
    problems = assert_error(response, 422, "json too deeply nested")["problems"]
    assert "at most 32" in problems[0]


def test_json_at_the_depth_limit_reaches_the_route(service):
    # 31 arrays inside the object: depth 32, parsed, then refused for its shape, not its depth.
    body = b'{"features": ' + b"[" * 31 + b"0.5" + b"]" * 31 + b"}"
    headers = {**service.token(), "Content-Type": "application/json"}
    response = service.request("POST", "/v1/check", content=body, headers=headers)
    assert_error(response, 422, "invalid features")


def random_json(rng: random.Random, depth: int):
    """A random JSON value nested about ``depth`` deep, with brackets, quotes and backslashes
    in its strings and keys."""
    text = "".join(rng.choice('ab[]{}"\\') for _ in range(rng.randint(0, 6)))
    if depth == 0:
        return rng.choice([text, 1.5, None, True])
    inner = [random_json(rng, depth - 1)] + [random_json(rng, 0) for _ in range(rng.randint(0, 2))]
    rng.shuffle(inner)
    return {text: inner[0], "k": inner[1:]} if rng.random() < 0.5 else inner


def nesting(value) -> int:
    if isinstance(value, dict):
        return 1 + max(map(nesting, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(nesting, value), default=0)
    return 0


def test_the_depth_scan_agrees_with_the_nesting_whatever_the_chunks():
    rng = random.Random(0)
    for _ in range(300):
        value = random_json(rng, rng.randint(1, 12))
        depth = nesting(value)
        text = json.dumps(value).encode()
        cuts = sorted(rng.sample(range(len(text) + 1), min(len(text), rng.randint(0, 6))))
        chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
        for limit in (depth - 1, depth):
            scanner = JsonDepthScanner(max_depth=limit)
            fits = all([scanner.feed(chunk) for chunk in chunks])
            assert fits == (limit >= depth), (text, cuts, limit)
            assert not fits or scanner.depth == 0


def test_escapes_are_followed_across_chunk_boundaries():
    text = b'{"a": "x\\\\", "b": "\\"[[[", "c": [[1]]}'  # an escaped backslash, an escaped quote
    for cut in range(len(text) + 1):
        scanner = JsonDepthScanner(max_depth=3)
        assert scanner.feed(text[:cut]) and scanner.feed(text[cut:]), cut
        assert not JsonDepthScanner(max_depth=2).feed(text)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"\xff\xfe\x00garbage", "application/json"),
        (b'{"name": "\\ud800"}', "application/json"),
        (b'{"name": 1e99999}', "application/json"),
        (b"null", "application/json"),
        (b'{"name": NaN}', "application/json"),
        (b"[" * 40, None),
        (b"--x\r\nbroken", "multipart/form-data; boundary=x"),
    ],
)
def test_hostile_bodies_never_give_a_5xx_or_plain_text(service, body, content_type):
    auth = service.token()
    headers = {**auth, "Content-Type": content_type} if content_type else auth
    for path in ("/v1/users", "/v1/check"):
        response = service.request("POST", path, content=body, headers=headers)
        assert 400 <= response.status_code < 500, (path, response.text)
        assert set(response.json()) == {"detail", "problems"}


# -- names, rate limits, caps, approval -------------------------------------------------------
def test_user_names_are_unique_without_regard_to_case(service):
    name = unique("alice")
    assert service.register(name).status_code == 201
    for variant in (name.upper(), name.capitalize()):
        body = assert_error(service.register(variant), 409, "user already exists")
        assert "without case" in body["problems"][0]


def test_registrations_are_rate_limited_per_client(tmp_path):
    with in_process_service(tmp_path, rate_limit_register_per_minute=2) as service:
        assert [service.register().status_code for _ in range(2)] == [201, 201]
        refused = service.register()
        assert_error(refused, 429, "too many requests")
        assert 1 <= int(refused.headers["retry-after"]) <= 30  # one token every 30 s
        # The operator is not limited (and failed attempts counted like successful ones).
        admin = {"Authorization": f"Bearer {ADMIN}"}
        assert service.register(headers=admin).status_code == 201


def test_checks_are_rate_limited_per_user(tmp_path):
    with in_process_service(tmp_path, rate_limit_check_per_second=0.01) as service:
        alice, bob = service.token("alice"), service.token("bob")
        body = {"features": [0.5] * 784}
        assert service.request("POST", "/v1/check", json=body, headers=alice).status_code == 200
        refused = service.request("POST", "/v1/check", json=body, headers=alice)
        assert_error(refused, 429, "too many requests")
        assert int(refused.headers["retry-after"]) >= 99  # 0.01 per second
        assert service.request("POST", "/v1/check", json=body, headers=bob).status_code == 200
        # An invalid token is refused before it can spend (or mint) a bucket.
        other = {"Authorization": "Bearer ipk_made_up"}
        assert_error(
            service.request("POST", "/v1/check", json=body, headers=other), 401, "invalid token"
        )


def test_rate_limiter_refills_and_reports_the_wait():
    now = [100.0]
    limiter = RateLimiter(rate=0.5, burst=2, clock=lambda: now[0])
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 2.0]
    now[0] += 1.0
    assert limiter.acquire("a") == pytest.approx(1.0)  # half a token back after 1 s
    now[0] += 1.0
    assert limiter.acquire("a") == 0.0
    assert RateLimiter(rate=0, burst=0).acquire("a") == 0.0  # disabled


def test_caps_on_users_and_models(tmp_path, tiny_model):
    with in_process_service(tmp_path, max_users=2, max_models=1) as service:
        auth = service.token()
        service.token()
        assert_error(service.register(), 403, "user limit reached")
        put = service.request("PUT", "/v1/models/a", content=tiny_model, headers=auth)
        assert put.status_code == 201
        body = assert_error(
            service.request("PUT", "/v1/models/b", content=tiny_model, headers=auth),
            403,
            "model limit reached",
        )
        assert "the most its operator allows" in body["problems"][0]
        # Replacing a stored model adds none: still allowed.
        assert (
            service.request("PUT", "/v1/models/a", content=tiny_model, headers=auth).status_code
            == 200
        )


def test_registrations_wait_for_the_admins_approval(tmp_path):
    admin = {"Authorization": f"Bearer {ADMIN}"}
    with in_process_service(tmp_path, approve_registrations=True) as service:
        response = service.register("carol")
        assert response.status_code == 202 and response.json()["approved"] is False
        carol = {"Authorization": f"Bearer {response.json()['token']}"}
        assert_error(service.request("GET", "/v1/me", headers=carol), 403, "approval pending")
        assert_error(service.register("CAROL"), 409, "user already exists")
        pending = service.request("GET", "/v1/admin/registrations", headers=admin).json()
        assert [p["name"] for p in pending] == ["carol"]
        approved = service.request("POST", "/v1/admin/registrations/carol/approve", headers=admin)
        assert approved.status_code == 200 and approved.json()["name"] == "carol"
        assert service.request("GET", "/v1/me", headers=carol).json() == {
            "name": "carol",
            "models": 0,
        }
        # Rejected: the token never works and the name is free again.
        dave = {"Authorization": f"Bearer {service.register('dave').json()['token']}"}
        rejected = service.request("DELETE", "/v1/admin/registrations/dave", headers=admin)
        assert rejected.status_code == 204
        assert_error(service.request("GET", "/v1/me", headers=dave), 401, "invalid token")
        assert_error(
            service.request("POST", "/v1/admin/registrations/dave/approve", headers=admin),
            404,
            "registration not found",
        )
        # The admin's own registrations skip the queue.
        assert service.register("erin", headers=admin).status_code == 201


# -- storage errors, existing databases ---------------------------------------------------------
def test_storage_raises_storage_errors_not_http_errors(tmp_path):
    storage = Storage(f"sqlite:///{tmp_path / 's.db'}")
    storage.create_schema()
    storage.add_user("alice", "h1")
    with pytest.raises(AlreadyExistsError, match="compared without case") as info:
        storage.add_user("Alice", "h2")
    assert info.value.reason == "user already exists" and isinstance(info.value, ValueError)
    with pytest.raises(RecordNotFoundError, match="No user called 'bob'") as info:
        storage.delete_user("bob")
    assert isinstance(info.value, KeyError) and info.value.reason == "user not found"
    with pytest.raises(CapacityError, match="1 users"):
        storage.add_user("carol", "h3", max_users=1)
    assert not any(
        cls.__module__.startswith("imgprivacy.service")
        for cls in (AlreadyExistsError, RecordNotFoundError, CapacityError, StorageError)
    )
    storage.dispose()


OLD_SCHEMA = """
CREATE TABLE users (id INTEGER NOT NULL PRIMARY KEY, name VARCHAR(64) NOT NULL UNIQUE,
    token_hash VARCHAR(64) NOT NULL, created_at DATETIME NOT NULL);
CREATE UNIQUE INDEX ix_users_token_hash ON users (token_hash);
INSERT INTO users VALUES (1, 'alice', 'h-lower', '2024-05-01 12:00:00.000000');
INSERT INTO users VALUES (2, 'ALICE', 'h-upper', '2024-05-01 12:00:00.000000');
"""


def test_a_database_of_an_earlier_version_keeps_working(tmp_path, caplog):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as connection:
        connection.executescript(OLD_SCHEMA)
    storage = Storage(f"sqlite:///{path}")
    storage.create_schema()  # adds the new tables; the lower(name) index cannot be built
    assert "uq_users_name_lower not created" in caplog.text
    upper = storage.user_by_token_hash("h-upper")
    assert upper.name == "ALICE"
    assert upper.created_at == dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone.utc)
    assert storage.user_by_token_hash("h-lower").name == "alice"
    with pytest.raises(AlreadyExistsError):
        storage.add_user("Alice", "h-new")  # checked in the transaction, without the index
    storage.dispose()


# -- times, 405, OpenAPI ------------------------------------------------------------------------
def test_times_carry_their_utc_offset_on_put_and_get(service, tiny_model):
    auth = service.token()
    put = service.request("PUT", "/v1/models/when", content=tiny_model, headers=auth).json()
    replaced = service.request("PUT", "/v1/models/when", content=tiny_model, headers=auth).json()
    got = service.request("GET", "/v1/models/when", headers=auth).json()
    listed = service.request("GET", "/v1/models", headers=auth).json()[0]
    admin = {"Authorization": f"Bearer {ADMIN}"}
    users = service.request("GET", "/v1/admin/users", headers=admin).json()
    stamps = [
        put["created_at"],
        put["updated_at"],
        replaced["created_at"],
        got["created_at"],
        got["updated_at"],
        listed["updated_at"],
        users[0]["created_at"],
    ]
    for stamp in stamps:
        assert dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).utcoffset() == dt.timedelta(
            0
        ), stamp
    assert got["created_at"] == put["created_at"] == replaced["created_at"]
    assert got["updated_at"] == replaced["updated_at"]


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PATCH", "/v1/models/x", "DELETE, GET, PUT"),
        ("GET", "/v1/check", "POST"),
        ("PUT", "/v1/users", "POST"),
    ],
)
def test_405_names_the_allowed_methods(service, method, path, allow):
    response = service.request(method, path)
    assert_error(response, 405, "method not allowed")
    assert response.headers["allow"] == allow


def test_openapi_documents_every_error_status(service):
    spec = service.request("GET", "/openapi.json").json()
    ops = spec["paths"]
    expected = {
        ("post", "/v1/users"): {"201", "202", "400", "401", "403", "409", "413", "422", "429"},
        ("post", "/v1/check"): {"200", "400", "401", "403", "413", "415", "422", "429"},
        ("put", "/v1/models/{name}"): {"200", "201", "202", "401", "403", "413", "422"},
        ("post", "/v1/admin/quarantine/{owner}/{name}/approve"): {
            "200",
            "401",
            "403",
            "404",
            "413",
            "422",
        },
        ("get", "/v1/models/{name}"): {"200", "401", "403", "404", "413", "422"},
        ("delete", "/v1/admin/users/{name}"): {"204", "401", "403", "404", "413", "422"},
    }
    for (method, path), statuses in expected.items():
        assert set(ops[path][method]["responses"]) == statuses, (method, path)
    assert "Retry-After" in ops["/v1/check"]["post"]["responses"]["429"]["headers"]
    for path, methods in ops.items():
        for method, op in methods.items():
            for status, answer in op["responses"].items():
                if status.startswith(("4", "5")):
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorOut"}, (method, path)


@pytest.mark.parametrize(
    "body",
    [
        # UTF-16 hides the brackets from a byte scanner that assumes UTF-8
        ('{"a": "\u2200", "features": ' + "[" * 5000 + "]" * 5000 + "}").encode("utf-16-le"),
        b'{"features": [' + b"9" * 400 + b"]}",  # overflows float32
    ],
)
def test_json_features_that_are_not_utf8_or_overflow_are_a_422(service, body):
    headers = {**service.token(), "Content-Type": "application/json"}
    response = service.request("POST", "/v1/check", content=body, headers=headers)
    assert_error(response, 422, "invalid features")
