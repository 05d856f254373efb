"""A real Envoy on delta (incremental) ADS follows meshctl's snapshots with real HTTP traffic."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from harness import EnvoyProcess, UpstreamServer
from harness.flows import removal_status_flow, routing_flow
from harness.xds import RunningXds

pytestmark = pytest.mark.integration


async def test_delta_envoy_routes_and_follows_changes(
    xds_server: RunningXds, envoys: Callable[..., EnvoyProcess], upstreams: Callable[..., UpstreamServer]
) -> None:
    await routing_flow(xds_server, envoys, upstreams, "delta")


async def test_status_in_sync_after_cluster_removal(
    xds_server: RunningXds, envoys: Callable[..., EnvoyProcess], upstreams: Callable[..., UpstreamServer]
) -> None:
    await removal_status_flow(xds_server, envoys, upstreams, "delta")
