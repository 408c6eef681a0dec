"""What one service process holds: settings, storage, the bank, the Guard, the batcher."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from imgprivacy.docl import FilterBank, Guard
from imgprivacy.features import FeatureExtractor
from imgprivacy.service.metrics import Metrics
from imgprivacy.service.probe import ProbeSet
from imgprivacy.service.ratelimit import RateLimiter
from imgprivacy.service.scorer import MicroBatcher
from imgprivacy.service.settings import ServiceSettings
from imgprivacy.service.storage import Storage, UserInfo
from imgprivacy.service.sync import BankSync


class UserCache:
    """token hash -> user for ``ttl`` seconds, so a check costs no database round trip.

    A deleted user's token is refused at once by the process that deleted it and within ``ttl``
    seconds by the others (the same bound as model changes, see :mod:`.sync`).
    """

    def __init__(self, storage: Storage, *, ttl: float):
        self.storage = storage
        self.ttl = ttl
        self._entries: dict[str, tuple[float, UserInfo]] = {}
        self._lock = threading.Lock()

    def cached(self, token_hash: str) -> UserInfo | None:
        """The cached user, or None when absent or expired (then call :meth:`lookup`)."""
        hit = self._entries.get(token_hash)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return None

    def lookup(self, token_hash: str) -> UserInfo | None:
        hit = self.cached(token_hash)
        if hit is not None:
            return hit
        now = time.monotonic()
        user = self.storage.user_by_token_hash(token_hash)
        with self._lock:
            if user is None:
                self._entries.pop(token_hash, None)
            else:
                if len(self._entries) > 100_000:
                    self._entries.clear()
                self._entries[token_hash] = (now + self.ttl, user)
        return user

    def forget_user(self, name: str) -> None:
        with self._lock:
            self._entries = {k: v for k, v in self._entries.items() if v[1].name != name}


@dataclass
class ServiceState:
    settings: ServiceSettings
    storage: Storage
    extractor: FeatureExtractor
    bank: FilterBank
    guard: Guard
    sync: BankSync
    batcher: MicroBatcher
    metrics: Metrics
    users: UserCache
    probes: ProbeSet  # public probe images by source (see imgprivacy.service.probe)
    probe_alpha: float
    limiters: dict[str, RateLimiter] = field(default_factory=dict)  # "register", "check"
    ready: bool = False
    background: list = field(default_factory=list)
