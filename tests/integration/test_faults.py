"""What survives which failure, with real processes: `meshctl serve` on a real Redis (AOF), real
Envoys carrying real traffic.

- kill -9 of the control plane in the middle of 1,000 concurrent proposals, then kill -9 of Redis
  (appendfsync always) in the middle of 1,000 more: every contract that got a 2xx is stored with
  its reservation, and the audit chain still verifies.
- Redis stopped for 10 s under load: reads answer, writes answer 503 + Retry-After (never 500,
  never a 2xx for something not stored), everything resumes by itself, Envoy never fails a
  request, and a provider whose heartbeats could not be stored keeps its lease.
- Control plane down for 30 s: Envoy keeps routing on its last config; on return it reconnects
  and is sent nothing new.
The two outages run side by side on separate stacks (they share no process), to keep the suite short.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import RedisServer, UpstreamServer, wait_for
from harness.replicas import (
    OPS,
    Replica,
    Traffic,
    agent_headers,
    applied,
    cluster_endpoints,
    contract_request,
    envoy_for,
    provider_spec,
    redis_contract_ids,
    redis_reservations,
    register,
    rejected_updates,
    route_weights,
    type_versions,
    wait_synced,
    wait_traffic_ok,
    xds_versions,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def stack() -> Iterator[contextlib.ExitStack]:
    with contextlib.ExitStack() as s:
        yield s


@dataclass
class Answer:
    i: int
    status: int | None  # None: no HTTP answer (connection reset, refused)
    error: str = ""
    contract: dict[str, Any] | None = None
    retry_after: str | None = None
    sent_at: float = 0.0
    answered_at: float = 0.0


@dataclass
class Burst:
    """n proposals in flight at once; `seen` counts statuses live, for a watcher to act mid-burst."""

    task: asyncio.Task[list[Answer]]
    seen: Counter[int]

    async def answers(self, timeout: float = 60.0) -> list[Answer]:
        return await asyncio.wait_for(self.task, timeout)


def burst(replica: Replica, n: int, *, consumers: int = 40) -> Burst:
    """n proposals at once from three agents, each with its own client and up to n connections."""
    seen: Counter[int] = Counter()
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)

    async def one(client: httpx.AsyncClient, i: int) -> Answer:
        sent = time.monotonic()
        try:
            resp = await client.post("/v1/contracts", json=contract_request(f"svc-{i % consumers}", 1.0))
        except httpx.TransportError as exc:
            return Answer(i, None, error=type(exc).__name__, sent_at=sent, answered_at=time.monotonic())
        seen[resp.status_code] += 1
        body = resp.json()
        return Answer(
            i,
            resp.status_code,
            contract=body.get("contract") if resp.status_code < 300 else None,
            error="" if resp.status_code < 300 else str(body.get("error", {}).get("code")),
            retry_after=resp.headers.get("retry-after"),
            sent_at=sent,
            answered_at=time.monotonic(),
        )

    async def run() -> list[Answer]:
        clients = [
            httpx.AsyncClient(base_url=replica.url, headers=agent_headers(a), timeout=60.0, limits=limits)
            for a in range(3)
        ]
        try:
            return list(await asyncio.gather(*(one(clients[i % 3], i) for i in range(n))))
        finally:
            for c in clients:
                await c.aclose()

    return Burst(asyncio.create_task(run()), seen)


def reservation_of(contract: dict[str, Any]) -> dict[str, float]:
    held: dict[str, float] = {}
    for s in contract["allocation"]["shares"]:
        held[s["provider_id"]] = held.get(s["provider_id"], 0.0) + s["rps"]
    return held


def by_contract(resv: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for pid, holders in resv.items():
        for cid, rps in holders.items():
            out.setdefault(cid, {})[pid] = rps
    return out


async def assert_stored(replica: Replica, redis_url: str, acknowledged: dict[str, dict[str, Any]]) -> None:
    """Every acknowledged contract is in Redis with its reservation, and the replica serves it."""
    held = by_contract(redis_reservations(redis_url))
    stored = redis_contract_ids(redis_url)
    missing = sorted(set(acknowledged) - stored)
    assert not missing, f"{len(missing)} acknowledged contracts lost, e.g. {missing[:5]}"
    for cid, c in acknowledged.items():
        assert held.get(cid) == pytest.approx(reservation_of(c)), f"reservation of {cid}"
    # No capacity held by something that is not a stored contract (the commit is one atomic step).
    assert set(held) <= stored
    async with replica.client() as client:
        listed = {c["id"]: c for c in (await client.get("/v1/contracts")).json()}
        for cid in acknowledged:
            assert listed[cid]["state"] == "active", listed[cid]
            assert listed[cid]["allocation"]["shares"] == acknowledged[cid]["allocation"]["shares"]
        verify = await client.get("/v1/audit/verify")
        assert verify.status_code == 200 and verify.json().get("ok") is True, verify.text


async def test_acknowledged_contracts_survive_kill_9_of_control_plane_then_redis(
    stack: contextlib.ExitStack,
) -> None:
    redis_server = stack.enter_context(RedisServer(fsync="always"))
    workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="meshctl-kill-")))
    replica = Replica(redis_server.url, workdir, origin="replica-0").start()
    stack.callback(replica.stop)
    async with replica.client() as c:
        for i in range(4):  # ample capacity: every proposal is admitted unless something breaks
            await register(c, provider_spec(f"p-{i}", 20000 + i, capacity=100_000))

    # 1. kill -9 of the control plane once 150 of 1,000 concurrent proposals are acknowledged.
    first = burst(replica, 1000)
    await wait_for(lambda: first.seen[201] >= 150, 60, "150 admissions", details=replica.logs)
    replica.kill()
    answers = await first.answers()
    acked = {a.contract["id"]: a.contract for a in answers if a.status == 201 and a.contract}
    unanswered = sum(1 for a in answers if a.status is None)
    assert len(acked) >= 150 and unanswered > 0, Counter(a.status for a in answers)
    assert {a.status for a in answers} <= {201, None}, Counter(a.status for a in answers)

    replica.start()
    await assert_stored(replica, redis_server.url, acked)

    # 2. kill -9 of Redis (appendfsync always) once 100 more are acknowledged; same Redis dir.
    second = burst(replica, 1000)
    await wait_for(lambda: second.seen[201] >= 100, 60, "100 more admissions", details=replica.logs)
    redis_server.crash()
    await asyncio.sleep(1.0)
    redis_server.start()
    answers = await second.answers()
    statuses = Counter(a.status for a in answers)
    assert set(statuses) <= {201, 503}, statuses  # stored, or said so: never a 500, never a dropped reply
    assert statuses[503] > 0, statuses
    assert all(a.retry_after for a in answers if a.status == 503)
    acked |= {a.contract["id"]: a.contract for a in answers if a.status == 201 and a.contract}

    await assert_stored(replica, redis_server.url, acked)  # the running replica, healed by itself
    assert replica.unexpected_errors() == [], replica.logs()
    replica.kill()  # and a cold start from what Redis kept
    replica.start()
    await assert_stored(replica, redis_server.url, acked)


# -- outages ------------------------------------------------------------------------------------------
@dataclass
class Call:
    kind: str  # "write" or "read"
    started: float
    ended: float
    status: int
    retry_after: str | None
    contract: dict[str, Any] | None = None
    error: str = ""


class Load:
    """Writes (proposals) and reads (contracts, providers) against one replica at a steady pace,
    plus a leased provider's heartbeats."""

    def __init__(self, replica: Replica, leased: str) -> None:
        self.replica = replica
        self.leased = leased
        self.calls: list[Call] = []
        self.heartbeats: Counter[int] = Counter()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.known_id: str | None = None

    def start(self) -> Load:
        self._tasks = [
            asyncio.create_task(self._writes()),
            asyncio.create_task(self._reads()),
            asyncio.create_task(self._heartbeats()),
        ]
        return self

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _call(self, client: httpx.AsyncClient, kind: str, method: str, path: str, **kw: Any) -> Call:
        started = time.monotonic()
        try:
            resp = await client.request(method, path, **kw)
        except httpx.TransportError as exc:  # status 0: no HTTP answer at all, a failure too
            call = Call(kind, started, time.monotonic(), 0, None, error=repr(exc))
            self.calls.append(call)
            return call
        body = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else None
        call = Call(kind, started, time.monotonic(), resp.status_code, resp.headers.get("retry-after"))
        if kind == "write" and resp.status_code == 201 and isinstance(body, dict):
            call.contract = body["contract"]
            self.known_id = self.known_id or call.contract["id"]
        self.calls.append(call)
        return call

    async def _writes(self) -> None:
        async with self.replica.client(agent_headers(1)) as c:
            i = 0
            while not self._stop.is_set():
                await self._call(
                    c, "write", "POST", "/v1/contracts", json=contract_request(f"batch-{i % 7}", 1.0)
                )
                i += 1
                await asyncio.sleep(0.05)

    async def _reads(self) -> None:
        async with self.replica.client(OPS) as c:
            while not self._stop.is_set():
                await self._call(c, "read", "GET", "/v1/contracts")
                await self._call(c, "read", "GET", "/v1/providers")
                if self.known_id:
                    await self._call(c, "read", "GET", f"/v1/contracts/{self.known_id}")
                await asyncio.sleep(0.05)

    async def _heartbeats(self) -> None:
        async with self.replica.client(OPS) as c:
            while not self._stop.is_set():
                resp = await c.post(f"/v1/providers/{self.leased}/heartbeat")
                self.heartbeats[resp.status_code] += 1
                await asyncio.sleep(0.5)


async def _routed_stack(
    stack: contextlib.ExitStack, name: str, *, leased_ttl_s: float | None = None
) -> tuple[RedisServer, Replica, Any, Traffic]:
    """Redis, one replica, two providers (p-b leased when `leased_ttl_s`), one contract spread
    over both, and an Envoy carrying steady traffic on it."""
    redis_server = stack.enter_context(RedisServer(fsync="always"))
    workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"meshctl-{name}-")))
    up_a = stack.enter_context(UpstreamServer(f"{name}-a"))
    up_b = stack.enter_context(UpstreamServer(f"{name}-b"))
    replica = Replica(redis_server.url, workdir, origin=f"{name}-replica").start()
    stack.callback(replica.stop)
    async with replica.client() as c:
        await register(c, provider_spec("p-a", up_a.port, zone="eu-west-1a", capacity=500))
        leased = provider_spec("p-b", up_b.port, zone="eu-west-1b", capacity=500)
        if leased_ttl_s is not None:
            leased["ttl_s"] = leased_ttl_s
        await register(c, leased)
        body = contract_request("checkout", 200)
        body["sla"]["availability"] = 0.999
        resp = await c.post("/v1/contracts", json=body, headers=agent_headers(0))
        assert resp.status_code == 201, resp.text
    envoy = envoy_for(f"{name}-checkout", replica.xds_port, service="checkout")
    stack.callback(envoy.stop)
    await envoy.ready()
    await wait_traffic_ok(envoy, {up_a.name, up_b.name})
    await wait_synced(replica, envoy.node_id)
    traffic = Traffic(envoy).start()
    stack.callback(traffic.stop)
    return redis_server, replica, envoy, traffic


def envoy_state(envoy: Any) -> tuple[Any, ...]:
    return (xds_versions(envoy), type_versions(envoy), route_weights(envoy), cluster_endpoints(envoy))


async def redis_down_10s(stack: contextlib.ExitStack) -> None:
    redis_server, replica, envoy, traffic = await _routed_stack(stack, "redisdown", leased_ttl_s=3.0)
    load = Load(replica, leased="p-b").start()
    try:
        await asyncio.sleep(2.0)
        before = envoy_state(envoy), applied(envoy)
        down_at = time.monotonic()
        redis_server.stop()
        await asyncio.sleep(10.0)  # longer than p-b's 3 s lease: its heartbeats cannot be stored
        up_at = time.monotonic()
        redis_server.start()

        def writes_resumed() -> bool:
            return any(c.kind == "write" and c.status == 201 and c.started > up_at for c in load.calls)

        await wait_for(writes_resumed, 15, "writes to succeed again after Redis returned", 0.1, replica.logs)
        await asyncio.sleep(4.0)  # past p-b's lease again: it must still be there, and nothing moved
    finally:
        await load.stop()
    traffic.stop()

    statuses = Counter((c.kind, c.status) for c in load.calls)
    assert not [c for c in load.calls if (c.status >= 500 and c.status != 503) or c.status == 0], statuses
    assert all(c.retry_after for c in load.calls if c.status == 503), "503 without Retry-After"
    assert {c.status for c in load.calls if c.kind == "read"} == {200}, statuses
    # Writes sent once the outage was visible (1 s: the client's socket timeout) and answered
    # before Redis returned cannot have been stored: each one said so.
    blind = [c for c in load.calls if c.kind == "write" and c.started > down_at + 1.0 and c.ended < up_at]
    assert blind and {c.status for c in blind} == {503}, Counter(c.status for c in blind)
    acked = {c.contract["id"]: c.contract for c in load.calls if c.contract is not None}
    held = by_contract(redis_reservations(redis_server.url))
    stored = redis_contract_ids(redis_server.url)
    for cid, contract in acked.items():
        assert cid in stored and held.get(cid) == pytest.approx(reservation_of(contract)), cid
    assert load.heartbeats[200] > 0 and set(load.heartbeats) <= {200, 503}, load.heartbeats

    assert traffic.ok == traffic.total and traffic.total > 100, traffic.summary()
    assert (envoy_state(envoy), applied(envoy)) == before, "the proxy's config changed across the outage"
    assert rejected_updates(envoy) == {}
    async with replica.client() as c:
        providers = {p["id"] for p in (await c.get("/v1/providers")).json()}
    assert providers == {"p-a", "p-b"}
    assert replica.unexpected_errors() == [], replica.logs()


async def heartbeats(replica: Replica, provider_id: str, seen: Counter[int], stop: asyncio.Event) -> None:
    """A provider renewing its lease every 0.5 s; 0 counts attempts that found no control plane."""
    async with replica.client() as c:
        while not stop.is_set():
            try:
                seen[(await c.post(f"/v1/providers/{provider_id}/heartbeat")).status_code] += 1
            except httpx.TransportError:
                seen[0] += 1
            await asyncio.sleep(0.5)


async def control_plane_down_30s(stack: contextlib.ExitStack) -> None:
    _, replica, envoy, traffic = await _routed_stack(stack, "cpdown", leased_ttl_s=3.0)
    beats: Counter[int] = Counter()
    stop = asyncio.Event()
    beating = asyncio.create_task(heartbeats(replica, "p-b", beats, stop))
    before = envoy_state(envoy), applied(envoy)
    replica.stop()
    await envoy.wait_for(lambda: envoy.stat("control_plane.connected_state") == 0, 10, "control plane gone")
    for _ in range(6):  # 30 s down; Envoy keeps answering on its last config all along
        ok_before = traffic.ok
        await asyncio.sleep(5.0)
        assert traffic.ok > ok_before and traffic.ok == traffic.total, traffic.summary()
    assert envoy.stat("control_plane.connected_state") == 0
    replica.start()
    await envoy.wait_for(lambda: envoy.stat("control_plane.connected_state") == 1, 15, "Envoy reconnected")
    await wait_synced(replica, envoy.node_id)
    await asyncio.sleep(4.0)  # past p-b's 3 s lease, which no heartbeat could renew for 30 s
    stop.set()
    await beating
    traffic.stop()
    assert (envoy_state(envoy), applied(envoy)) == before, "the proxy was sent changes on reconnect"
    assert rejected_updates(envoy) == {}
    assert traffic.ok == traffic.total and traffic.total > 300, traffic.summary()
    assert beats[0] > 0 and beats[404] == 0 and beats[200] > 0, beats  # refused, then renewed again
    async with replica.client() as c:
        assert {p["id"] for p in (await c.get("/v1/providers")).json()} == {"p-a", "p-b"}


async def test_redis_down_10s_and_control_plane_down_30s(stack: contextlib.ExitStack) -> None:
    # Two independent stacks (own Redis, replica, Envoy, upstreams each): the waits overlap.
    with contextlib.ExitStack() as other:
        results = await asyncio.gather(
            redis_down_10s(stack), control_plane_down_30s(other), return_exceptions=True
        )
    for r in results:  # both ran to the end before either stack is torn down
        if isinstance(r, BaseException):
            raise r
