"""After admission: a lapsed provider lease, contract expiry and revocation, seen through real Envoy."""

from __future__ import annotations

import asyncio
import time

from _mesh import CAPABILITY, Mesh
from _traffic import Tally, describe, fetch, paced
from harness import wait_for

CONSUMER, ZONE = "fraud-detection", "eu-west-1a"


def _providers(contract: dict[str, object]) -> set[str]:
    alloc = contract["allocation"]
    assert isinstance(alloc, dict)
    return {s["provider_id"] for s in alloc["shares"]}


async def _route_gone(mesh: Mesh, port: int) -> None:
    async def gone() -> bool:
        r = await fetch(port, CAPABILITY)
        return r.status == 404 and r.upstream is None

    await wait_for(gone, timeout=10, what="Envoy to answer 404 for the capability Host")


async def test_lapsed_lease_moves_traffic_to_remaining_providers(mesh: Mesh) -> None:
    # availability 0.999 spreads over two zones (100 rps each); ga-c is the failover.
    # Leases of 1.5 s renewed every 0.2 s: only a stopped heartbeat lets one lapse.
    await mesh.provider_process(
        "ga-a", "eu-west-1a", capacity=200, p99=15, cost=0.10, ttl_s=1.5, heartbeat=False
    )
    await mesh.provider("ga-b", "eu-west-1b", capacity=200, p99=20, cost=0.20, ttl_s=1.5, heartbeat=False)
    await mesh.provider("ga-c", "eu-west-1c", capacity=200, p99=20, cost=0.30, ttl_s=1.5, heartbeat=False)
    mesh.keep_alive(["ga-a", "ga-b", "ga-c"], every_s=0.2)
    sc = await mesh.sidecar("fd-1", CONSUMER, ZONE)
    body = {
        "consumer": CONSUMER,
        "capability": CAPABILITY,
        "sla": {"p99_latency_ms": 40, "rps": 200, "availability": 0.999},
        "duration_s": 600,
    }
    r = await mesh.propose(body, wait="acked")
    assert r.status_code == 201, r.text
    contract = r.json()["contract"]
    cid = contract["id"]
    assert _providers(contract) == {"ga-a", "ga-b"}
    assert [s["provider_id"] for s in contract["allocation"]["failover"]] == ["ga-c"]

    # ga-a's process dies and its heartbeats stop, while the consumer keeps sending 100 rps.
    tally = Tally()
    traffic = asyncio.create_task(paced(sc.port, CAPABILITY, 500, rps=100, into=tally))
    await asyncio.sleep(1.0)
    died_at = time.monotonic()
    mesh.stop_heartbeats("ga-a")
    mesh.kill("ga-a")
    await wait_for(
        lambda: mesh.plane.state.graph.provider("ga-a") is None, timeout=5, what="ga-a's lease to lapse"
    )
    lapsed_at = time.monotonic()
    assert lapsed_at - died_at < 3.0  # ttl 1.5 s, keeper tick 50 ms

    async def moved() -> dict[str, object] | None:
        c = await mesh.contract(cid, who="agent-a")
        return c if "ga-a" not in _providers(c) and "fd-1" in c["allocation"]["acked_by"] else None

    after = await wait_for(moved, timeout=5, what="the re-solved allocation to be ACKed")
    resolved_at = time.monotonic()
    await traffic

    assert after["state"] == "active"
    assert _providers(after) == {"ga-b", "ga-c"}
    assert sum(s["rps"] for s in after["allocation"]["shares"]) == 200
    ev = [e for e in after["events"] if e["kind"] == "resolve"]
    assert ev and "provider lease lapsed" in ev[-1]["detail"], after["events"]

    # Retries and failover endpoints absorb the outage; only a handful may fail before ejection.
    failed = tally.failed()
    assert len(failed) <= 5, describe(tally)
    assert all(r.upstream != "ga-a" for r in tally.since(died_at + 0.1).replies)
    settled = tally.since(resolved_at + 0.2)
    assert len(settled.replies) > 50
    assert set(settled.by_upstream) == {"ga-b", "ga-c"}, describe(settled)
    held = await mesh.stored_held()
    assert "ga-a" not in held and held == {"ga-b": 100.0, "ga-c": 100.0}


async def test_expiry_withdraws_the_route_and_frees_capacity(mesh: Mesh) -> None:
    await mesh.provider("ga-a", "eu-west-1a", capacity=100, p99=10, cost=0.1)
    sc = await mesh.sidecar("fd-1", CONSUMER, ZONE)
    body = {
        "consumer": CONSUMER,
        "capability": CAPABILITY,
        "sla": {"p99_latency_ms": 40, "rps": 100},
        "duration_s": 1.5,
    }
    r = await mesh.propose(body, wait="acked")
    assert r.status_code == 201, r.text
    cid = r.json()["contract"]["id"]
    assert (await fetch(sc.port, CAPABILITY)).upstream == "ga-a"
    assert mesh.held() == {"ga-a": 100.0}

    # All of ga-a is held: a second contract cannot be admitted while the first lives.
    other = {**body, "duration_s": 600}
    r2 = await mesh.propose(other, who="agent-b")
    assert r2.status_code == 200 and r2.json()["outcome"] != "admitted", r2.text

    async def expired() -> bool:
        return (await mesh.contract(cid))["state"] == "expired"

    await wait_for(expired, timeout=5, what="the contract to expire")
    c = await mesh.contract(cid)
    assert c["events"][-1]["kind"] == "expiry"
    await _route_gone(mesh, sc.port)
    assert mesh.held() == {} and await mesh.stored_held() == {}

    r3 = await mesh.propose(other, who="agent-b", wait="acked")
    assert r3.status_code == 201, r3.text
    assert (await fetch(sc.port, CAPABILITY)).upstream == "ga-a"


async def test_revoke_withdraws_the_route_and_frees_capacity(mesh: Mesh) -> None:
    await mesh.provider("ga-a", "eu-west-1a", capacity=100, p99=10, cost=0.1)
    sc = await mesh.sidecar("fd-1", CONSUMER, ZONE)
    body = {"consumer": CONSUMER, "capability": CAPABILITY, "sla": {"p99_latency_ms": 40, "rps": 100}}
    r = await mesh.propose(body, wait="acked")
    assert r.status_code == 201, r.text
    cid = r.json()["contract"]["id"]
    assert (await fetch(sc.port, CAPABILITY)).upstream == "ga-a"

    r = await mesh.agent.post(f"/v1/contracts/{cid}/revoke")
    assert r.status_code == 200 and r.json()["state"] == "revoked", r.text
    await _route_gone(mesh, sc.port)
    assert await mesh.stored_held() == {}
    # Revoking twice is a conflict, not a second state change.
    again = await mesh.agent.post(f"/v1/contracts/{cid}/revoke")
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"

    r2 = await mesh.propose(body, who="agent-b", wait="acked")
    assert r2.status_code == 201, r2.text
    assert (await fetch(sc.port, CAPABILITY)).upstream == "ga-a"
