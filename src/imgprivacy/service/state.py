"""What one service process holds: settings, storage, the bank, the Guard, the batcher."""

from __future__ import annotations

from dataclasses import dataclass, field

from imgprivacy.docl import FilterBank, Guard
from imgprivacy.features import FeatureExtractor
from imgprivacy.service.auth import UserCache
from imgprivacy.service.metrics import Metrics
from imgprivacy.service.probe import ProbeSet
from imgprivacy.service.ratelimit import RateLimiter
from imgprivacy.service.scorer import MicroBatcher
from imgprivacy.service.settings import ServiceSettings
from imgprivacy.service.storage import Storage
from imgprivacy.service.sync import BankSync


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
