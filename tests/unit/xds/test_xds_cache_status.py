from __future__ import annotations

import asyncio
import json
import threading

import pytest
import xds_test_resources as R
from envoy.config.core.v3 import base_pb2

from meshctl.errors import InconsistentSnapshot
from meshctl.xds import CLUSTER, NodeInfo, ProxyStatusRegistry, Snapshot, SnapshotCache


async def test_set_snapshot_rejects_inconsistent_and_keeps_previous() -> None:
    cache = SnapshotCache()
    good = R.snapshot(["a"])
    cache.set_snapshot("n1", good)
    with pytest.raises(InconsistentSnapshot):
        cache.set_snapshot("n1", Snapshot.build([R.cluster("x")]))
    assert cache.get_snapshot("n1") is good
    assert cache.node_ids() == ["n1"]


async def test_wait_for_change_wakes_on_set_and_collapses_bursts() -> None:
    cache = SnapshotCache()
    first = R.snapshot(["a"])
    cache.set_snapshot("n1", first)
    assert await cache.wait_for_change("n1", None) is first  # already different: no wait

    waiter = asyncio.create_task(cache.wait_for_change("n1", first))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    snaps = [R.snapshot([f"c{i}"]) for i in range(5)]
    for s in snaps:
        cache.set_snapshot("n1", s)
    got = await asyncio.wait_for(waiter, 1)
    assert got is snaps[-1]


async def test_clear_wakes_waiters_with_none() -> None:
    cache = SnapshotCache()
    snap = R.snapshot(["a"])
    cache.set_snapshot("n1", snap)
    waiter = asyncio.create_task(cache.wait_for_change("n1", snap))
    await asyncio.sleep(0.01)
    cache.clear("n1")
    assert await asyncio.wait_for(waiter, 1) is None
    assert cache.get_snapshot("n1") is None


async def test_set_from_another_thread_wakes_the_loop() -> None:
    cache = SnapshotCache()
    waiter = asyncio.create_task(cache.wait_for_change("n1", None))
    await asyncio.sleep(0.01)
    snap = R.snapshot(["a"])
    t = threading.Thread(target=cache.set_snapshot, args=("n1", snap))
    t.start()
    t.join()
    assert await asyncio.wait_for(waiter, 1) is snap


def test_node_info_from_proto() -> None:
    node = base_pb2.Node(id="sidecar-1", cluster="checkout", user_agent_name="envoy")
    node.locality.region, node.locality.zone, node.locality.sub_zone = "eu-west", "eu-west-1a", "rack4"
    node.metadata.update({"listener_port": 15001, "tags": ["a"]})
    node.user_agent_build_version.version.major_number = 1
    node.user_agent_build_version.version.minor_number = 40
    info = NodeInfo.from_proto(node)
    assert (info.id, info.cluster, info.region, info.zone, info.sub_zone) == (
        "sidecar-1",
        "checkout",
        "eu-west",
        "eu-west-1a",
        "rack4",
    )
    assert info.metadata == {"listener_port": 15001, "tags": ["a"]}
    assert info.user_agent == "envoy/1.40.0"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_registry_tracks_versions_nacks_and_disconnects() -> None:
    clock = FakeClock()
    reg = ProxyStatusRegistry(retention_s=60, clock=clock)
    token = reg.open(NodeInfo(id="n1", cluster="svc"), "sotw")
    reg.record_sent("n1", CLUSTER, "v1")
    reg.record_nack("n1", CLUSTER, "v1", "bad cluster")
    reg.record_sent("n1", CLUSTER, "v2")
    reg.record_ack("n1", CLUSTER, "v2")
    st = reg.get("n1")
    assert st is not None and st.connected and st.stream == "sotw"
    t = st.types[CLUSTER]
    assert (t.version_sent, t.version_acked, t.responses_sent, t.nacks) == ("v2", "v2", 2, 1)
    assert t.last_nack is not None and t.last_nack.error == "bad cluster" and t.last_nack.version == "v1"

    body = json.loads(json.dumps(reg.to_dict()))  # must be JSON-ready as is
    assert body["connected"] == 1
    proxy = body["proxies"][0]
    assert proxy["node"]["cluster"] == "svc"
    assert proxy["types"][CLUSTER]["in_sync"] is True
    assert proxy["types"][CLUSTER]["last_nack"]["error"] == "bad cluster"

    reg.close("n1", token)
    clock.now += 30
    st = reg.get("n1")
    assert st is not None and not st.connected  # still listed: operators see who dropped
    clock.now += 31
    assert reg.get("n1") is None
    assert reg.list() == []


def test_close_of_a_replaced_stream_keeps_the_new_one_connected() -> None:
    reg = ProxyStatusRegistry()
    old = reg.open(NodeInfo(id="n1"), "sotw")
    reg.open(NodeInfo(id="n1"), "delta")
    reg.close("n1", old)
    st = reg.get("n1")
    assert st is not None and st.connected and st.stream == "delta"
    assert reg.connected_count() == 1
