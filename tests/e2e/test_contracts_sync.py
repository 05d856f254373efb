"""Negotiation meets the proxies: dry runs push nothing, `wait=acked` means ACKed, explain tells all."""

from __future__ import annotations

import asyncio
from typing import Any

from _mesh import CAPABILITY, Mesh, Sidecar
from _traffic import fetch
from harness import wait_for

CONSUMER, ZONE = "fraud-detection", "eu-west-1a"
BODY = {
    "consumer": CONSUMER,
    "capability": CAPABILITY,
    "sla": {"p99_latency_ms": 40, "rps": 150},
    "max_cost_per_1k": 1.0,
    "duration_s": 600,
}


def _route_version(sc: Sidecar) -> str | None:
    cfg = sc.envoy.route_configs().get("outbound")
    return None if cfg is None else str(cfg["version_info"])


async def _proxy_state(mesh: Mesh, sc: Sidecar) -> dict[str, Any]:
    r = await mesh.operator.get(f"/v1/proxies/{sc.node_id}/config")
    assert r.status_code == 200, r.text
    proxies = (await mesh.operator.get("/v1/proxies")).json()
    me = next(p for p in proxies if p["node"]["id"] == sc.node_id)
    return {
        "versions": r.json()["versions"],
        "sent": {t: s["responses_sent"] for t, s in me["types"].items()},
        "envoy_route_version": _route_version(sc),
        "held": await mesh.stored_held(),
        "contracts": (await mesh.operator.get("/v1/contracts")).json(),
        "audit": len((await mesh.operator.get("/v1/audit")).json()),
    }


async def test_dry_run_reserves_nothing_and_pushes_nothing(mesh: Mesh) -> None:
    await mesh.provider("ga-a", ZONE, capacity=100, p99=10, cost=0.10)
    await mesh.provider("ga-b", "eu-west-1b", capacity=100, p99=12, cost=0.20)
    sc = await mesh.sidecar("fd-1", CONSUMER, ZONE)
    before = await _proxy_state(mesh, sc)

    r = await mesh.propose(BODY, dry_run="true")
    assert r.status_code == 200, r.text
    what_if = r.json()
    assert what_if["dry_run"] is True and what_if["outcome"] == "admitted"
    shares = {s["provider_id"]: s["rps"] for s in what_if["contract"]["allocation"]["shares"]}
    assert shares == {"ga-a": 100.0, "ga-b": 50.0}

    await asyncio.sleep(0.3)  # a push, had there been one, would have reached Envoy by now
    assert await _proxy_state(mesh, sc) == before
    assert (await fetch(sc.port, CAPABILITY)).status == 404
    # A dry run of a contract that cannot be met is a counter-offer, and also changes nothing.
    r = await mesh.propose({**BODY, "sla": {"p99_latency_ms": 40, "rps": 500}}, dry_run="true")
    assert r.json()["outcome"] == "counter_offer" and r.json()["dry_run"] is True
    assert await _proxy_state(mesh, sc) == before

    # The what-if was the truth: proposing for real gets the same allocation.
    real = await mesh.propose(BODY, wait="acked")
    assert real.status_code == 201, real.text
    got = {s["provider_id"]: s["rps"] for s in real.json()["contract"]["allocation"]["shares"]}
    assert got == shares


async def test_wait_acked_answers_once_every_proxy_of_the_consumer_acked(mesh: Mesh) -> None:
    await mesh.provider("ga-a", ZONE, capacity=200, p99=10, cost=0.10)
    sc1 = await mesh.sidecar("fd-1", CONSUMER, ZONE)
    sc2 = await mesh.sidecar("fd-2", CONSUMER, ZONE)
    other = await mesh.sidecar("billing-1", "billing", ZONE)
    other_before = _route_version(other)

    r = await mesh.propose(BODY, wait="acked")
    assert r.status_code == 201, r.text
    alloc = r.json()["contract"]["allocation"]
    # Checked before anything else can run: the answer itself carries the ACKs.
    versions = {sc.node_id: _route_version(sc) for sc in (sc1, sc2)}
    assert alloc["acked_by"] == ["fd-1", "fd-2"]
    assert versions == {"fd-1": alloc["config_version"], "fd-2": alloc["config_version"]}

    for sc in (sc1, sc2):

        async def served(sc: Sidecar = sc) -> bool:
            return (await fetch(sc.port, CAPABILITY)).upstream == "ga-a"

        await wait_for(served, timeout=2, what=f"{sc.node_id} to serve the new route")
    # Only the consumer's proxies were sent the contract.
    assert _route_version(other) == other_before
    assert (await fetch(other.port, CAPABILITY)).status == 404
    cfg = (await mesh.operator.get("/v1/proxies/billing-1/config")).json()
    assert cfg["resources"].get("clusters", {}) == {}


async def test_explain_shows_candidates_allocation_resources_and_acks(mesh: Mesh) -> None:
    await mesh.provider("ga-a", ZONE, capacity=100, p99=10, cost=0.10)
    await mesh.provider("ga-b", "eu-west-1b", capacity=100, p99=12, cost=0.20)
    await mesh.provider("ga-slow", "eu-central-1a", capacity=500, p99=35, cost=0.05)
    await mesh.provider("ga-us", "us-east-1a", capacity=500, p99=5, cost=0.01, labels={"compliance": []})
    sc = await mesh.sidecar("fd-1", CONSUMER, ZONE)
    r = await mesh.propose({**BODY, "labels": {"data_class": "pii"}}, wait="acked")
    assert r.status_code == 201, r.text
    cid = r.json()["contract"]["id"]

    ex = (await mesh.agent.get(f"/v1/contracts/{cid}/explain")).json()
    cands = {c["provider"]: c for c in ex["candidates"]}
    assert set(cands) == {"ga-a", "ga-b", "ga-slow", "ga-us"}
    assert cands["ga-a"]["feasible"] and cands["ga-a"]["expected_p99_ms"] == 10.5
    assert cands["ga-b"]["feasible"] and cands["ga-b"]["expected_p99_ms"] == 13.2
    assert not cands["ga-slow"]["feasible"]
    assert cands["ga-slow"]["dropped_because"] == "latency: 47.0 ms > 40.0 ms"
    assert not cands["ga-us"]["feasible"]
    assert cands["ga-us"]["dropped_because"] in ("policy:gdpr-compliance", "policy:pii-eu-only")
    applied = {p["policy"] for p in ex["policies"]["results"] if p["applies"]}
    assert {"gdpr-compliance", "pii-eu-only"} <= applied

    assert ex["allocation"]["shares"] == r.json()["contract"]["allocation"]["shares"]
    clusters = sorted(f"c.{cid}.{p}" for p in ("ga-a", "ga-b"))
    assert ex["resources"]["clusters"] == clusters
    assert ex["resources"]["routes"] == ["outbound"]

    [proxy] = ex["proxies"]
    assert proxy["node"] == "fd-1" and proxy["acked"] is True
    envoy_clusters = sc.envoy.active_clusters()
    for name in clusters:
        assert name in envoy_clusters
        assert proxy["types"]["clusters"]["resources"][name]
    assert proxy["types"]["clusters"]["version_acked"] == envoy_clusters[clusters[0]]["version_info"]
    assert proxy["types"]["routes"]["version_acked"] == _route_version(sc)
    assert [e["kind"] for e in ex["events"]] == ["proposed", "admitted"]
