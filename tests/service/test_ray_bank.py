"""The service with ``bank=ray``: shards follow the database, decide as the in-process bank, and
a killed shard makes checks fail closed (503 + Retry-After) until Ray restarts it."""

from __future__ import annotations

import dataclasses
import os
import signal
import time

import pytest

from tests.cluster.helpers import ray_runtime
from tests.service.conftest import fresh_database, in_process_service, local_decisions, unique

__all__ = ["ray_runtime"]  # the session fixture, imported for pytest

DIGITS = (0, 1, 3, 7)


@pytest.fixture(scope="module")
def service(ray_runtime, backend, tmp_path_factory, honest_bytes):
    tmp = tmp_path_factory.mktemp("ray-bank")
    with in_process_service(
        tmp,
        database_url=fresh_database(backend, tmp),
        bank="ray",
        ray_shards=2,
        ray_shard_cpus=0,  # the session's 2-CPU runtime also runs other tests' shards
        ray_check_timeout_seconds=20,
        sync_interval_seconds=0.3,
        probe_count=200,  # as the test servers: every model's breadth is measured (the gate)
        probe_seed=0,
    ) as running:
        running.owners = {}
        for digit in DIGITS:
            name = unique(f"digit{digit}")
            response = running.register(name)
            assert response.status_code == 201, response.text
            auth = {"Authorization": f"Bearer {response.json()['token']}"}
            put = running.request(
                "PUT", "/v1/models/digit", content=honest_bytes[digit], headers=auth
            )
            assert put.status_code == 201, put.text
            running.owners[digit] = (name, auth)
        yield running


def expected_shares(service, models: dict[str, object], x, uploader: str, probes) -> list[bool]:
    """The in-process bank + Guard of the service's settings, for the same models."""
    state = service.request("GET", "/readyz").json()
    assert state["breadth_ratio"] is not None  # the breadth gate is on: shards must honour it
    owned = {key: (key.split("/")[0], m) for key, m in models.items()}
    _, admitted = service.app.state.service.storage.model_revisions()  # when each was stored
    decided = local_decisions(
        state, owned, x, [uploader] * len(x), probes=probes, admitted=admitted
    )
    return [d.share for d in decided]


def check_all(service, x, auth) -> list[tuple[int, bool | None, str | None]]:
    out = []
    for row in x:
        response = service.request(
            "POST", "/v1/check", json={"features": row.tolist()}, headers=auth
        )
        body = response.json()
        out.append((response.status_code, body.get("share"), response.headers.get("retry-after")))
    return out


def current_models(service, honest_models, replaced=None) -> dict:
    models = {f"{name}/digit": honest_models[d] for d, (name, _) in service.owners.items()}
    return {**models, **(replaced or {})}


def test_shards_decide_as_the_in_process_bank(service, honest_models, digits, server_probes):
    x = digits["test_x"][:24]
    bank = service.app.state.service.bank
    assert len(bank) == 4 and bank.revision == service.request("GET", "/readyz").json()["revision"]
    for state in bank.shard_states:
        assert all(bank.shard_of(key) == state.shard for key, _ in state.models)
    name, auth = service.owners[1]
    got = check_all(service, x, auth)
    expected = expected_shares(
        service, current_models(service, honest_models), x, name, server_probes
    )
    assert [status for status, _, _ in got] == [200] * len(x)
    assert [share for _, share, _ in got] == expected
    assert 0 < sum(not s for s in expected) < len(x)


def test_replace_and_delete_reach_the_owning_shard(
    service, honest_models, honest_bytes, digits, server_probes
):
    x = digits["test_x"][:16]
    bank = service.app.state.service.bank
    name3, auth3 = service.owners[3]
    replaced = service.request("PUT", "/v1/models/digit", content=honest_bytes[7], headers=auth3)
    assert replaced.status_code == 200
    name0, auth0 = service.owners[0]
    extra = service.request("PUT", "/v1/models/extra", content=honest_bytes[1], headers=auth0)
    assert extra.status_code == 201
    models = current_models(
        service,
        honest_models,
        {f"{name3}/digit": honest_models[7], f"{name0}/extra": honest_models[1]},
    )
    name1, auth1 = service.owners[1]
    expected = expected_shares(service, models, x, name1, server_probes)
    assert [s for _, s, _ in check_all(service, x, auth1)] == expected
    assert service.request("DELETE", "/v1/models/extra", headers=auth0).status_code == 204
    back = service.request("PUT", "/v1/models/digit", content=honest_bytes[3], headers=auth3)
    assert back.status_code == 200
    assert sorted(bank.model_ids) == sorted(current_models(service, honest_models))
    held = {key: state.shard for state in bank.shard_states for key, _ in state.models}
    assert held == {key: bank.shard_of(key) for key in current_models(service, honest_models)}


@pytest.mark.parametrize("how", ["kill -9", "ray.kill"])
def test_a_killed_shard_fails_closed_then_recovers(
    service, honest_models, digits, ray_runtime, how, server_probes
):
    x = digits["test_x"][:6]
    bank = service.app.state.service.bank
    name, auth = service.owners[7]
    expected = expected_shares(
        service, current_models(service, honest_models), x, name, server_probes
    )
    assert [s for _, s, _ in check_all(service, x, auth)] == expected
    victim = max(bank.shard_states, key=lambda s: len(s.models))
    patience = bank.config
    # A restart (new process, imports, reload from the database) takes longer than this.
    bank.config = dataclasses.replace(patience, check_timeout=0.5)
    try:
        if how == "kill -9":
            os.kill(victim.pid, signal.SIGKILL)
        else:
            ray_runtime.kill(bank.actors[victim.shard], no_restart=False)
        started = time.monotonic()
        first = check_all(service, x[:1], auth)[0]
        assert first[0] == 503 and int(first[2]) >= 1  # no decision without every shard
        answered = []
        while time.monotonic() - started < 60 and len(answered) < len(x):
            for status, share, retry_after in check_all(service, x, auth):
                if status == 200:
                    answered.append(share)
                else:
                    assert status == 503 and int(retry_after) >= 1
            if len(answered) < len(x):
                answered.clear()
                time.sleep(0.2)
        recovered = time.monotonic() - started
    finally:
        bank.config = patience
    assert answered == expected, f"not recovered after {recovered:.1f}s"
    assert recovered < 60
    bank.sync(force=True)  # the restarted shard reloaded its own models from the database
    restarted = bank.shard_states[victim.shard]
    assert restarted.pid != victim.pid and restarted.models == victim.models
