"""Per-client rate limits: a token bucket per client, in each worker's memory.

A client is its user on routes that need a token (checks: the token is verified first, so made-up
tokens cannot mint fresh buckets), else its IP address as uvicorn reports it (registration;
behind a proxy, let uvicorn trust the proxy's ``X-Forwarded-For`` so it is the real client).
Each worker keeps its own buckets, so with W workers a client gets up to W times the rate;
that bounds abuse without a shared store. Over the rate the route answers 429 with
``Retry-After`` (:class:`imgprivacy.service.errors.TooManyRequests`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from fastapi import Request

from imgprivacy.service.auth import sent_admin_token
from imgprivacy.service.errors import TooManyRequests
from imgprivacy.service.storage import UserInfo


class RateLimiter:
    """Token buckets: ``rate`` requests per second on average, bursts of up to ``burst``.

    Parameters
    ----------
    rate : float
        Tokens added per second; 0 disables the limiter (every request allowed).
    burst : float
        Bucket size: how many requests a rested client may send at once (at least 1).
    max_clients : int
        Buckets kept; when exceeded, the full ones (clients idle long enough) are dropped.
    clock : callable
        Seconds, monotonic (a fake clock in tests).

    Examples
    --------
    >>> now = [0.0]
    >>> limiter = RateLimiter(rate=1.0, burst=2, clock=lambda: now[0])
    >>> [limiter.acquire("a") for _ in range(3)]
    [0.0, 0.0, 1.0]
    >>> now[0] = 1.0
    >>> limiter.acquire("a"), limiter.acquire("b")
    (0.0, 0.0)
    """

    def __init__(
        self,
        *,
        rate: float,
        burst: float,
        max_clients: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.rate = rate
        self.burst = max(1.0, burst)
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at time)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def acquire(self, key: str) -> float:
        """Take one token for ``key``: 0.0 when allowed, else the seconds until one is free."""
        if not self.enabled:
            return 0.0
        with self._lock:
            now = self.clock()
            tokens, at = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                if len(self._buckets) > self.max_clients:
                    self._prune(now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        full = [
            k for k, (t, at) in self._buckets.items() if t + (now - at) * self.rate >= self.burst
        ]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) > self.max_clients:  # a flood of distinct clients: start over
            self._buckets.clear()


def _refuse(wait: float, what: str) -> TooManyRequests:
    return TooManyRequests(
        f"Too many {what} from this client; retry after {max(1, round(wait))} s "
        "(the Retry-After header).",
        retry_after=wait,
    )


def limit_registrations(request: Request) -> None:
    """FastAPI dependency of ``POST /v1/users``: per IP address; the admin is not limited."""
    state = request.app.state.service
    if sent_admin_token(request):
        return
    host = request.client.host if request.client else "unknown"
    wait = state.limiters["register"].acquire("ip:" + host)
    if wait > 0:
        raise _refuse(wait, "registrations")


def limit_checks(state, user: UserInfo) -> None:
    """The limit of ``POST /v1/check``: per user, once the token is known valid.

    Called inline by the route on the event loop (a dict update under an uncontended lock), not
    as a FastAPI dependency: a plain ``def`` dependency would cost a thread-pool hop per check.
    """
    wait = state.limiters["check"].acquire("user:" + user.name)
    if wait > 0:
        raise _refuse(wait, "checks")


def build_limiters(settings) -> dict[str, RateLimiter]:
    """The limiters of one process from its settings (a rate of 0 disables one)."""
    register = settings.rate_limit_register_per_minute
    check = settings.rate_limit_check_per_second
    return {
        "register": RateLimiter(rate=register / 60, burst=register),
        "check": RateLimiter(rate=check, burst=check),
    }
