"""A disconnected proxy's snapshot is kept for its return, then forgotten (no growth per pod name)."""

from __future__ import annotations

import asyncio

from meshctl.sync import ConfigSync
from meshctl.xds.cache import SnapshotCache
from meshctl.xds.status import NodeInfo, ProxyStatusRegistry


def _sync() -> ConfigSync:
    sync = ConfigSync(SnapshotCache(), ProxyStatusRegistry(), contracts=list, providers=dict)
    sync.retain_s = 0.05
    return sync


async def test_snapshot_of_a_departed_node_is_dropped_after_retention() -> None:
    sync = _sync()
    for i in range(20):
        sync.on_stream_open(NodeInfo(id=f"pod-{i}", cluster="svc", zone="z"))
        sync.on_stream_closed(f"pod-{i}")
    assert len(sync.cache.node_ids()) == 20  # kept for a quick return
    await asyncio.sleep(0.2)
    assert sync.cache.node_ids() == []


async def test_a_node_that_returns_in_time_keeps_its_snapshot() -> None:
    sync = _sync()
    sync.on_stream_open(NodeInfo(id="pod-a", cluster="svc", zone="z"))
    before = sync.cache.get_snapshot("pod-a")
    sync.on_stream_closed("pod-a")
    sync.on_stream_open(NodeInfo(id="pod-a", cluster="svc", zone="z"))
    await asyncio.sleep(0.2)
    assert sync.cache.get_snapshot("pod-a") is not None
    assert sync.cache.get_snapshot("pod-a").versions() == before.versions()  # type: ignore[union-attr]


async def test_the_late_close_of_a_replaced_stream_keeps_the_node_served() -> None:
    sync = _sync()
    sync.on_stream_open(NodeInfo(id="pod-a", cluster="svc", zone="z"))  # old stream
    sync.on_stream_open(NodeInfo(id="pod-a", cluster="svc", zone="z"))  # reconnected before the old one closed
    sync.on_stream_closed("pod-a")  # the old stream's close arrives late
    assert [n.node_id for n in sync.nodes_of(["svc"])] == ["pod-a"]
    await asyncio.sleep(0.2)
    assert sync.cache.get_snapshot("pod-a") is not None
