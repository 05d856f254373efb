"""Fixtures for whole flows: a running control plane with its REST API, real upstreams, real Envoys.

`mesh` is a `_mesh.Mesh` (tests/e2e/_mesh.py): a ControlPlane (memory store, policies/,
deploy/topology.yaml) served by uvicorn on a loopback port bound before start-up, with API clients
for agent "agent-a" (`mesh.agent`), a second agent "agent-b" (`mesh.agent_b`), an operator
(`mesh.operator`) and a provider fleet (`mesh.client(FLEET)`). `await mesh.provider(...)` starts a
real upstream and registers it (with heartbeats when it has a lease); `mesh.provider_process(...)`
does the same with the upstream in a child process that `mesh.kill(...)` ends for real;
`await mesh.sidecar(...)` starts a real Envoy 1.40 and waits until it is LIVE. Real traffic goes
through `_traffic.py`. Everything is stopped at teardown (child processes by PID).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from _mesh import Mesh


@pytest.fixture
async def mesh() -> AsyncIterator[Mesh]:
    m = await Mesh.start()
    try:
        yield m
    finally:
        await m.close()
