"""State-of-the-world ADS against the real server over loopback gRPC."""

from __future__ import annotations

import asyncio
from typing import Any

import xds_test_harness as H
import xds_test_resources as R

from meshctl.xds import CLUSTER, ENDPOINT, LISTENER, ROUTE, NodeInfo, Snapshot

# What an Envoy-like client subscribes to for R.mesh(...) configs.
ALL = {CLUSTER: [], LISTENER: []}


async def handshake(c: H.AdsClient, eds: list[str], rds: list[str] | None = None) -> dict[str, Any]:
    """Subscribe to all four types and ACK until quiet; returns the last response per type."""
    subs = {CLUSTER: [], ENDPOINT: eds, LISTENER: [], ROUTE: rds or ["outbound"]}
    for t in (CLUSTER, ENDPOINT, LISTENER, ROUTE):
        await c.request(t, subs[t])
    last: dict[str, Any] = {}
    for _ in range(4):
        resp = await c.recv()
        last[resp.type_url] = resp
        await c.ack(resp, subs[resp.type_url])
    await c.expect_none(0.1)
    return last


async def test_initial_wildcard_push_goes_cds_eds_lds_rds(xds: H.Harness) -> None:
    snap = R.snapshot({"a": 1, "b": 1})
    c = xds.client("n1")
    # Ask for everything in the "wrong" order before the node's config exists...
    await c.request(ROUTE, ["outbound"])
    await c.request(LISTENER)
    await c.request(ENDPOINT, ["a", "b"])
    await c.request(CLUSTER)
    await asyncio.sleep(0.1)
    # ...then one push must still go clusters first.
    xds.cache.set_snapshot("n1", snap)
    cds = await c.recv()
    # Endpoints follow at once: Envoy only ACKs clusters once they have warmed, which needs endpoints.
    eds = await c.recv()
    # Listeners and routes wait until clusters and endpoints are ACKed.
    await c.expect_none(0.2)
    await c.ack(eds, ["a", "b"])
    await c.expect_none(0.2)
    await c.ack(cds)
    lds = await c.recv()
    rds = await c.recv()
    seen = [(r.type_url, H.names_of(r), r.version_info) for r in (cds, eds, lds, rds)]
    assert seen == [
        (CLUSTER, ["a", "b"], snap.version(CLUSTER)),
        (ENDPOINT, ["a", "b"], snap.version(ENDPOINT)),
        (LISTENER, ["outbound"], snap.version(LISTENER)),
        (ROUTE, ["outbound"], snap.version(ROUTE)),
    ]
    await c.ack(lds)
    await c.ack(rds, ["outbound"])
    await c.expect_none()
    assert len({r.nonce for r in c.received}) == 4


async def test_ack_updates_status_and_calls_back(xds: H.Harness) -> None:
    snap = R.snapshot(["a"])
    xds.cache.set_snapshot("n1", snap)
    c = xds.client("n1")
    await c.request(CLUSTER)
    resp = await c.recv()
    st = xds.status.get("n1")
    assert st is not None and st.connected
    assert st.types[CLUSTER].version_sent == snap.version(CLUSTER)
    assert st.types[CLUSTER].version_acked is None
    await c.ack(resp)
    await xds.wait_for(lambda: xds.recorder.acks)
    assert xds.recorder.acks == [("n1", CLUSTER, snap.version(CLUSTER))]
    assert st.types[CLUSTER].version_acked == snap.version(CLUSTER)
    assert st.types[CLUSTER].responses_sent == 1
    assert [n.id for n in xds.recorder.opened] == ["n1"]
    assert xds.recorder.opened[0].cluster == "svc" and xds.recorder.opened[0].zone == "z1"


async def test_nack_is_recorded_not_resent_and_newer_snapshot_sent(xds: H.Harness) -> None:
    s1 = R.snapshot(["a"])
    xds.cache.set_snapshot("n1", s1)
    c = xds.client("n1")
    await c.request(CLUSTER)
    first = await c.recv()
    await c.nack(first, "cluster a: connect_timeout too small")
    await xds.wait_for(lambda: xds.recorder.nacks)
    assert xds.recorder.nacks == [
        ("n1", CLUSTER, s1.version(CLUSTER), "cluster a: connect_timeout too small")
    ]
    t = xds.status.get("n1").types[CLUSTER]  # type: ignore[union-attr]
    assert t.last_nack is not None and t.last_nack.error == "cluster a: connect_timeout too small"
    assert t.last_nack.version == s1.version(CLUSTER) and t.version_acked is None

    # A new snapshot that leaves clusters unchanged must not resend the rejected version.
    s2 = R.snapshot(["a"], port=15002)
    assert s2.version(CLUSTER) == s1.version(CLUSTER)
    xds.cache.set_snapshot("n1", s2)
    await c.expect_none()

    s3 = R.snapshot(["a", "b"])
    xds.cache.set_snapshot("n1", s3)
    second = await c.recv()
    assert second.version_info == s3.version(CLUSTER)
    assert H.names_of(second) == ["a", "b"]
    await c.ack(second)
    await xds.wait_for(lambda: t.version_acked == s3.version(CLUSTER))
    assert t.responses_sent == 2


async def test_named_subscriptions_like_a_grpc_client(xds: H.Harness) -> None:
    resources = [
        R.api_listener("svc.example:443", "rc"),
        R.api_listener("other:443", "rc-other"),
        R.route("rc", {"a": 1, "b": 1}),
        R.route("rc-other", ["z"]),
        *(m for n in ("a", "b", "z") for m in (R.cluster(n), R.cla(n))),
    ]
    xds.cache.set_snapshot("g1", Snapshot.build(resources))
    c = xds.client("g1")
    flow = [
        (LISTENER, ["svc.example:443"]),
        (ROUTE, ["rc"]),
        (CLUSTER, ["a", "b"]),
        (ENDPOINT, ["a", "b", "c"]),  # "c" does not exist yet
    ]
    for t, names in flow:
        await c.request(t, names)
        resp = await c.recv()
        assert (resp.type_url, H.names_of(resp)) == (t, sorted(set(names) - {"c"}))
        await c.ack(resp, names)
    await c.expect_none()

    # The server remembers the subscription: when "c" appears, the client gets it.
    s2 = Snapshot.build([*resources, R.cluster("c"), R.cla("c")])
    xds.cache.set_snapshot("g1", s2)
    # Clusters changed version (c was added), but the client only named a and b.
    cds = await c.recv()
    assert (cds.type_url, H.names_of(cds), cds.version_info) == (CLUSTER, ["a", "b"], s2.version(CLUSTER))
    await c.ack(cds, ["a", "b"])
    eds = await c.recv()
    assert (eds.type_url, H.names_of(eds)) == (ENDPOINT, ["a", "b", "c"])
    await c.ack(eds, ["a", "b", "c"])
    await c.expect_none()


async def test_stale_nonce_is_ignored(xds: H.Harness) -> None:
    xds.cache.set_snapshot("n1", R.snapshot(["a"]))
    c = xds.client("n1")
    await c.request(CLUSTER)
    first = await c.recv()
    await c.ack(first)
    xds.cache.set_snapshot("n1", R.snapshot(["a", "b"]))
    second = await c.recv()
    # An answer to the superseded response is neither an ACK nor a NACK of the new one.
    await c.nack(first, "late complaint")
    await c.expect_none(0.2)
    assert xds.recorder.nacks == []
    await c.ack(second)
    await xds.wait_for(lambda: len(xds.recorder.acks) == 2)
    assert xds.recorder.acks[-1][2] == second.version_info


async def test_make_before_break_cluster_removal(xds: H.Harness) -> None:
    s1 = R.snapshot({"a": 1, "b": 1})
    xds.cache.set_snapshot("n1", s1)
    c = xds.client("n1")
    await handshake(c, ["a", "b"])

    # b leaves, c arrives; the route moves from a+b to a+c.
    s2 = R.snapshot({"a": 1, "c": 1})
    xds.cache.set_snapshot("n1", s2)

    cds = await c.recv()
    assert (cds.type_url, H.names_of(cds)) == (CLUSTER, ["a", "b", "c"])  # b kept: the live route uses it
    eds = await c.recv()
    # The client has not asked for c's endpoints yet; b's stay.
    assert (eds.type_url, H.names_of(eds)) == (ENDPOINT, ["a", "b"])
    # Like Envoy: ask for the new cluster's endpoints; ACK clusters once c has warmed.
    await c.ack(eds, ["a", "b", "c"])
    eds = await c.recv()
    assert (eds.type_url, H.names_of(eds)) == (ENDPOINT, ["a", "b", "c"])
    await c.expect_none(0.1)  # routes wait for the cluster ACK
    await c.ack(eds, ["a", "b", "c"])
    await c.ack(cds)
    rds = await c.recv()
    assert rds.type_url == ROUTE and rds.version_info == s2.version(ROUTE)
    # Nothing removes b until the new routes are ACKed.
    await c.expect_none(0.2)
    await c.ack(rds, ["outbound"])
    final_cds = await c.recv()
    assert (final_cds.type_url, H.names_of(final_cds)) == (CLUSTER, ["a", "c"])
    assert final_cds.version_info == s2.version(CLUSTER)
    final_eds = await c.recv()
    assert (final_eds.type_url, H.names_of(final_eds)) == (ENDPOINT, ["a", "c"])
    assert final_eds.version_info == s2.version(ENDPOINT)
    await c.ack(final_cds)
    await c.ack(final_eds, ["a", "c"])
    await c.expect_none()


async def test_rejected_routes_keep_the_old_cluster(xds: H.Harness) -> None:
    xds.cache.set_snapshot("n1", R.snapshot({"a": 1, "b": 1}))
    c = xds.client("n1")
    await handshake(c, ["a", "b"])
    xds.cache.set_snapshot("n1", R.snapshot(["a"]))
    rds = await c.recv()
    assert rds.type_url == ROUTE  # clusters unchanged until the routes stop using b
    await c.nack(rds, "route rejected", names=["outbound"])
    # The proxy still routes to b, so b must stay.
    await c.expect_none(0.3)


async def test_pushes_coalesce_to_the_newest_snapshot(xds: H.Harness) -> None:
    xds.cache.set_snapshot("n1", R.snapshot(["c0"]))
    c = xds.client("n1")
    await c.request(CLUSTER)
    first = await c.recv()
    snaps = [R.snapshot([f"c{i}", "x"]) for i in range(1, 51)]
    for s in snaps:  # all while the first response is unanswered
        xds.cache.set_snapshot("n1", s)
    await c.ack(first)
    newest = await c.recv()
    assert newest.version_info == snaps[-1].version(CLUSTER)
    await c.ack(newest)
    await c.expect_none()
    assert len(c.received) == 2


async def test_coalescing_with_a_prompt_client(xds: H.Harness) -> None:
    xds.cache.set_snapshot("n1", R.snapshot(["c0"]))
    c = xds.client("n1")
    await c.request(CLUSTER)

    async def auto_ack() -> None:
        while True:
            await c.ack(await c.recv(10))

    acker = asyncio.create_task(auto_ack())
    try:
        await xds.wait_for(lambda: len(c.received) == 1)
        snaps = [R.snapshot([f"c{i}"]) for i in range(1, 51)]
        for s in snaps:
            xds.cache.set_snapshot("n1", s)
            await asyncio.sleep(0)
        newest = snaps[-1].version(CLUSTER)
        await xds.wait_for(lambda: c.received[-1].version_info == newest)
        await asyncio.sleep(0.2)
        assert c.received[-1].version_info == newest
        assert len(c.received) - 1 < 10, f"{len(c.received) - 1} responses for 50 snapshots"
    finally:
        acker.cancel()


async def test_reconnect_with_current_version_gets_no_resend(xds: H.Harness) -> None:
    snap = R.snapshot(["a"])
    xds.cache.set_snapshot("n1", snap)
    c1 = xds.client("n1")
    await c1.request(CLUSTER)
    await c1.ack(await c1.recv())
    await c1.close()
    await xds.wait_for(lambda: not xds.status.get("n1").connected)  # type: ignore[union-attr]
    assert xds.recorder.closed == ["n1"]

    c2 = xds.client("n1")
    await c2.request(CLUSTER, version=snap.version(CLUSTER))
    await c2.expect_none()
    st = xds.status.get("n1")
    assert st is not None and st.connected and st.types[CLUSTER].version_acked == snap.version(CLUSTER)
    # ...but it still gets what changes afterwards.
    xds.cache.set_snapshot("n1", R.snapshot(["a", "b"]))
    assert H.names_of(await c2.recv()) == ["a", "b"]

    c3 = xds.client("n3")
    xds.cache.set_snapshot("n3", snap)
    await c3.request(CLUSTER, version="some-old-version")
    assert H.names_of(await c3.recv()) == ["a"]


async def test_stream_open_callback_builds_the_baseline() -> None:
    class Baseline:
        def __init__(self) -> None:
            self.nodes: list[NodeInfo] = []

        def on_stream_open(self, node: NodeInfo) -> None:
            self.nodes.append(node)
            harness.cache.set_snapshot(node.id, R.snapshot([f"{node.cluster}-backend"]))

    baseline = Baseline()
    async with H.running_server(baseline) as harness:
        c = harness.client("fresh")
        await c.request(CLUSTER)
        assert H.names_of(await c.recv()) == ["svc-backend"]
        assert [n.id for n in baseline.nodes] == ["fresh"]


async def test_no_snapshot_yet_means_wait_then_send() -> None:
    async with H.running_server(snapshot_wait_s=0.1) as harness:
        c = harness.client("late")
        await c.request(CLUSTER)
        await c.expect_none(0.4)  # past the bounded wait: still nothing, still connected
        harness.cache.set_snapshot("late", R.snapshot(["a"]))
        assert H.names_of(await c.recv()) == ["a"]
