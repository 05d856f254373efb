"""Incremental (delta) ADS against the real server over loopback gRPC."""

from __future__ import annotations

from typing import Any

import xds_test_harness as H
import xds_test_resources as R

from meshctl.xds import CLUSTER, ENDPOINT, LISTENER, ROUTE, Snapshot, resource_hash


def delta_names(resp: Any) -> tuple[list[str], list[str]]:
    return sorted(r.name for r in resp.resources), sorted(resp.removed_resources)


async def test_wildcard_then_only_changes(xds: H.Harness) -> None:
    s1 = R.snapshot(["a", "b"])
    xds.cache.set_snapshot("d1", s1)
    c = xds.client("d1", delta=True)
    await c.delta_request(CLUSTER)  # no names: legacy wildcard
    first = await c.recv()
    assert delta_names(first) == (["a", "b"], [])
    assert first.system_version_info == s1.version(CLUSTER)
    assert {r.name: r.version for r in first.resources} == dict(s1.resource_versions(CLUSTER))
    await c.ack(first)
    await xds.wait_for(lambda: xds.recorder.acks)
    assert xds.recorder.acks == [("d1", CLUSTER, s1.version(CLUSTER))]
    assert xds.status.get("d1").stream == "delta"  # type: ignore[union-attr]

    # Only b changes: only b is sent.
    s2 = Snapshot.build([R.cluster("a"), R.cla("a"), R.cluster("b", connect_timeout_ms=900), R.cla("b")])
    xds.cache.set_snapshot("d1", s2)
    second = await c.recv()
    assert delta_names(second) == (["b"], [])
    await c.ack(second)

    # b disappears: it is named in removed_resources.
    xds.cache.set_snapshot("d1", R.snapshot(["a"]))
    third = await c.recv()
    assert delta_names(third) == ([], ["b"])
    await c.ack(third)
    await c.expect_none()


async def test_subscribe_unsubscribe_and_missing_names(xds: H.Harness) -> None:
    xds.cache.set_snapshot("d1", R.snapshot(["a", "b"]))
    c = xds.client("d1", delta=True)
    await c.delta_request(ENDPOINT, subscribe=["a"])
    r1 = await c.recv()
    assert delta_names(r1) == (["a"], [])
    await c.ack(r1)
    await c.delta_request(ENDPOINT, subscribe=["b", "nope"])
    r2 = await c.recv()
    # Only the new name is sent; a name that does not exist is reported as removed at once.
    assert delta_names(r2) == (["b"], ["nope"])
    await c.ack(r2)
    await c.delta_request(ENDPOINT, unsubscribe=["a"])
    await c.expect_none()  # unsubscribing needs no answer

    # a changes, but nobody wants it any more; "nope" springs into existence and is sent.
    xds.cache.set_snapshot("d1", R.snapshot(["b", "nope"], endpoint_port=9090))
    r3 = await c.recv()
    assert delta_names(r3) == (["b", "nope"], [])
    await c.ack(r3)
    await c.expect_none()


async def test_initial_resource_versions_are_not_resent(xds: H.Harness) -> None:
    snap = R.snapshot(["a", "b"])
    xds.cache.set_snapshot("d1", snap)
    c = xds.client("d1", delta=True)
    held = {"a": snap.resource_versions(CLUSTER)["a"], "b": "outdated", "gone": "whatever"}
    await c.delta_request(CLUSTER, initial=held)
    resp = await c.recv()
    assert delta_names(resp) == (["b"], ["gone"])
    await c.ack(resp)
    await c.expect_none()


async def test_reconnect_with_everything_current_gets_an_empty_response(xds: H.Harness) -> None:
    snap = R.snapshot(["a", "b"])
    xds.cache.set_snapshot("d1", snap)
    c = xds.client("d1", delta=True)
    await c.delta_request(CLUSTER, initial=dict(snap.resource_versions(CLUSTER)))
    resp = await c.recv()
    # Nothing is resent; the empty response ends the client's initial fetch and records the version.
    assert delta_names(resp) == ([], [])
    assert resp.system_version_info == snap.version(CLUSTER)
    await c.ack(resp)
    await xds.wait_for(lambda: xds.recorder.acks == [("d1", CLUSTER, snap.version(CLUSTER))])
    await c.expect_none()


async def test_empty_type_still_gets_a_first_response(xds: H.Harness) -> None:
    xds.cache.set_snapshot("d1", Snapshot.build([R.static_cluster("s")]))
    c = xds.client("d1", delta=True)
    await c.delta_request(LISTENER)
    resp = await c.recv()
    assert (resp.type_url, delta_names(resp)) == (LISTENER, ([], []))
    await c.ack(resp)
    await c.expect_none()


async def test_explicit_subscribe_resends_what_the_client_seems_to_have(xds: H.Harness) -> None:
    xds.cache.set_snapshot("d1", R.snapshot(["a", "b"]))
    c = xds.client("d1", delta=True)
    await c.delta_request(CLUSTER, subscribe=["*"])
    await c.ack(await c.recv())
    # Per the spec the client may have forgotten "a" even though it is covered by "*".
    await c.delta_request(CLUSTER, subscribe=["a"])
    again = await c.recv()
    assert delta_names(again) == (["a"], [])
    await c.ack(again)
    # Unsubscribing one name under a wildcard must say whether the wildcard still covers it.
    await c.delta_request(CLUSTER, unsubscribe=["a"])
    covered = await c.recv()
    assert delta_names(covered) == (["a"], [])
    await c.ack(covered)
    await c.expect_none()


async def test_nack_is_rolled_back_and_not_resent(xds: H.Harness) -> None:
    xds.cache.set_snapshot("d1", R.snapshot(["a"]))
    c = xds.client("d1", delta=True)
    await c.delta_request(CLUSTER)
    await c.ack(await c.recv())

    bad = Snapshot.build([R.cluster("a"), R.cla("a"), R.cluster("b", connect_timeout_ms=0), R.cla("b")])
    xds.cache.set_snapshot("d1", bad)
    rejected = await c.recv()
    assert delta_names(rejected) == (["b"], [])
    await c.nack(rejected, "cluster b: invalid connect_timeout")
    await xds.wait_for(lambda: xds.recorder.nacks)
    assert xds.recorder.nacks == [("d1", CLUSTER, bad.version(CLUSTER), "cluster b: invalid connect_timeout")]
    t = xds.status.get("d1").types[CLUSTER]  # type: ignore[union-attr]
    assert t.last_nack is not None and t.last_nack.version == bad.version(CLUSTER)
    await c.expect_none()

    # A newer snapshot goes out, and since the client never applied b, b is sent again with it.
    newer = Snapshot.build(
        [*bad.resources(CLUSTER).values(), *bad.resources(ENDPOINT).values(), R.cluster("c"), R.cla("c")]
    )
    xds.cache.set_snapshot("d1", newer)
    resp = await c.recv()
    assert delta_names(resp) == (["b", "c"], [])
    assert resp.system_version_info == newer.version(CLUSTER)


async def test_delta_make_before_break(xds: H.Harness) -> None:
    xds.cache.set_snapshot("d1", R.snapshot({"a": 1, "b": 1}))
    c = xds.client("d1", delta=True)
    await c.delta_request(CLUSTER)
    await c.delta_request(ENDPOINT, subscribe=["a", "b"])
    await c.delta_request(LISTENER)
    await c.delta_request(ROUTE, subscribe=["outbound"])
    for _ in range(4):
        await c.ack(await c.recv())
    await c.expect_none(0.1)

    s2 = R.snapshot(["a"])  # b goes away and the route stops using it
    xds.cache.set_snapshot("d1", s2)
    rds = await c.recv()
    assert (rds.type_url, delta_names(rds)) == (ROUTE, (["outbound"], []))
    await c.expect_none(0.2)  # b stays until the route change is ACKed
    await c.ack(rds)
    cds = await c.recv()
    assert (cds.type_url, delta_names(cds)) == (CLUSTER, ([], ["b"]))
    assert cds.system_version_info == s2.version(CLUSTER)
    await c.ack(cds)
    eds = await c.recv()
    assert (eds.type_url, delta_names(eds)) == (ENDPOINT, ([], ["b"]))
    await c.ack(eds)
    await c.expect_none()


async def test_delta_resource_versions_match_resource_hash(xds: H.Harness) -> None:
    xds.cache.set_snapshot("d1", R.snapshot(["a"]))
    c = xds.client("d1", delta=True)
    await c.delta_request(ROUTE, subscribe=["outbound"])
    resp = await c.recv()
    assert [r.version for r in resp.resources] == [resource_hash(R.route("outbound", ["a"]))]


async def test_big_type_sends_only_what_changed(xds: H.Harness) -> None:
    # Big enough for the bucketed diff; the answer must be the same as a full comparison.
    names = [f"c{i:04d}" for i in range(1500)]
    base = [R.static_cluster(n) for n in names]
    xds.cache.set_snapshot("big", Snapshot.build(base))
    c = xds.client("big", delta=True)
    await c.delta_request(CLUSTER)
    first = await c.recv()
    assert len(first.resources) == 1500
    await c.ack(first)

    changed = [R.static_cluster(n, port=10 if n == "c0007" else 9) for n in names if n != "c1234"]
    changed.append(R.static_cluster("new-one"))
    xds.cache.set_snapshot("big", Snapshot.build(changed))
    resp = await c.recv()
    assert delta_names(resp) == (["c0007", "new-one"], ["c1234"])
    await c.ack(resp)

    # A NACK rolls back; the next push diffs against what the client really holds.
    again = [*changed, R.static_cluster("another")]
    xds.cache.set_snapshot("big", Snapshot.build(again))
    rejected = await c.recv()
    assert delta_names(rejected) == (["another"], [])
    await c.nack(rejected, "no")
    final = [*again, R.static_cluster("third")]
    xds.cache.set_snapshot("big", Snapshot.build(final))
    resp = await c.recv()
    assert delta_names(resp) == (["another", "third"], [])
