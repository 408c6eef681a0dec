"""The token cache: entries expire one by one, concurrent misses share one query (clock injected)."""

from __future__ import annotations

import threading
import time

import pytest

from imgprivacy.service.auth import UserCache
from imgprivacy.service.storage import UserInfo


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeStorage:
    """Users by token hash; counts the queries; can hold a query until released."""

    def __init__(self, users: dict[str, UserInfo]):
        self.users = users
        self.queries: list[str] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.failures = 0  # how many of the next queries fail

    def user_by_token_hash(self, token_hash: str) -> UserInfo | None:
        self.queries.append(token_hash)
        self.entered.set()
        assert self.release.wait(10), "the test never released the query"
        if self.failures:
            self.failures -= 1
            raise ConnectionError("database hiccup")
        return self.users.get(token_hash)


def users(n: int) -> dict[str, UserInfo]:
    return {f"hash{i}": UserInfo(i, f"user{i}", None) for i in range(n)}


def test_entries_filled_together_expire_one_by_one_within_the_ttl():
    clock, storage = Clock(), FakeStorage(users(200))
    cache = UserCache(storage, ttl=1.0, jitter=0.5, clock=clock, seed=0)
    for key in storage.users:  # all filled on the same tick, as at start-up
        assert cache.lookup(key).name == f"user{key[4:]}"
    assert len(storage.queries) == 200

    def alive() -> int:
        return sum(cache.cached(key) is not None for key in storage.users)

    clock.now += 0.49  # before the shortest possible life (ttl * (1 - jitter))
    assert alive() == 200
    clock.now += 0.26  # t = 0.75: spread lives, so some have expired and some not
    assert 40 < alive() < 160
    expired = 200 - alive()
    for key in storage.users:  # the checks of this tick reach the database only for those
        cache.lookup(key)
    assert len(storage.queries) == 200 + expired
    clock.now += 0.25  # t = 1.0 after the fill: every first-fill entry is gone (the bound holds)
    first_fill = [key for key in storage.users if key not in storage.queries[200:]]
    assert all(cache.cached(key) is None for key in first_fill)


def test_without_jitter_every_entry_lives_exactly_the_ttl():
    clock, storage = Clock(), FakeStorage(users(3))
    cache = UserCache(storage, ttl=2.0, jitter=0.0, clock=clock)
    cache.lookup("hash0")
    clock.now += 1.999
    assert cache.cached("hash0").name == "user0"
    clock.now += 0.001
    assert cache.cached("hash0") is None


def test_unknown_tokens_are_not_cached_and_forget_user_drops_a_user():
    clock, storage = Clock(), FakeStorage(users(2))
    cache = UserCache(storage, ttl=5.0, clock=clock, seed=1)
    assert cache.lookup("nobody") is None and cache.lookup("nobody") is None
    assert storage.queries == ["nobody", "nobody"]
    cache.lookup("hash0"), cache.lookup("hash1")
    cache.forget_user("user0")
    assert cache.cached("hash0") is None and cache.cached("hash1").name == "user1"


def test_a_full_cache_drops_expired_entries_first_then_the_oldest():
    clock, storage = Clock(), FakeStorage(users(30))
    cache = UserCache(storage, ttl=1.0, jitter=0.0, max_entries=10, clock=clock)
    for i in range(5):
        cache.lookup(f"hash{i}")
    clock.now += 2  # those five expired
    for i in range(5, 15):
        cache.lookup(f"hash{i}")
    assert all(cache.cached(f"hash{i}") is not None for i in range(5, 15))
    for i in range(15, 17):  # full with live entries: the oldest make room
        cache.lookup(f"hash{i}")
    assert len(cache._entries) <= 10
    assert cache.cached("hash5") is None and cache.cached("hash16").name == "user16"


def test_concurrent_misses_of_one_token_share_one_query():
    storage = FakeStorage(users(1))
    storage.release.clear()
    cache = UserCache(storage, ttl=1.0, clock=Clock())
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.lookup("hash0"))) for _ in range(5)
    ]
    threads[0].start()
    assert storage.entered.wait(10)  # the first miss is querying the database
    for thread in threads[1:]:
        thread.start()
    deadline = time.monotonic() + 10
    while cache._lookups["hash0"].waiters < 4:  # the others wait for its answer
        assert time.monotonic() < deadline, "the other lookups never waited"
        time.sleep(0.001)
    storage.release.set()
    for thread in threads:
        thread.join(10)
    assert storage.queries == ["hash0"]
    assert [user.name for user in results] == ["user0"] * 5


def test_a_failed_query_lets_the_waiting_lookups_query_themselves():
    storage = FakeStorage(users(1))
    storage.release.clear()
    storage.failures = 1
    cache = UserCache(storage, ttl=1.0, clock=Clock())
    errors, results = [], []

    def first():
        try:
            cache.lookup("hash0")
        except ConnectionError as exc:
            errors.append(exc)

    leader = threading.Thread(target=first)
    leader.start()
    assert storage.entered.wait(10)
    follower = threading.Thread(target=lambda: results.append(cache.lookup("hash0")))
    follower.start()
    deadline = time.monotonic() + 10
    while cache._lookups["hash0"].waiters < 1:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    storage.release.set()
    leader.join(10), follower.join(10)
    assert len(errors) == 1 and [u.name for u in results] == ["user0"]
    assert storage.queries == ["hash0", "hash0"]


@pytest.mark.parametrize("jitter", [0.0, 0.5, 0.9])
def test_no_entry_outlives_the_ttl(jitter):
    clock, storage = Clock(), FakeStorage(users(50))
    cache = UserCache(storage, ttl=1.0, jitter=jitter, clock=clock, seed=3)
    for key in storage.users:
        cache.lookup(key)
    lives = sorted(expiry - clock.now for expiry, _ in cache._entries.values())
    assert lives[-1] <= 1.0 and lives[0] >= 1.0 - jitter
    assert (lives[-1] - lives[0] > 0.1) == (jitter > 0)
