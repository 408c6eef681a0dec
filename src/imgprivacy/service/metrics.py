"""Prometheus metrics of one service process (``GET /metrics``, text exposition format).

Each app has its own registry, so several apps (tests, workers) never share counters; with
several workers, scrape each or sum them in Prometheus.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.checks = Counter(
            "imgprivacy_checks", "Checks answered, by decision.", ["decision"], registry=r
        )
        self.check_latency = Histogram(
            "imgprivacy_check_latency_seconds",
            "Time from receiving a check to its decision (decode, features, queue, bank pass).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "imgprivacy_batch_size",
            "Checks scored per bank pass.",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.bank_pass = Histogram(
            "imgprivacy_bank_pass_seconds",
            "Time of one bank pass.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.uploads = Counter(
            "imgprivacy_uploads", "Model uploads, by result.", ["result"], registry=r
        )
        self.requests = Counter(
            "imgprivacy_http_requests",
            "HTTP requests, by route and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.models = Gauge("imgprivacy_models", "Models in this process's bank.", registry=r)
        self.revision = Gauge(
            "imgprivacy_bank_revision", "Storage revision this process's bank reflects.", registry=r
        )

        # Label children by label values: ``labels()`` costs a lock and a tuple build per call,
        # and every request counts itself (created on first use, so /metrics lists the same).
        self._children: dict[tuple, object] = {}

    def _child(self, metric, *values: str):
        key = (id(metric), *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def count_request(self, method: str, route: str, status: int) -> None:
        self._child(self.requests, method, route, str(status)).inc()

    def count_check(self, decision: str, seconds: float) -> None:
        """One answered check: its decision and its latency."""
        self._child(self.checks, decision).inc()
        self.check_latency.observe(seconds)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.bank_pass.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
