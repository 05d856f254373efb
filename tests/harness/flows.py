"""Assertions and end-to-end flows shared by the SotW and delta Envoy tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from meshctl.xds import ProxyStatusRegistry, Snapshot
from meshctl.xds import resources as r

from .envoy import EnvoyProcess
from .net import HttpResponse, ahttp_request, wait_for
from .resources import http_resources
from .upstream import UpstreamServer
from .xds import RunningXds


def acked(
    status: ProxyStatusRegistry, node_id: str, snapshot: Snapshot, types: Sequence[str] | None = None
) -> bool:
    """True when the proxy ACKed, for every type in `snapshot` (or `types`), exactly that
    snapshot's version."""
    proxy = status.get(node_id)
    if proxy is None or not proxy.connected:
        return False
    for type_url in types or snapshot.type_urls():
        s = proxy.types.get(type_url)
        if s is None or s.version_acked != snapshot.version(type_url):
            return False
    return True


def describe_status(status: ProxyStatusRegistry, node_id: str) -> str:
    proxy = status.get(node_id)
    return f"status of {node_id}: {None if proxy is None else proxy.to_dict()}"


async def wait_acked(
    status: ProxyStatusRegistry, node_id: str, snapshot: Snapshot, timeout: float = 15.0,
    envoy: EnvoyProcess | None = None, types: Sequence[str] | None = None,
) -> None:  # fmt: skip
    def details() -> str:
        return describe_status(status, node_id) + ("\n" + envoy.logs() if envoy else "")

    await wait_for(
        lambda: acked(status, node_id, snapshot, types),
        timeout,
        f"{node_id} to ACK {snapshot}",
        0.01,
        details,
    )


async def wait_routed_to(
    envoy: EnvoyProcess, upstream: str, timeout: float = 15.0, **kw: Any
) -> HttpResponse:
    """Poll through Envoy's listener until three answers in a row come from `upstream`."""
    streak: list[str] = []

    async def check() -> HttpResponse | None:
        resp = await ahttp_request(envoy.listener_port, "/", **kw)
        streak.append(resp.headers.get("x-upstream", f"status={resp.status}"))
        del streak[:-3]
        return resp if streak == [upstream] * 3 else None

    return await envoy.wait_for(check, timeout, f"traffic to reach {upstream} (last: {streak})")


async def routing_flow(
    xds: RunningXds,
    make_envoy: Callable[..., EnvoyProcess],
    make_upstream: Callable[..., UpstreamServer],
    ads: str,
) -> None:
    """Envoy ACKs listener/route/EDS cluster/endpoints, real HTTP reaches the upstream, and each
    new snapshot (route change, endpoint move, cluster removal) moves traffic."""
    a, b, c = make_upstream("a"), make_upstream("b"), make_upstream("c")
    node = f"{ads}-node"
    envoy = make_envoy(node, xds.port, ads=ads)
    port = envoy.listener_port

    # Set after Envoy connected: the stream must be woken by the change, not find it at start.
    s1 = Snapshot.build(http_resources(port, {"svc-a": [a.port], "svc-b": [b.port]}, route_to="svc-a"))
    xds.cache.set_snapshot(node, s1)
    await envoy.ready()
    await wait_acked(xds.status, node, s1, envoy=envoy)
    first = await wait_routed_to(envoy, "a")
    assert first.status == 200 and first.text == "a"
    assert set(envoy.active_clusters()) >= {"svc-a", "svc-b"}

    # Route change only: traffic moves, and the clusters Envoy holds are not re-sent.
    proxy = xds.status.get(node)
    assert proxy is not None
    cds_sent = proxy.types[r.CLUSTER].responses_sent
    s2 = Snapshot.build(http_resources(port, {"svc-a": [a.port], "svc-b": [b.port]}, route_to="svc-b"))
    xds.cache.set_snapshot(node, s2)
    await wait_acked(xds.status, node, s2, envoy=envoy)
    await wait_routed_to(envoy, "b")
    assert proxy.types[r.CLUSTER].responses_sent == cds_sent, describe_status(xds.status, node)

    # Endpoint move: svc-b now lives on upstream c; same cluster, new ClusterLoadAssignment.
    s3 = Snapshot.build(http_resources(port, {"svc-a": [a.port], "svc-b": [c.port]}, route_to="svc-b"))
    xds.cache.set_snapshot(node, s3)
    await wait_acked(xds.status, node, s3, envoy=envoy)
    await wait_routed_to(envoy, "c")

    # Cluster removal: svc-a is no longer in the snapshot, so Envoy drops it.
    # (EDS is left out of this wait: Envoy unsubscribes from svc-a's endpoints itself; whether the
    # status then shows the new EDS version is checked by test_status_in_sync_after_cluster_removal.)
    s4 = Snapshot.build(http_resources(port, {"svc-b": [c.port]}))
    xds.cache.set_snapshot(node, s4)
    await wait_acked(xds.status, node, s4, envoy=envoy, types=(r.CLUSTER, r.LISTENER, r.ROUTE))
    await envoy.wait_for(lambda: "svc-a" not in envoy.active_clusters(), 10, "svc-a removed")
    assert "svc-b" in envoy.active_clusters()
    before = c.hits
    resp = await ahttp_request(port, "/echo", headers={"x-probe": "1"})
    assert resp.status == 200 and resp.json()["headers"]["x-probe"] == "1"
    assert c.hits == before + 1


async def removal_status_flow(
    xds: RunningXds,
    make_envoy: Callable[..., EnvoyProcess],
    make_upstream: Callable[..., UpstreamServer],
    ads: str,
) -> None:
    """After a cluster (and its endpoints) leave the snapshot, proxy status shows the proxy on
    the new snapshot for every type, as an operator waiting for "acked" would expect."""
    a, b = make_upstream("a"), make_upstream("b")
    node = f"{ads}-removal"
    envoy = make_envoy(node, xds.port, ads=ads)
    port = envoy.listener_port
    s1 = Snapshot.build(http_resources(port, {"svc-a": [a.port], "svc-b": [b.port]}, route_to="svc-b"))
    xds.cache.set_snapshot(node, s1)
    await wait_acked(xds.status, node, s1, envoy=envoy)
    s2 = Snapshot.build(http_resources(port, {"svc-b": [b.port]}))
    xds.cache.set_snapshot(node, s2)
    await envoy.wait_for(lambda: "svc-a" not in envoy.active_clusters(), 10, "svc-a removed")
    await wait_acked(xds.status, node, s2, timeout=5, envoy=envoy)
