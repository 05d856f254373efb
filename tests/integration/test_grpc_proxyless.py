"""grpcio's own xDS client (``xds:///who``) resolves through meshctl and follows endpoint moves."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from harness import GrpcUpstream, wait_for
from harness.flows import describe_status, wait_acked
from harness.proxyless import ProxylessClient
from harness.resources import grpc_resources
from harness.xds import RunningXds

from meshctl.bootstrap import grpc_xds_bootstrap
from meshctl.xds import Snapshot

pytestmark = pytest.mark.integration

TARGET = "who"
CLUSTER = "who-backend"


async def test_proxyless_grpc_client_follows_endpoints(
    xds_server: RunningXds, grpc_upstreams: Callable[..., GrpcUpstream]
) -> None:
    g1, g2 = grpc_upstreams("g1"), grpc_upstreams("g2")
    node = "grpc-client-1"
    first = Snapshot.build(grpc_resources(TARGET, CLUSTER, [g1.port]))
    xds_server.cache.set_snapshot(node, first)

    boot = grpc_xds_bootstrap(node, "client", "zone-a", "127.0.0.1", xds_server.port)
    with ProxylessClient(TARGET, boot) as client:

        def details() -> str:
            return client.describe() + "\n" + describe_status(xds_server.status, node)

        await wait_for(lambda: client.answers(last=3) == ["g1"] * 3, 30, "RPCs answered by g1", 0.05, details)
        await wait_acked(xds_server.status, node, first)
        proxy = xds_server.status.get(node)
        assert proxy is not None and proxy.node.cluster == "client"

        moved = Snapshot.build(grpc_resources(TARGET, CLUSTER, [g2.port]))
        xds_server.cache.set_snapshot(node, moved)
        g2_before = g2.hits
        mark = client.mark()
        await wait_for(lambda: client.answers(last=3) == ["g2"] * 3, 20, "RPCs moved to g2", 0.05, details)
        await wait_acked(xds_server.status, node, moved)
        assert g2.hits >= g2_before + 3
        # The move is clean: once an answer came from g2, no later call went back to g1.
        after = [ln for ln in client.since(mark) if ln.startswith("OK ")]
        first_g2 = after.index("OK g2")
        assert "OK g1" not in after[first_g2:]
