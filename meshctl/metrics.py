"""Prometheus metrics (served at /metrics). One registry per control plane, so tests can run many."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connected_proxies = Gauge(
            "meshctl_connected_proxies", "Proxies with an open xDS stream", registry=r
        )
        self.push_latency = Histogram(
            "meshctl_push_ack_seconds",
            "Snapshot set until the proxy ACKed it",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.nacks = Counter("meshctl_nacks_total", "Configuration rejected by proxies", ["type"], registry=r)
        self.contracts = Gauge("meshctl_contracts", "Contracts by state", ["state"], registry=r)
        self.admission_latency = Histogram(
            "meshctl_admission_seconds",
            "Proposal received until answered",
            ["outcome"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.resolves = Counter(
            "meshctl_resolves_total", "Re-solves that changed a contract", ["kind"], registry=r
        )
        self._refreshers: list[Callable[[], None]] = []

    def admission(self, outcome: str, seconds: float) -> None:
        self.admission_latency.labels(outcome=outcome).observe(seconds)

    def resolved(self, kind: str) -> None:
        self.resolves.labels(kind=kind).inc()

    def nack(self, type_url: str) -> None:
        self.nacks.labels(type=type_url.rsplit(".", 1)[-1]).inc()

    def on_refresh(self, fn: Callable[[], None]) -> None:
        """Gauges computed from state are refreshed at scrape time, not on every change."""
        self._refreshers.append(fn)

    def render(self) -> bytes:
        for fn in self._refreshers:
            fn()
        return generate_latest(self.registry)
