"""Small builders for topology tests: a graph from a compact description, requests, providers."""

from __future__ import annotations

from typing import Any

from meshctl.model import Constraints, ContractRequest, Endpoint, Link, Provider, Sla, Zone
from meshctl.topology import CapabilityGraph


def provider(
    pid: str,
    zone: str,
    *,
    cap: str = "infer",
    rps: float = 100,
    p99: float = 10,
    price: float = 1.0,
    labels: dict[str, Any] | None = None,
    expires_at: float | None = None,
    capabilities: list[str] | None = None,
) -> Provider:
    return Provider(
        id=pid,
        capabilities=capabilities or [cap],
        zone=zone,
        endpoints=[Endpoint(address="127.0.0.1", port=8000)],
        labels=labels or {},
        capacity_rps=rps,
        latency_p99_ms=p99,
        cost_per_1k=price,
        expires_at=expires_at,
    )


def request(
    rps: float = 100,
    p99: float = 50,
    *,
    cap: str = "infer",
    availability: float | None = None,
    bid: float | None = None,
    **constraints: Any,
) -> ContractRequest:
    return ContractRequest(
        consumer="checkout",
        capability=cap,
        sla=Sla(p99_latency_ms=p99, rps=rps, availability=availability),
        constraints=Constraints(**constraints),
        max_cost_per_1k=bid,
    )


def graph(
    zones: dict[str, str], links: dict[tuple[str, str], float], *providers: Provider, intra: float = 0.5
) -> CapabilityGraph:
    """zones: name -> region; links: (a, b) -> ms."""
    g = CapabilityGraph(intra_zone_latency_ms=intra)
    for name, region in zones.items():
        g.set_zone(Zone(name=name, region=region))
    for (a, b), ms in links.items():
        g.set_link(Link(a=a, b=b, latency_ms=ms))
    for p in providers:
        g.set_provider(p)
    return g


# Three zones in two regions: a1/a2 close together (eu), b1 far away (us).
ZONES = {"a1": "eu", "a2": "eu", "b1": "us"}
LINKS = {("a1", "a2"): 2.0, ("a2", "b1"): 80.0}
