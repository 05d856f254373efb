"""Contracts become real traffic: weighted split across providers, and the contracted rate enforced."""

from __future__ import annotations

import asyncio

from _mesh import CAPABILITY, Mesh
from _traffic import burst, describe, fetch, paced

CONSUMER, ZONE = "fraud-detection", "eu-west-1a"


def _weights(contract: dict[str, object]) -> dict[str, int]:
    alloc = contract["allocation"]
    assert isinstance(alloc, dict)
    return {s["provider_id"]: s["weight"] for s in alloc["shares"]}


async def test_admitted_contract_splits_real_traffic_by_allocated_weights(mesh: Mesh) -> None:
    # Three feasible providers in two zones; capacities bind, so the min-cost split uses all three.
    await mesh.provider("ga-a", "eu-west-1a", capacity=120, p99=15, cost=0.10)
    await mesh.provider("ga-b", "eu-west-1b", capacity=100, p99=20, cost=0.20)
    await mesh.provider("ga-c", "eu-west-1b", capacity=200, p99=25, cost=0.30)
    # The cheapest of all, but 12 ms away: 12 + 35 = 47 ms > 40 ms, so it must get nothing.
    slow = await mesh.provider("ga-slow", "eu-central-1a", capacity=500, p99=35, cost=0.05)
    sc = await mesh.sidecar("fd-1", CONSUMER, ZONE)

    body = {
        "consumer": CONSUMER,
        "capability": CAPABILITY,
        "sla": {"p99_latency_ms": 40, "rps": 300},
        "max_cost_per_1k": 0.5,
        "duration_s": 600,
    }
    r = await mesh.propose(body, wait="acked")
    assert r.status_code == 201, r.text
    decision = r.json()
    assert decision["outcome"] == "admitted"
    contract = decision["contract"]
    alloc = contract["allocation"]
    assert sum(s["rps"] for s in alloc["shares"]) == 300
    weights = _weights(contract)
    assert set(weights) == {"ga-a", "ga-b", "ga-c"}, alloc
    assert sum(weights.values()) == 100
    assert weights == {"ga-a": 40, "ga-b": 33, "ga-c": 27}  # 120/100/80 of 300 rps, cheapest first
    assert "ga-slow" not in {s["provider_id"] for s in alloc["failover"]}
    assert sc.node_id in alloc["acked_by"]

    # Paced under the contracted 300 rps: the local rate limit must not answer any of them.
    tally = await paced(sc.port, CAPABILITY, 2000, rps=280)
    detail = describe(tally, sorted(weights.items()))
    assert tally.statuses == {200: 2000}, detail
    shares = tally.shares()
    for pid, w in weights.items():
        assert abs(shares.get(pid, 0.0) - w) <= 5.0, detail
    assert slow.hits == 0 and "ga-slow" not in shares, detail
    # The route names the contract to the provider.
    echo = await fetch(sc.port, CAPABILITY, "/echo")
    assert echo.status == 200 and echo.json()["headers"]["x-mesh-contract"] == contract["id"]


async def test_requests_above_the_contracted_rate_get_429_from_envoy(mesh: Mesh) -> None:
    up = await mesh.provider("ga-a", "eu-west-1a", capacity=500, p99=10, cost=0.1)
    sc = await mesh.sidecar("fd-1", CONSUMER, ZONE)
    body = {
        "consumer": CONSUMER,
        "capability": CAPABILITY,
        "sla": {"p99_latency_ms": 40, "rps": 20},
        "duration_s": 600,
    }
    r = await mesh.propose(body, wait="acked")
    assert r.status_code == 201, r.text
    cid = r.json()["contract"]["id"]

    tally = await burst(sc.port, CAPABILITY, 120, connections=8)
    elapsed = max(x.at for x in tally.replies) - min(x.at for x in tally.replies)
    ok, limited = tally.statuses[200], [x for x in tally.replies if x.status == 429]
    # The bucket holds 20 tokens and refills 20 per second.
    allowed = 20 * (2 + int(elapsed))
    assert ok <= allowed, describe(tally)
    assert len(limited) >= 120 - allowed, describe(tally)
    assert ok + len(limited) == 120, describe(tally)
    assert all(x.headers.get("x-mesh-ratelimited") == "true" for x in limited)
    assert all(x.upstream is None for x in limited)  # answered by Envoy, never reached the provider
    assert up.hits == ok
    # Once the bucket refills, the consumer is served again.
    await asyncio.sleep(1.1)
    again = await fetch(sc.port, CAPABILITY, "/echo")
    assert again.status == 200 and again.json()["headers"]["x-mesh-contract"] == cid
