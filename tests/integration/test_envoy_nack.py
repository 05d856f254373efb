"""Envoy rejects a bad resource: meshctl records the NACK with Envoy's reason, does not resend,
traffic stays on the last good config, and the next valid snapshot goes through."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from google.protobuf.message import Message
from harness import EnvoyProcess, UpstreamServer, ahttp_request, wait_for
from harness.flows import describe_status, wait_acked, wait_routed_to
from harness.resources import ROUTE, bad_regex_route, bad_ring_hash_cluster, http_resources
from harness.xds import RunningXds

from meshctl.xds import Snapshot
from meshctl.xds import resources as r

pytestmark = pytest.mark.integration


def _bad_route(port: int, backends: dict[str, list[int]]) -> list[Message]:
    return http_resources(port, backends, route_to="svc-a", extra_routes=[bad_regex_route("(unclosed")])


def _bad_cluster(port: int, backends: dict[str, list[int]]) -> list[Message]:
    return [*http_resources(port, backends, route_to="svc-a"), *bad_ring_hash_cluster("svc-bad")]


CASES = {
    # kind: (resources builder, rejected type, Envoy's error text, Envoy's rejection counter)
    "route": (_bad_route, r.ROUTE, "missing )", f"http.outbound.rds.{ROUTE}.update_rejected"),
    "cluster": (
        _bad_cluster,
        r.CLUSTER,
        "minimum_ring_size (100000) > maximum_ring_size (10)",
        "cluster_manager.cds.update_rejected",
    ),
}


@pytest.mark.parametrize("ads", ["sotw", "delta"])
@pytest.mark.parametrize("kind", sorted(CASES))
async def test_nack_recorded_not_resent_and_last_good_config_kept(
    kind: str,
    ads: str,
    xds_server: RunningXds,
    envoys: Callable[..., EnvoyProcess],
    upstreams: Callable[..., UpstreamServer],
) -> None:
    build_bad, bad_type, envoy_error, rejected_stat = CASES[kind]
    a, b = upstreams("a"), upstreams("b")
    backends = {"svc-a": [a.port], "svc-b": [b.port]}
    node = f"nack-{kind}-{ads}"
    envoy = envoys(node, xds_server.port, ads=ads)
    status = xds_server.status

    good = Snapshot.build(http_resources(envoy.listener_port, backends, route_to="svc-a"))
    xds_server.cache.set_snapshot(node, good)
    await envoy.ready()
    await wait_acked(status, node, good, envoy=envoy)
    await wait_routed_to(envoy, "a")

    bad = Snapshot.build(build_bad(envoy.listener_port, backends))
    xds_server.cache.set_snapshot(node, bad)
    proxy = status.get(node)
    assert proxy is not None
    await wait_for(
        lambda: proxy.types[bad_type].last_nack is not None,
        15,
        "a NACK",
        details=lambda: describe_status(status, node) + "\n" + envoy.logs(),
    )
    nack = proxy.types[bad_type].last_nack
    assert nack is not None
    assert envoy_error in nack.error, nack.error
    assert nack.version == bad.version(bad_type)
    assert proxy.types[bad_type].version_acked == good.version(bad_type)

    # Nothing more goes to this node for the rejected config: no resend loop.
    await asyncio.sleep(0.5)
    sent_before = {t: s.responses_sent for t, s in proxy.types.items()}
    for _ in range(15):
        resp = await ahttp_request(envoy.listener_port, "/")
        assert (resp.status, resp.headers.get("x-upstream")) == (200, "a"), resp
        await asyncio.sleep(0.1)
    assert {t: s.responses_sent for t, s in proxy.types.items()} == sent_before, describe_status(status, node)
    assert proxy.types[bad_type].nacks == 1
    assert envoy.stat(rejected_stat) == 1, envoy.stats("rejected")

    # A newer valid snapshot is sent and ACKed, and traffic follows it.
    fixed = Snapshot.build(http_resources(envoy.listener_port, backends, route_to="svc-b"))
    xds_server.cache.set_snapshot(node, fixed)
    await wait_acked(status, node, fixed, envoy=envoy)
    await wait_routed_to(envoy, "b")
    assert envoy.stat(rejected_stat) == 1
