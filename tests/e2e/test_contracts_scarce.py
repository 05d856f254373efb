"""Many agents at once against scarce capacity: never oversubscribed, losers get counter-offers."""

from __future__ import annotations

import asyncio

from _mesh import CAPABILITY, Mesh

CAPACITY = {"ga-a": 100.0, "ga-b": 100.0}


async def test_fifty_concurrent_proposals_never_oversubscribe(mesh: Mesh) -> None:
    await mesh.provider("ga-a", "eu-west-1a", capacity=100, p99=10, cost=0.10)
    await mesh.provider("ga-b", "eu-west-1b", capacity=100, p99=10, cost=0.20)
    body = {
        "consumer": "fraud-detection",
        "consumer_zone": "eu-west-1a",
        "capability": CAPABILITY,
        "sla": {"p99_latency_ms": 40, "rps": 30},
        "duration_s": 600,
    }
    agents = [mesh.agent, mesh.agent_b]
    replies = await asyncio.gather(*(agents[i % 2].post("/v1/contracts", json=body) for i in range(50)))

    outcomes = [r.json()["outcome"] for r in replies]
    admitted = [r.json()["contract"] for r in replies if r.status_code == 201]
    losers = [r.json() for r in replies if r.status_code != 201]
    # 200 rps of capacity fits six 30 rps contracts; the 20 rps left over is what the others are offered.
    assert len(admitted) == 6, outcomes
    assert all(o["outcome"] == "counter_offer" for o in losers), outcomes
    for offer in losers:
        co = offer["counter_offer"]
        assert co["sla"]["rps"] <= 20.0 + 1e-6 and co["sla"]["rps"] >= 19.9, co
        assert co["sla"]["p99_latency_ms"] == 40
        assert "sla.rps" in {b["constraint"] for b in co["binding"]}, co["binding"]
        assert offer["contract"] is None  # nothing was stored for a counter-offer

    # Reservations never exceed capacity: in the control plane's view, in the store, and in the
    # allocations the API hands out.
    for held in (mesh.held(), await mesh.stored_held()):
        assert all(held[p] <= CAPACITY[p] + 1e-6 for p in held), held
        assert sum(held.values()) == 180.0
    by_alloc: dict[str, float] = {}
    for c in admitted:
        for s in c["allocation"]["shares"]:
            by_alloc[s["provider_id"]] = by_alloc.get(s["provider_id"], 0.0) + s["rps"]
    assert by_alloc == await mesh.stored_held()
    listed = (await mesh.operator.get("/v1/contracts", params={"state": "active"})).json()
    assert sorted(c["id"] for c in listed) == sorted(c["id"] for c in admitted)

    # The offer is real: proposing exactly its terms is admitted and fills the mesh.
    offered = losers[0]["counter_offer"]
    take = {**body, "sla": offered["sla"]}
    r = await mesh.propose(take)
    assert r.status_code == 201, r.text
    assert sum((await mesh.stored_held()).values()) <= sum(CAPACITY.values()) + 1e-6
