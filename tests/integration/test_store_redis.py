"""The Store behaviour suite on both backends, and what only Redis must do: share state between
replicas, survive kill -9 with AOF, serve reads through an outage and recover by itself."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from harness import RedisServer

from meshctl.errors import StoreUnavailable
from meshctl.model import Zone
from meshctl.store.base import ChangeEvent
from meshctl.store.redis import RedisStore

try:  # whether pytest imports this file as part of a package or by its directory
    from .store_contract import *  # noqa: F403
    from .store_contract import Sealer, contract, next_event, provider
except ImportError:
    from store_contract import *  # type: ignore[no-redef]  # noqa: F403
    from store_contract import Sealer, contract, next_event, provider  # type: ignore[no-redef]

pytestmark = pytest.mark.integration


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server this test may stop or kill (never the shared one)."""
    server = RedisServer(appendonly=True, fsync="always").start()
    try:
        yield server
    finally:
        server.close()


def _prefix() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


async def test_follow_sees_other_replicas_on_the_same_prefix_only(
    redis_server: RedisServer, seal: Sealer
) -> None:
    prefix = _prefix()
    a = await RedisStore.connect(redis_server.url, origin="a", prefix=prefix, seal=seal)
    b = await RedisStore.connect(redis_server.url, origin="b", prefix=prefix, seal=seal)
    other = await RedisStore.connect(redis_server.url, origin="x", prefix=_prefix(), seal=seal)
    try:
        feed = a.follow()
        await other.put_zone(Zone(name="elsewhere", region="r"))
        await b.put_zone(Zone(name="z1", region="eu"))
        await b.publish(ChangeEvent(kind="policy", op="delete", key="old-policy"))
        first, second = await next_event(feed), await next_event(feed)
        assert (first.kind, first.key, first.origin) == ("zone", "z1", "b")
        assert (second.kind, second.op, second.key, second.origin) == ("policy", "delete", "old-policy", "b")
        assert second.seq > first.seq  # stream ids: "ms-n"
        assert [z.name for z in await a.list_zones()] == ["z1"]
    finally:
        for s in (a, b, other):
            await s.close()


async def test_acknowledged_commits_survive_kill_9(own_redis: RedisServer, seal: Sealer) -> None:
    prefix = _prefix()
    store = await RedisStore.connect(own_redis.url, origin="r1", prefix=prefix, seal=seal)
    try:
        cap = {"p1": 100.0, "p2": 100.0}
        for i in range(30):
            shares = {"p1" if i % 2 else "p2": 3.0}
            await store.commit_contract(contract(f"c{i:02d}", shares), shares, cap)
        for i in range(5):
            await store.append_audit({"actor": "system", "kind": "admission", "subject": f"c{i:02d}"})
        await store.put_provider(provider("p1"))
        expected_resv = await store.reservations()
    finally:
        await store.close()

    own_redis.crash()  # SIGKILL right after the last acknowledged write
    own_redis.start()

    again = await RedisStore.connect(own_redis.url, origin="r2", prefix=prefix, seal=seal)
    try:
        assert [c.id for c in await again.list_contracts()] == [f"c{i:02d}" for i in range(30)]
        assert await again.get_contract("c07") == contract("c07", {"p1": 3.0})
        assert await again.reservations() == expected_resv
        assert sum(expected_resv["p1"].values()) == 45.0
        assert [e["seq"] for e in await again.list_audit()] == [1, 2, 3, 4, 5]
        # The chain continues after the restart instead of starting over.
        assert (await again.append_audit({"actor": "system", "subject": "c1", "kind": "renew"}))["seq"] == 6
        assert await again.get_provider("p1") == provider("p1")
    finally:
        await again.close()


async def test_outage_reads_last_known_writes_fail_then_recover(own_redis: RedisServer, seal: Sealer) -> None:
    store = await RedisStore.connect(own_redis.url, origin="r1", prefix=_prefix(), seal=seal)
    try:
        await store.put_zone(Zone(name="z1", region="eu"))
        await store.put_provider(provider("p1"))
        await store.commit_contract(contract("c1", {"p1": 5}), {"p1": 5}, {"p1": 100})
        await store.append_history({"version": 1})
        await store.append_audit({"actor": "system", "subject": "c1", "kind": "admission"})
        zones, providers = await store.list_zones(), await store.list_providers()
        contracts, resv = await store.list_contracts(), await store.reservations()
        history, audit = await store.list_history(), await store.list_audit()
        # Own writes after the last read are part of the last known state too.
        await store.commit_contract(contract("c3", {"p1": 2}), {"p1": 2}, {"p1": 100})
        await store.append_history({"version": 2})
        c3 = await store.get_contract("c3")

        own_redis.stop()

        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await store.put_zone(Zone(name="z2", region="eu"))
        assert time.monotonic() - started < 5, "an outage must be reported quickly"
        with pytest.raises(StoreUnavailable):
            await store.commit_contract(contract("c2", {"p1": 5}), {"p1": 5}, {"p1": 100})
        with pytest.raises(StoreUnavailable):
            await store.append_audit({"actor": "system", "subject": "c1", "kind": "admission"})
        with pytest.raises(StoreUnavailable):
            await store.publish(ChangeEvent(kind="policy", op="put", key="x"))
        assert not store.available  # type: ignore[attr-defined]

        assert await store.list_zones() == zones
        assert await store.list_providers() == providers
        assert await store.list_contracts() == [*contracts, c3]
        assert await store.get_provider("p1") == provider("p1")
        assert await store.get_contract("c1") == contracts[0]
        assert await store.get_contract("unknown") is None  # the full list was known
        assert await store.reservations() == {"p1": {**resv["p1"], "c3": 2.0}}
        assert await store.list_history() == [*history, {"version": 2}]
        assert await store.list_audit() == audit

        own_redis.start()

        await store.put_zone(Zone(name="z2", region="eu"))  # no reconnect call: the client heals
        assert store.available  # type: ignore[attr-defined]
        assert [z.name for z in await store.list_zones()] == ["z1", "z2"]
        await store.commit_contract(contract("c2", {"p1": 5}), {"p1": 5}, {"p1": 100})
        assert await store.reservations() == {"p1": {"c1": 5.0, "c2": 5.0, "c3": 2.0}}
    finally:
        await store.close()


async def test_reads_with_nothing_known_raise_during_outage(own_redis: RedisServer, seal: Sealer) -> None:
    store = await RedisStore.connect(own_redis.url, origin="r1", prefix=_prefix(), seal=seal)
    try:
        own_redis.stop()
        for read in (store.list_zones, store.list_contracts, store.reservations, store.list_history):
            with pytest.raises(StoreUnavailable):
                await read()
        with pytest.raises(StoreUnavailable):
            await store.get_provider("p1")
    finally:
        await store.close()
    with pytest.raises(StoreUnavailable):
        await RedisStore.connect(own_redis.url, origin="r1", seal=seal)


async def test_follow_resumes_after_redis_restart(own_redis: RedisServer, seal: Sealer) -> None:
    prefix = _prefix()
    writer = await RedisStore.connect(own_redis.url, origin="w", prefix=prefix, seal=seal)
    reader = await RedisStore.connect(own_redis.url, origin="r", prefix=prefix, seal=seal)
    seen: list[str] = []

    async def collect() -> None:
        async for event in reader.follow():
            seen.append(event.key)

    task = asyncio.create_task(collect())
    try:
        await writer.put_zone(Zone(name="before", region="r"))
        await asyncio.wait_for(_until(lambda: seen == ["before"]), 5)

        own_redis.crash()
        await asyncio.sleep(1.2)  # the follower notices and keeps retrying
        own_redis.start()

        await writer.put_zone(Zone(name="after-1", region="r"))
        await writer.put_zone(Zone(name="after-2", region="r"))
        await asyncio.wait_for(_until(lambda: len(seen) >= 3), 10)
        assert seen == ["before", "after-1", "after-2"]  # nothing lost, nothing repeated
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await writer.close()
        await reader.close()


async def test_scripts_reload_after_script_flush(redis_server: RedisServer, seal: Sealer) -> None:
    store = await RedisStore.connect(redis_server.url, origin="r", prefix=_prefix(), seal=seal)
    try:
        await store.commit_contract(contract("c1", {"p": 1}), {"p": 1}, {"p": 10})
        await store._r.script_flush()  # type: ignore[attr-defined]  # as after a Redis restart
        await store.commit_contract(contract("c2", {"p": 1}), {"p": 1}, {"p": 10})
        assert await store.reservations() == {"p": {"c1": 1.0, "c2": 1.0}}
    finally:
        await store.close()


async def test_redis_errors_surface_as_store_unavailable(redis_server: RedisServer, seal: Sealer) -> None:
    prefix = _prefix()
    store = await RedisStore.connect(redis_server.url, origin="r", prefix=prefix, seal=seal)
    try:
        await store._r.set(f"{prefix}:zones", "not a hash")  # type: ignore[attr-defined]
        with pytest.raises(StoreUnavailable):
            await store.list_zones()
        with pytest.raises(StoreUnavailable):
            await store.put_zone(Zone(name="z", region="r"))
    finally:
        await store.close()


async def test_close_ends_followers(redis_server: RedisServer, seal: Sealer) -> None:
    store = await RedisStore.connect(redis_server.url, origin="r", prefix=_prefix(), seal=seal)
    feed = store.follow()
    waiter = asyncio.create_task(anext(feed, None))
    await asyncio.sleep(0.1)
    await store.close()
    assert await asyncio.wait_for(waiter, 3) is None


async def _until(predicate: Callable[[], bool]) -> None:
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition never held")


# -- topology history: each part stored once -------------------------------------------------------
def _contract_row(i: int, rev: int) -> dict[str, Any]:
    """A history contract row of the shape topology.history writes (~0.7 KB of JSON)."""
    held = {f"provider-{(i + k) % 97:04d}": 5.0 + rev for k in range(2)}
    return {
        "id": f"contract-{i:05d}",
        "owner": f"team-{i % 17}",
        "consumer": f"svc-consumer-{i:05d}",
        "consumer_zone": f"zone-{i % 5}",
        "capability": "graph-analysis",
        "state": "active",
        "sla": {"max_latency_ms": 50.0 + i % 7, "min_rps": 10.0 + rev, "availability": 0.999},
        "expires_at": 1_700_000_000.0 + i * 3.5 + rev,
        "allocation": {
            "shares": [
                {"provider_id": p, "weight": 0.5, "rps": rps, "priority": 0, "zone": f"zone-{k}"}
                for k, (p, rps) in enumerate(held.items())
            ],
            "failover": [{"provider_id": "provider-0050", "weight": 1.0, "rps": 0.0, "priority": 1}],
            "reservation": held,
        },
    }


def _mesh_history(contracts: int, changes: int) -> Iterator[dict[str, Any]]:
    """Snapshots of a mesh where one contract changes each time; unchanged items are the same
    objects from one snapshot to the next, as topology.history.snapshot() makes them."""
    zones = [{"name": f"zone-{k}", "region": "eu"} for k in range(5)]
    links = [{"a": f"zone-{k}", "b": f"zone-{k + 1}", "latency_ms": 3.0} for k in range(4)]
    providers = [
        {"id": f"provider-{k:04d}", "zone": f"zone-{k % 5}", "capabilities": ["graph-analysis"],
         "capacity_rps": 100.0, "ttl_s": 30.0, "registered_at": 1.7e9, "expires_at": 1.7e9 + 30}
        for k in range(97)
    ]  # fmt: skip
    consumers = {f"svc-consumer-{i:05d}": f"zone-{i % 5}" for i in range(contracts)}
    rows = [_contract_row(i, 0) for i in range(contracts)]
    for step in range(1, changes + 1):
        i = step * 7 % contracts
        rows = [*rows[:i], _contract_row(i, step), *rows[i + 1 :]]
        yield {
            "version": step,
            "at": 1.7e9 + step,
            "cause": "contract.renew",
            "detail": {"contract": rows[i]["id"]},
            "zones": zones,
            "links": links,
            "providers": providers,
            "consumers": dict(consumers),
            "contracts": rows,
        }


async def _history_bytes(store: RedisStore) -> int:
    r: Any = store._r  # type: ignore[attr-defined]
    keys = [store._key("history"), store._key("history", "parts")]  # type: ignore[attr-defined]
    return sum([await r.memory_usage(k, samples=0) or 0 for k in keys])


async def test_history_memory_grows_by_the_changes_not_the_mesh(
    redis_server: RedisServer, seal: Sealer
) -> None:
    prefix = _prefix()
    writer = await RedisStore.connect(redis_server.url, origin="w", prefix=prefix, seal=seal)
    reader = await RedisStore.connect(redis_server.url, origin="r", prefix=prefix, seal=seal)
    try:
        appended, naive = [], 0
        for snap in _mesh_history(contracts=300, changes=200):
            naive += len(json.dumps(snap, separators=(",", ":")).encode())
            assert await writer.append_history(snap) == snap["version"]
            appended.append(snap)
        used = await _history_bytes(writer)
        # Whole snapshots took ~46 MB here (naive JSON: ~41.5 MB); parts once: ~2 MB.
        assert used < naive / 10, f"history takes {used} bytes in Redis for {naive} bytes of snapshots"
        # Another replica (nothing cached) and the writer read back exactly what was appended.
        assert await reader.list_history() == appended
        assert await writer.list_history() == appended
    finally:
        await writer.close()
        await reader.close()


async def test_history_survives_its_parts_being_lost(redis_server: RedisServer, seal: Sealer) -> None:
    prefix = _prefix()
    store = await RedisStore.connect(redis_server.url, origin="w", prefix=prefix, seal=seal)
    try:
        first, second = list(_mesh_history(contracts=10, changes=2))
        await store.append_history(first)
        await store._r.delete(f"{prefix}:history:parts")  # type: ignore[attr-defined]  # as FLUSH/restore would
        # The store believes those parts are stored; the script finds them gone and they are resent.
        await store.append_history(second)
        fresh = await RedisStore.connect(redis_server.url, origin="r", prefix=prefix, seal=seal)
        try:
            # The entry whose parts are gone is left out; the history still reads.
            assert await fresh.list_history() == [second]
        finally:
            await fresh.close()
    finally:
        await store.close()


async def test_history_written_as_whole_json_is_still_read(redis_server: RedisServer, seal: Sealer) -> None:
    prefix = _prefix()
    store = await RedisStore.connect(redis_server.url, origin="w", prefix=prefix, seal=seal)
    try:
        old = {"version": 0, "cause": "before the upgrade", "contracts": [{"id": "c1"}]}
        await store._r.xadd(f"{prefix}:history", {"s": json.dumps(old), "v": 1})  # type: ignore[attr-defined]
        await store._r.set(f"{prefix}:history:version", 1)  # type: ignore[attr-defined]
        new = {"version": 0, "cause": "after", "contracts": [{"id": "c1"}, {"id": "c2"}]}
        assert await store.append_history(new) == 2
        assert await store.list_history() == [{**old, "version": 1}, {**new, "version": 2}]
    finally:
        await store.close()
