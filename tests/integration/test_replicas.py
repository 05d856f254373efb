"""Control-plane replicas on one Redis, as real `meshctl serve` processes with real Envoys.

- A replica killed with SIGKILL and started again loads its state from Redis and serves its
  proxies the very same resource versions: Envoy applies nothing new, and traffic never stops.
- Three replicas taking proposals at once against scarce capacity never oversubscribe a provider
  (checked in Redis, continuously), and Envoys connected to different replicas converge on
  identical routes, clusters and endpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import RedisServer, UpstreamServer, wait_for
from harness.replicas import (
    Replica,
    Traffic,
    applied,
    cluster_endpoints,
    contract_request,
    envoy_for,
    propose,
    provider_spec,
    redis_reservations,
    register,
    rejected_updates,
    replicas,
    route_weights,
    type_versions,
    wait_synced,
    wait_traffic_ok,
    xds_versions,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def stack() -> Iterator[contextlib.ExitStack]:
    """Everything a test starts goes on this stack and is stopped at teardown, last first."""
    with contextlib.ExitStack() as s:
        yield s


def start_upstreams(stack: contextlib.ExitStack, *names: str) -> dict[str, UpstreamServer]:
    out = {}
    for name in names:
        out[name] = stack.enter_context(UpstreamServer(name))
    return out


async def test_restarted_replica_serves_the_same_versions(stack: contextlib.ExitStack) -> None:
    redis_server = stack.enter_context(RedisServer(fsync="always"))
    workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="meshctl-restart-")))
    ups = start_upstreams(stack, "up-a", "up-b")
    replica = Replica(redis_server.url, workdir, origin="replica-0").start()
    stack.callback(replica.stop)

    async with replica.client() as c:
        await register(c, provider_spec("p-a", ups["up-a"].port, zone="eu-west-1a", capacity=400))
        await register(c, provider_spec("p-b", ups["up-b"].port, zone="eu-west-1b", capacity=400))
        body = contract_request("checkout", 200)
        body["sla"]["availability"] = 0.999  # spread over both zones: weighted clusters
        resp = await propose(c, body)
        assert resp.status_code == 201, resp.text
        contract = resp.json()["contract"]

    envoy = envoy_for("checkout-1", replica.xds_port, service="checkout")
    stack.callback(envoy.stop)
    await envoy.ready()
    await wait_traffic_ok(envoy, {"up-a", "up-b"})
    await wait_synced(replica, "checkout-1")
    before_versions, before_weights = xds_versions(envoy), route_weights(envoy)
    before_types, before_endpoints = type_versions(envoy), cluster_endpoints(envoy)
    before_applied = applied(envoy)
    assert before_versions["routes"] and before_versions["clusters"] and before_versions["listeners"]
    assert sorted(w for ws in before_weights.values() for w in ws.values()) != [100], before_weights

    traffic = Traffic(envoy).start()
    stack.callback(traffic.stop)
    await asyncio.sleep(0.5)

    replica.kill()
    await envoy.wait_for(
        lambda: envoy.stat("control_plane.connected_state") == 0, 10, "Envoy to see the control plane gone"
    )
    await asyncio.sleep(1.0)  # traffic runs on the last config meanwhile
    replica.start()
    await envoy.wait_for(
        lambda: envoy.stat("control_plane.connected_state") == 1, 15, "Envoy to reconnect to the replica"
    )
    status = await wait_synced(replica, "checkout-1")
    await asyncio.sleep(1.0)  # anything the new process would (wrongly) send lands by now
    traffic.stop()

    assert xds_versions(envoy) == before_versions
    assert type_versions(envoy) == before_types
    assert cluster_endpoints(envoy) == before_endpoints
    assert route_weights(envoy) == before_weights
    assert applied(envoy) == before_applied, "Envoy applied new config after the restart"
    assert rejected_updates(envoy) == {}
    assert traffic.ok == traffic.total and traffic.total > 50, traffic.summary()
    assert {"up-a", "up-b"} <= set(traffic.upstreams), traffic.summary()
    # The replica's own view of what the proxy runs is the version Envoy reports.
    for kind in ("listeners", "routes", "clusters"):
        assert set(before_versions[kind].values()) == {status["expected"][kind]}, (kind, status)
    async with replica.client() as c:
        again = (await c.get(f"/v1/contracts/{contract['id']}")).json()
    assert again["state"] == "active"
    assert again["allocation"]["shares"] == contract["allocation"]["shares"]


async def test_three_replicas_never_oversubscribe_and_converge(stack: contextlib.ExitStack) -> None:
    redis_server = stack.enter_context(RedisServer(fsync="everysec"))
    ups = start_upstreams(stack, "up-1", "up-2", "up-3")
    capacity = {"p-1": 120.0, "p-2": 100.0, "p-3": 80.0}
    group = stack.enter_context(replicas(redis_server.url, 3))

    async with group[0].client() as c:
        zones = {"p-1": "eu-west-1a", "p-2": "eu-west-1b", "p-3": "eu-central-1a"}
        for i, (pid, cap) in enumerate(capacity.items()):
            await register(c, provider_spec(pid, ups[f"up-{i + 1}"].port, zone=zones[pid], capacity=cap))

    envoys = []
    for i, r in enumerate(group):
        e = envoy_for(f"fraud-{i}", r.xds_port, service="fraud")
        stack.callback(e.stop)
        envoys.append(e)
    for r in group:  # every replica learnt the providers from the change feed
        await wait_for(lambda r=r: _providers_on(r, set(capacity)), 10, f"providers on {r.origin}")

    # Watch the reservations in Redis for the whole run, not only at the end.
    worst: dict[str, float] = {}
    done = asyncio.Event()

    async def watch() -> None:
        while not done.is_set():
            resv = await asyncio.to_thread(redis_reservations, redis_server.url)
            for pid, held in resv.items():
                worst[pid] = max(worst.get(pid, 0.0), sum(held.values()))
            await asyncio.sleep(0.01)

    rng = random.Random(7)
    demands = [(i, rng.choice([10, 15, 20, 25, 30])) for i in range(60)]  # ~1,200 rps asked of 300
    clients = [r.client() for r in group]
    watcher = asyncio.create_task(watch())
    try:

        async def one(i: int, rps: float) -> tuple[int, float, httpx.Response]:
            consumer = "fraud" if i % 2 == 0 else "billing"
            return i, rps, await propose(clients[i % 3], contract_request(consumer, rps), agent=i % 3)

        answers = await asyncio.gather(*(one(i, rps) for i, rps in demands))
    finally:
        done.set()
        await watcher
        for c in clients:
            await c.aclose()

    statuses = Counter(resp.status_code for _, _, resp in answers)
    assert set(statuses) <= {200, 201, 409}, statuses  # admitted, counter-offer, lost every race
    admitted = {
        resp.json()["contract"]["id"]: resp.json()["contract"]
        for _, _, resp in answers
        if resp.status_code == 201
    }
    assert admitted and statuses[200] > 0, f"capacity must be both used and exhausted: {statuses}"

    assert set(worst) == set(capacity), worst
    for pid, most in worst.items():
        assert most <= capacity[pid] + 1e-6, f"{pid} held {most} rps of {capacity[pid]} at some point"
    resv = redis_reservations(redis_server.url)
    held_by: dict[str, dict[str, float]] = {}
    for pid, holders in resv.items():
        assert sum(holders.values()) <= capacity[pid] + 1e-6, (pid, holders)
        for cid, rps in holders.items():
            held_by.setdefault(cid, {})[pid] = rps
    # Exactly the admitted contracts hold capacity, each what its allocation says.
    assert set(held_by) == set(admitted)
    for cid, c in admitted.items():
        expected: dict[str, float] = {}
        for s in c["allocation"]["shares"]:
            expected[s["provider_id"]] = expected.get(s["provider_id"], 0.0) + s["rps"]
        assert held_by[cid] == pytest.approx(expected), cid
    assert sum(map(sum, (h.values() for h in resv.values()))) >= 0.8 * sum(capacity.values())

    # One history for the mesh: replicas never hand out the same version twice.
    async with group[1].client() as c:
        versions = [h["version"] for h in (await c.get("/v1/topology/history")).json()]
    assert len(versions) > len(admitted) and len(set(versions)) == len(versions), Counter(versions)

    # Envoys on different replicas converge on the same routes, weights and versions.
    fraud = sorted(cid for cid, c in admitted.items() if c["request"]["consumer"] == "fraud")
    assert fraud, "no fraud contract admitted"

    def views() -> list[tuple[Any, ...]]:
        # Listeners differ per proxy (each has its own port); routes, clusters, endpoints must not.
        out = []
        for e in envoys:
            versions = type_versions(e)
            out.append((route_weights(e), cluster_endpoints(e), versions["routes"], versions["clusters"]))
        return out

    def converged() -> bool:
        vs = views()
        weights = vs[0][0]
        return all(v == vs[0] for v in vs) and len(weights) >= len(fraud)

    await wait_for(
        converged, 20, "Envoys on the three replicas to converge", 0.2, lambda: f"fraud {fraud}: {views()}"
    )
    weights = views()[0][0]
    for cid in fraud:  # each admitted contract is routed with its allocation's weights
        (route,) = [ws for key, ws in weights.items() if key.endswith(cid)]
        shares = admitted[cid]["allocation"]["shares"]
        assert sorted(route.values()) == sorted(s["weight"] for s in shares), (cid, route, shares)
    for e in envoys:
        assert rejected_updates(e) == {}
        await wait_traffic_ok(e, {"up-1", "up-2", "up-3"})


async def _providers_on(r: Replica, wanted: set[str]) -> bool:
    async with r.client() as c:
        resp = await c.get("/v1/providers")
    return resp.status_code == 200 and {p["id"] for p in resp.json()} >= wanted
