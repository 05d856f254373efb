"""Fixtures for whole flows: a running control plane with its REST API, real upstreams, real Envoys.

`mesh` is a `tests/e2e/_mesh.Mesh`: ControlPlane (memory store, policies/, deploy/topology.yaml)
served by uvicorn on a loopback port bound before start-up, with API clients for agent "agent-a"
(`mesh.agent`), a second agent "agent-b" (`mesh.agent_b`), an operator (`mesh.operator`) and a
provider fleet; `await mesh.provider(...)` starts a real upstream and registers it (with heartbeats
when it has a lease); `await mesh.sidecar(...)` starts a real Envoy 1.40 and waits until it is LIVE.
Everything is stopped at teardown (Envoys by PID).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _mesh import AGENT, AGENT_B, CAPABILITY, OPERATOR, TOKENS, Mesh

__all__ = ["AGENT", "AGENT_B", "CAPABILITY", "OPERATOR", "TOKENS", "Mesh"]


@pytest.fixture
async def mesh() -> AsyncIterator[Mesh]:
    m = await Mesh.start()
    try:
        yield m
    finally:
        await m.close()


@pytest.fixture
def consumer_body() -> dict[str, object]:
    """A proposal for the fraud-detection consumer in eu-west-1a (no proxy needed to negotiate)."""
    return {
        "consumer": "fraud-detection",
        "consumer_zone": "eu-west-1a",
        "capability": CAPABILITY,
        "sla": {"p99_latency_ms": 40, "rps": 100},
        "max_cost_per_1k": 1.0,
        "duration_s": 600,
    }
