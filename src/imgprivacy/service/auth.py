"""API tokens: shown once at registration, stored only as a SHA-256 hash.

Tokens are 256 random bits, so a plain SHA-256 (no salt, no slow hash) cannot be inverted and
lets the service find the user by an indexed lookup. The admin token comes from the settings and
is compared in constant time. :class:`UserCache` keeps recent token -> user answers, so a check
costs no database round trip.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import re
import secrets
import threading
import time
from collections.abc import Callable

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from imgprivacy.service.errors import (
    AdminRequired,
    ApprovalPending,
    InvalidToken,
    MissingToken,
    Unprocessable,
)
from imgprivacy.service.storage import Storage, UserInfo

TOKEN_PREFIX = "ipk_"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # whole name: fullmatch


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def bearer_token(request: Request) -> str:
    """The token of ``Authorization: Bearer <token>``, or :class:`MissingToken`."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise MissingToken("Send your API token as 'Authorization: Bearer <token>'.")
    return token.strip()


def is_admin(state, token: str) -> bool:
    admin = state.settings.admin_token
    return admin is not None and hmac.compare_digest(
        token.encode(), admin.get_secret_value().encode()
    )


def sent_admin_token(request: Request) -> bool:
    """Whether the request carries the admin token (False when it carries none)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and is_admin(request.app.state.service, token.strip())


async def current_user(request: Request) -> UserInfo:
    """FastAPI dependency: the user whose token authorises this request.

    A cached token is answered on the event loop; only a cache miss queries the database (in
    the thread pool), so a check costs no thread hop.
    """
    state = request.app.state.service
    token_hash = hash_token(bearer_token(request))
    user = state.users.cached(token_hash)
    if user is None:
        user = await run_in_threadpool(state.users.lookup, token_hash)
    if user is None and await run_in_threadpool(state.storage.is_pending, token_hash):
        raise ApprovalPending(
            "Your registration waits for the operator's approval; retry once it is approved."
        )
    if user is None:
        raise InvalidToken(
            "This token belongs to no user (it may have been deleted); register again with "
            "POST /v1/users."
        )
    return user


class _Lookup:
    """One database lookup of a token that other threads wait for instead of repeating."""

    def __init__(self):
        self.done = threading.Event()
        self.waiters = 0
        self.user: UserInfo | None = None
        self.failed = False


class UserCache:
    """token hash -> user for at most ``ttl`` seconds, so a check costs no database round trip.

    A deleted user's token is refused at once by the process that deleted it and within ``ttl``
    seconds by the others (the same bound as model changes, see :mod:`.sync`). Each entry lives a
    random ``ttl * (1 - jitter)`` to ``ttl`` seconds, so the entries filled together (at start-up,
    say) do not all expire on the same tick and send their checks to the database at once; and
    concurrent misses of one token share one query.

    Parameters
    ----------
    storage
        Where :meth:`lookup` finds users.
    ttl
        The longest an answer is kept, in seconds.
    jitter
        The fraction of ``ttl`` an entry's life is shortened by at most, in [0, 1).
    max_entries
        Above this many entries the expired ones are dropped, then the oldest.
    clock
        Seconds, monotonic (tests pass their own).
    seed
        Seeds the lifetimes' draws.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        ttl: float,
        jitter: float = 0.5,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
        seed: int | None = None,
    ):
        self.storage = storage
        self.ttl = ttl
        self.jitter = jitter
        self.max_entries = max_entries
        self.clock = clock
        self._random = random.Random(seed)
        self._entries: dict[str, tuple[float, UserInfo]] = {}
        self._lookups: dict[str, _Lookup] = {}
        self._lock = threading.Lock()

    def cached(self, token_hash: str) -> UserInfo | None:
        """The cached user, or None when absent or expired (then call :meth:`lookup`)."""
        hit = self._entries.get(token_hash)
        if hit is not None and hit[0] > self.clock():
            return hit[1]
        return None

    def lookup(self, token_hash: str) -> UserInfo | None:
        """The user of ``token_hash`` from the cache, or from the database (then cached)."""
        hit = self.cached(token_hash)
        if hit is not None:
            return hit
        with self._lock:
            hit = self.cached(token_hash)  # another thread's query may just have filled it
            if hit is not None:
                return hit
            pending = self._lookups.get(token_hash)
            if pending is None:
                pending = self._lookups[token_hash] = _Lookup()
                leader = True
            else:
                pending.waiters += 1
                leader = False
        if not leader:
            pending.done.wait()
            return self._query(token_hash) if pending.failed else pending.user
        try:
            pending.user = self._query(token_hash)
        except BaseException:
            pending.failed = True
            raise
        finally:
            with self._lock:
                self._lookups.pop(token_hash, None)
            pending.done.set()
        return pending.user

    def _query(self, token_hash: str) -> UserInfo | None:
        started = self.clock()
        user = self.storage.user_by_token_hash(token_hash)
        with self._lock:
            if user is None:
                self._entries.pop(token_hash, None)
                return None
            if len(self._entries) >= self.max_entries:
                self._evict(started)
            life = self.ttl * (1.0 - self.jitter * self._random.random())
            self._entries[token_hash] = (started + life, user)
        return user

    def _evict(self, now: float) -> None:
        """Drop the expired entries, then the oldest until a tenth of the room is free."""
        self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
        excess = len(self._entries) - int(0.9 * self.max_entries)
        for key in list(self._entries)[: max(excess, 0)]:
            del self._entries[key]

    def forget_user(self, name: str) -> None:
        with self._lock:
            self._entries = {k: v for k, v in self._entries.items() if v[1].name != name}


def require_admin(request: Request) -> None:
    """FastAPI dependency: the admin token from the settings."""
    state = request.app.state.service
    token = bearer_token(request)
    if not is_admin(state, token):
        raise AdminRequired("This endpoint needs the admin token configured on the service.")


def check_name(value: str, *, what: str) -> str:
    if not NAME_PATTERN.fullmatch(value):  # match() with $ would accept a trailing newline
        raise Unprocessable(
            f"Expected a {what} of 1-64 letters, digits, '.', '_' or '-' starting with a letter "
            f"or digit, got {value!r}.",
            detail=f"invalid {what}",
        )
    return value
