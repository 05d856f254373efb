"""A gRPC proxyless consumer (grpcio's xDS client, no sidecar) gets its contract from the control
plane: named xDS subscriptions, weighted providers, and failover when a provider leaves."""

from __future__ import annotations

from collections import Counter

from _mesh import FLEET, Mesh
from harness import GrpcUpstream, wait_for
from harness.proxyless import ProxylessClient

from meshctl.bootstrap import grpc_xds_bootstrap

CAPABILITY = "who"  # the client dials xds:///who: the listener name is the capability


async def _register(mesh: Mesh, up: GrpcUpstream, zone: str, cost: float) -> None:
    body = {
        "id": up.name,
        "capabilities": [CAPABILITY],
        "zone": zone,
        "endpoints": [{"address": "127.0.0.1", "port": up.port, "protocol": "grpc"}],
        "labels": {"compliance": ["gdpr"]},
        "capacity_rps": 50,
        "latency_p99_ms": 5,
        "cost_per_1k": cost,
    }
    r = await mesh.client(FLEET).post("/v1/providers", json=body)
    assert r.status_code == 201, r.text


async def test_grpc_proxyless_consumer_follows_its_contract(mesh: Mesh) -> None:
    g1, g2 = GrpcUpstream("g-west").start(), GrpcUpstream("g-central").start()
    try:
        await _register(mesh, g1, "eu-west-1b", cost=0.1)
        await _register(mesh, g2, "eu-central-1a", cost=0.2)
        boot = grpc_xds_bootstrap(
            "recommender-grpc-1", "recommender", "eu-west-1a", "127.0.0.1", mesh.plane.xds_port or 0
        )
        with ProxylessClient(CAPABILITY, boot) as client:
            # Connected but no contract: the name does not resolve.
            await wait_for(
                lambda: mesh.plane.status.get("recommender-grpc-1") is not None, 20, "client connected"
            )
            r = await mesh.propose(
                {
                    "consumer": "recommender",
                    "capability": CAPABILITY,
                    "sla": {"p99_latency_ms": 40, "rps": 80},
                },
                wait="acked",
            )
            assert r.status_code == 201, r.text
            alloc = r.json()["contract"]["allocation"]
            weights = {s["provider_id"]: s["weight"] for s in alloc["shares"]}
            assert set(weights) == {"g-west", "g-central"}  # 80 rps needs both (50 each)
            assert r.json()["contract"]["allocation"]["acked_by"] == ["recommender-grpc-1"]

            await wait_for(
                lambda: len([a for a in client.answers() if a]) >= 60,
                30,
                "RPCs succeed",
                0.05,
                client.describe,
            )
            mark = client.mark()
            await wait_for(lambda: len(client.since(mark)) >= 200, 60, "200 more RPCs", 0.05, client.describe)
            seen = Counter(line.split(" ", 1)[1] for line in client.since(mark) if line.startswith("OK "))
            assert set(seen) == {"g-west", "g-central"}, seen
            # Weighted clusters: each side within 15 points of its weight over 200 calls.
            total = sum(seen.values())
            for name, weight in weights.items():
                assert abs(100 * seen[name] / total - weight) < 15, (seen, weights)

            # g-central leaves: its traffic moves to g-west (re-solved within capacity or degraded).
            assert (await mesh.client(FLEET).delete("/v1/providers/g-central")).status_code == 204
            await wait_for(
                lambda: client.answers(last=20) == ["g-west"] * 20,
                30,
                "RPCs only to g-west",
                0.05,
                client.describe,
            )
    finally:
        g1.stop()
        g2.stop()
