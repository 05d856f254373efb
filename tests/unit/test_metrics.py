"""Prometheus /metrics: the numbers an operator alerts on move with what happens in the mesh."""

from __future__ import annotations

import httpx
from ops_support import FakeSidecar, provider, request, running_plane, until
from prometheus_client.parser import text_string_to_metric_families

from meshctl.api.app import create_app
from meshctl.api.auth import TokenTable
from meshctl.controlplane import ControlPlane
from meshctl.xds import resources as r

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(plane: ControlPlane) -> Samples:
    app = create_app(plane, TokenTable({}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        resp = await client.get("/metrics")  # unauthenticated, as Prometheus scrapes
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_follow_proxies_contracts_pushes_nacks_and_resolves() -> None:
    async with running_plane() as plane:
        assert plane.xds_port is not None
        await plane.put_provider(provider("p1", capacity=100))
        await plane.put_provider(provider("p2", zone="eu-b", capacity=100, port=9001))
        before = await scrape(plane)
        assert value(before, "meshctl_connected_proxies") == 0
        assert value(before, "meshctl_contracts", state="active") == 0

        async with (
            FakeSidecar(plane.xds_port, "checkout-1", "checkout", "eu-a") as good,
            FakeSidecar(plane.xds_port, "reports-1", "reports", "eu-a", nack=[r.ROUTE]) as bad,
        ):
            await until(lambda: r.LISTENER in good.acked and r.LISTENER in bad.acked, what="first ACKs")
            assert value(await scrape(plane), "meshctl_connected_proxies") == 2

            admitted = await plane.negotiator.propose("agent-1", request(150), wait_acked=True)
            assert admitted.outcome == "admitted"
            offered = await plane.negotiator.propose("agent-1", request(500))  # beyond what is left
            assert offered.outcome == "counter_offer"
            # The reports sidecar rejects the route its contract brings.
            nacked = await plane.negotiator.propose(
                "agent-2", request(20, consumer="reports"), wait_acked=True
            )
            assert nacked.outcome == "admitted"
            await until(lambda: bad.nacked, what="the NACK")

            during = await scrape(plane)
            assert value(during, "meshctl_contracts", state="active") == 2
            assert value(during, "meshctl_contracts", state="degraded") == 0
            assert value(during, "meshctl_admission_seconds_count", outcome="admitted") == 2
            assert value(during, "meshctl_admission_seconds_count", outcome="counter_offer") == 1
            assert 0 < value(during, "meshctl_admission_seconds_sum", outcome="admitted") < 5
            assert value(during, "meshctl_nacks_total", type="RouteConfiguration") >= 1
            assert value(during, "meshctl_nacks_total", type="Cluster") == 0
            pushes = value(during, "meshctl_push_ack_seconds_count")
            assert pushes >= 1
            assert 0 < value(during, "meshctl_push_ack_seconds_sum") < 5 * pushes
            assert value(during, "meshctl_push_ack_seconds_bucket", le="+Inf") == pushes

            # p2 leaves: p1 alone (100 rps) cannot carry 150 + 20 rps; both contracts held capacity
            # on p2 (p1 was full after the first), so both are re-solved into degraded.
            await plane.delete_provider("p2")
            after = await scrape(plane)
            states = sorted(c.state for c in plane.state.contracts.values())
            assert states == ["degraded", "degraded"]
            assert value(after, "meshctl_resolves_total", kind="degraded") == 2
            assert value(after, "meshctl_contracts", state="degraded") == 2
            assert value(after, "meshctl_contracts", state="active") == 0

        await until(lambda: plane.status.connected_count() == 0, what="sidecars to disconnect")
        assert value(await scrape(plane), "meshctl_connected_proxies") == 0
