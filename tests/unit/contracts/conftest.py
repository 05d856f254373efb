"""A ControlPlane without xDS (no sockets), on a memory store, the default policies and a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from contracts_helpers import REPO, Clock

from meshctl.controlplane import ControlPlane
from meshctl.governance.policy import PolicySet
from meshctl.model import TopologyFile
from meshctl.store.memory import MemoryStore
from meshctl.topology.loader import load_topology


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def topology() -> TopologyFile:
    return load_topology(REPO / "deploy" / "topology.yaml")


@pytest.fixture
async def plane(clock: Clock, topology: TopologyFile) -> AsyncIterator[ControlPlane]:
    # tick_s is long: tests drive expiry and leases themselves, with the fake clock.
    cp = ControlPlane(
        MemoryStore(origin="unit"),
        policies=PolicySet.load(REPO / "policies"),
        topology=topology,
        clock=clock,
        tick_s=3600,
    )
    await cp.start(serve_xds=False)
    try:
        yield cp
    finally:
        await cp.stop()
