"""Restart persistence, concurrent uploads and checks, replicas sharing one database."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from imgprivacy.client import GuardClient
from imgprivacy.service.launcher import start_server
from tests.service.conftest import ADMIN, feature_png, fresh_database, server_env, unique


def _decisions(client: GuardClient, images) -> list[str]:
    return [client.check_image(feature_png(x)).decision for x in images]


def test_restart_keeps_models_and_decisions(backend, tmp_path, honest_bytes, digits):
    url = fresh_database(backend, tmp_path)
    images = digits["test_x"][:40]
    first = start_server(log_path=tmp_path / "first.log", env=server_env(url))
    try:
        users = {}
        for digit in (0, 1, 3):
            client = GuardClient(first.url)
            client.register(unique(f"d{digit}"))
            client.upload("digit", honest_bytes[digit])
            users[digit] = client.token
        before = {d: _decisions(GuardClient(first.url, t), images) for d, t in users.items()}
        assert any(v == "block" for row in before.values() for v in row)
    finally:
        assert first.stop(kill=True) == -9  # no graceful shutdown: only what was committed survives
    with start_server(log_path=tmp_path / "second.log", env=server_env(url)) as second:
        assert GuardClient(second.url).ready()["models"] == 3
        after = {d: _decisions(GuardClient(second.url, t), images) for d, t in users.items()}
    assert after == before


def test_concurrent_uploads_and_checks(server, honest_bytes, digits):
    uploaders = []
    for _ in range(4):
        client = GuardClient(server.url, retries=0)
        client.register(unique("conc"))
        uploaders.append(client)
    checker = GuardClient(server.url)
    checker.register(unique("checker"))
    stop = threading.Event()
    errors, answers = [], []

    def check_loop():
        rows = digits["test_x"]
        k = 0
        while not stop.is_set():
            try:
                answers.append(checker.check_features(rows[k % len(rows)]).decision)
            except Exception as exc:  # any failure of a check during uploads is a bug
                errors.append(exc)
            k += 1

    def upload(i: int):
        client = uploaders[i % len(uploaders)]
        client.upload(f"m{i % 3}", honest_bytes[(0, 1, 3, 7)[i % 4]])

    threads = [threading.Thread(target=check_loop) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        with ThreadPoolExecutor(6) as pool:
            list(pool.map(upload, range(24)))
        for client in uploaders[:2]:
            client.delete("m0")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not errors and len(answers) > 20
    # Storage and the bank agree: every upload and deletion arrived exactly once.
    admin = httpx.get(f"{server.url}/v1/admin/models", headers={"Authorization": f"Bearer {ADMIN}"})
    names = {u.me()["name"] for u in uploaders}
    stored = [m for m in admin.json() if m["owner"] in names]
    assert sorted(len([m for m in stored if m["owner"] == n]) for n in names) == [2, 2, 3, 3]
    ready = checker.ready()
    assert ready["models"] == len(admin.json())


def test_replicas_learn_of_changes(backend, tmp_path, honest_bytes, honest_models, digits):
    url = fresh_database(backend, tmp_path)
    with (
        start_server(log_path=tmp_path / "a.log", env=server_env(url)) as a,
        start_server(log_path=tmp_path / "b.log", env=server_env(url)) as b,
    ):
        owner = GuardClient(a.url)
        owner.register(unique("owner"))
        other = GuardClient(b.url)
        other.register(unique("other"))
        # The owner's image whose distance is closest to mu: inside the interval, so blocked.
        model, x = honest_models[0], digits["train"][0]
        image = feature_png(x[(model.distances(x) - model.error_mean_).abs().argmin()])
        assert other.check_image(image).decision == "share"  # nobody protects it yet
        owner.upload("digit0", honest_bytes[0])  # through replica A
        deadline = time.monotonic() + 5
        while GuardClient(b.url).ready()["models"] != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert other.check_image(image).decision == "block"  # replica B blocks it now
        owner.delete("digit0")
        deadline = time.monotonic() + 5
        while GuardClient(b.url).ready()["models"] != 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert other.check_image(image).decision == "share"
