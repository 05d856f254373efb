"""The FastAPI app over an in-process transport (no sockets): a ControlPlane without xDS behind it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from api_support import REPO, TOKENS, Api

from meshctl.api.app import create_app
from meshctl.api.auth import Identity, TokenTable
from meshctl.controlplane import ControlPlane
from meshctl.governance.policy import PolicySet
from meshctl.store.memory import MemoryStore
from meshctl.topology.loader import load_topology


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    plane = ControlPlane(
        MemoryStore(origin="api-unit"),
        policies=PolicySet.load(REPO / "policies"),
        topology=load_topology(REPO / "deploy" / "topology.yaml"),
        tick_s=3600,
    )
    tokens = TokenTable({})
    tokens.add(TOKENS["agent-a"], Identity("agent-a", "agent"))
    tokens.add(TOKENS["agent-b"], Identity("agent-b", "agent"))
    tokens.add(TOKENS["oncall"], Identity("oncall", "operator"))
    await plane.start(serve_xds=False)
    try:
        yield Api(plane, create_app(plane, tokens))
    finally:
        await plane.stop()


@pytest.fixture
async def agent(api: Api) -> AsyncIterator[httpx.AsyncClient]:
    async with api.client("agent-a") as c:
        yield c


@pytest.fixture
async def agent_b(api: Api) -> AsyncIterator[httpx.AsyncClient]:
    async with api.client("agent-b") as c:
        yield c


@pytest.fixture
async def operator(api: Api) -> AsyncIterator[httpx.AsyncClient]:
    async with api.client("oncall") as c:
        yield c


@pytest.fixture
async def providers(operator: httpx.AsyncClient) -> None:
    for pid, zone, cap, cost in (("ga-a", "eu-west-1a", 100, 0.1), ("ga-b", "eu-west-1b", 100, 0.2)):
        r = await operator.post(
            "/v1/providers",
            json={
                "id": pid,
                "capabilities": ["graph-analysis"],
                "zone": zone,
                "endpoints": [{"address": "127.0.0.1", "port": 8080}],
                "capacity_rps": cap,
                "latency_p99_ms": 10,
                "cost_per_1k": cost,
            },
        )
        assert r.status_code == 201, r.text
