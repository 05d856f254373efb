"""Scenarios shared by the translation tests: a small mesh and contract factories.

A uniquely named module rather than conftest.py, so `from ... import` cannot pick up another
directory's conftest.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from meshctl.model import (
    Allocation,
    Contract,
    ContractRequest,
    ContractState,
    Endpoint,
    Provider,
    Share,
    Sla,
)


def provider(
    pid: str,
    zone: str,
    region: str,
    endpoints: list[tuple[str, int]],
    *,
    protocol: str = "http",
    capabilities: tuple[str, ...] = ("graph-analysis",),
) -> Provider:
    return Provider(
        id=pid,
        capabilities=list(capabilities),
        zone=zone,
        region=region,
        endpoints=[Endpoint(address=a, port=p, protocol=protocol) for a, p in endpoints],  # type: ignore[arg-type]
        capacity_rps=5000,
        latency_p99_ms=20,
        cost_per_1k=0.1,
    )


def share(pid: str, zone: str, rps: float, weight: int, p99: float, *, priority: int = 0) -> Share:
    return Share(
        provider_id=pid,
        zone=zone,
        rps=rps,
        weight=weight,
        expected_p99_ms=p99,
        cost_per_1k=0.1,
        priority=priority,
    )


def contract(
    cid: str,
    *,
    capability: str = "graph-analysis",
    consumer: str = "frontend",
    p99: float = 80,
    rps: float = 1500,
    shares: list[Share],
    failover: list[Share] | None = None,
    alloc_rps: float | None = None,
    state: ContractState = ContractState.ACTIVE,
    created_at: float = 1_700_000_000.0,
    allocation: bool = True,
) -> Contract:
    alloc = (
        Allocation(
            shares=shares,
            failover=failover or [],
            rps=alloc_rps if alloc_rps is not None else rps,
            expected_p99_ms=max((s.expected_p99_ms for s in shares), default=0.0),
            cost_per_1k=0.1,
        )
        if allocation
        else None
    )
    return Contract(
        id=cid,
        owner="agent-1",
        request=ContractRequest(
            consumer=consumer, capability=capability, sla=Sla(p99_latency_ms=p99, rps=rps)
        ),
        state=state,
        allocation=alloc,
        created_at=created_at,
        updated_at=created_at,
        expires_at=created_at + 3600,
    )


def mesh_providers() -> dict[str, Provider]:
    ps = [
        provider("p-a", "eu-west-1a", "eu-west", [("127.0.0.11", 8001)]),
        provider("p-b", "eu-west-1b", "eu-west", [("127.0.0.12", 8002), ("127.0.0.13", 8002)]),
        provider("p-c", "eu-central-1a", "eu-central", [("127.0.0.14", 8003)]),
        provider("p-fo", "us-east-1a", "us-east", [("127.0.0.15", 8004)]),
        provider("p-gpu1", "eu-west-1a", "eu-west", [("127.0.0.21", 9001)], capabilities=("gpu-inference",)),
        provider("p-gpu2", "eu-west-1b", "eu-west", [("127.0.0.22", 9002)], capabilities=("gpu-inference",)),
        provider(
            "p-grpc",
            "eu-west-1a",
            "eu-west",
            [("127.0.0.31", 50051)],
            protocol="grpc",
            capabilities=("grpc-echo",),
        ),
        provider(
            "p-grpc-fo",
            "eu-west-1b",
            "eu-west",
            [("127.0.0.32", 50051)],
            protocol="grpc",
            capabilities=("grpc-echo",),
        ),
    ]
    return {p.id: p for p in ps}


def weighted_contract() -> Contract:
    """Three weighted primaries across two regions plus one failover provider."""
    return contract(
        "ct-graph",
        shares=[
            share("p-a", "eu-west-1a", 750, 50, 40),
            share("p-b", "eu-west-1b", 450, 30, 45),
            share("p-c", "eu-central-1a", 300, 20, 70),
        ],
        failover=[share("p-fo", "us-east-1a", 0, 0, 95, priority=1)],
    )


# --- real Envoy ---------------------------------------------------------------------------------

DEFAULT_ENVOY = Path(__file__).resolve().parents[3] / ".tools/envoy/envoy/_bin/envoy"


def envoy_binary() -> str:
    """MESHCTL_ENVOY, else the repository's Envoy 1.40; a missing binary fails the test, never skips."""
    path = os.environ.get("MESHCTL_ENVOY") or str(DEFAULT_ENVOY)
    if not Path(path).is_file():
        pytest.fail(f"Envoy binary not found at {path}: set MESHCTL_ENVOY to an Envoy 1.40 binary")
    return path
