"""Builders shared by the contract unit tests: a fake clock, provider specs, requests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshctl.model import ContractRequest, Endpoint, ProviderSpec, Sla

REPO = Path(__file__).resolve().parents[3]
T0 = 1_800_000_000.0


@dataclass
class Clock:
    now: float = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def spec(
    pid: str, zone: str, *, capacity: float = 100, p99: float = 10, cost: float = 0.1, cap: str = "graph-analysis",
    ttl_s: float | None = None, labels: dict[str, Any] | None = None,
) -> ProviderSpec:  # fmt: skip
    return ProviderSpec(
        id=pid,
        capabilities=[cap],
        zone=zone,
        endpoints=[Endpoint(address="127.0.0.1", port=8080)],
        labels=labels or {"compliance": ["gdpr"]},
        capacity_rps=capacity,
        latency_p99_ms=p99,
        cost_per_1k=cost,
        ttl_s=ttl_s,
    )


def request(
    rps: float = 100, p99: float = 40, *, bid: float | None = None, duration_s: float = 600,
    cap: str = "graph-analysis", consumer: str = "fraud-detection", zone: str = "eu-west-1a", **kw: Any,
) -> ContractRequest:  # fmt: skip
    return ContractRequest(
        consumer=consumer,
        consumer_zone=zone,
        capability=cap,
        sla=Sla(p99_latency_ms=p99, rps=rps),
        max_cost_per_1k=bid,
        duration_s=duration_s,
        **kw,
    )
