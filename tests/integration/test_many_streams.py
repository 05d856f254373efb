"""200 concurrent ADS streams, each its own node, all receive and ACK one change."""

from __future__ import annotations

import grpc
import pytest
from harness import wait_for
from harness.ads_client import AdsClient
from harness.xds import RunningXds

from meshctl.translate import builders as b
from meshctl.xds import Snapshot
from meshctl.xds import resources as r

pytestmark = pytest.mark.integration

STREAMS = 200
PER_CHANNEL = 25


def _clusters(tag: int) -> Snapshot:
    # One EDS cluster and its endpoints: small, consistent, and different per tag.
    return Snapshot.build(
        [
            b.eds_cluster(f"svc-{tag}", outlier=False),
            b.load_assignment(f"svc-{tag}", [b.LbEndpointSpec("127.0.0.1", 10000 + tag)]),
        ]
    )


async def test_200_streams_all_ack_one_change(xds_server: RunningXds) -> None:
    cache, status = xds_server.cache, xds_server.status
    nodes = [f"many-{i:03d}" for i in range(STREAMS)]
    first, second = _clusters(1), _clusters(2)
    for n in nodes:
        cache.set_snapshot(n, first)

    channels = [
        grpc.aio.insecure_channel(f"127.0.0.1:{xds_server.port}") for _ in range(STREAMS // PER_CHANNEL)
    ]
    clients = [
        AdsClient(channels[i // PER_CHANNEL], n, (r.CLUSTER, r.ENDPOINT)).start() for i, n in enumerate(nodes)
    ]
    try:

        def all_acked(snap: Snapshot) -> bool:
            want = snap.version(r.CLUSTER)
            for n in nodes:
                proxy = status.get(n)
                if proxy is None or not proxy.connected:
                    return False
                s = proxy.types.get(r.CLUSTER)
                if s is None or s.version_acked != want:
                    return False
            return True

        def lagging() -> str:
            errors = [c.error for c in clients if c.error is not None][:3]
            late = [n for n in nodes if not (p := status.get(n)) or not p.types.get(r.CLUSTER)
                    or p.types[r.CLUSTER].version_acked != second.version(r.CLUSTER)]  # fmt: skip
            return f"{len(late)} not acked, e.g. {late[:5]}; client errors: {errors}"

        await wait_for(lambda: all_acked(first), 30, "200 streams to ACK the first snapshot", 0.05, lagging)
        assert status.connected_count() >= STREAMS

        for n in nodes:
            cache.set_snapshot(n, second)
        await wait_for(lambda: all_acked(second), 30, "200 streams to ACK the change", 0.05, lagging)
        assert all(c.versions.get(r.CLUSTER) == second.version(r.CLUSTER) for c in clients)
        assert all(c.error is None for c in clients), [c.error for c in clients if c.error][:3]
    finally:
        for c in clients:
            await c.stop()
        for ch in channels:
            await ch.close()
