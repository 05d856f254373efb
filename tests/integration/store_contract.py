"""Behaviour every `Store` backend must show, run against memory and Redis alike.

Not collected on its own (no test_ prefix): test_store_redis.py imports it, so the `backend`
fixture below runs each test once per backend. Redis tests share one module-scoped redis-server
(our own, never the shared 6379) and isolate themselves with a fresh key prefix each.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from harness import RedisServer

from meshctl.errors import CapacityConflict, ValidationFailed
from meshctl.model import (
    Allocation,
    Contract,
    ContractRequest,
    ContractState,
    Endpoint,
    Link,
    Provider,
    Share,
    Sla,
    Zone,
)
from meshctl.store.base import ChangeEvent, Store
from meshctl.store.memory import MemoryStore
from meshctl.store.redis import RedisStore

Sealer = Callable[[dict[str, Any], dict[str, Any] | None], dict[str, Any]]
MakeStores = Callable[..., Awaitable[list[Store]]]


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def standin_seal(entry: dict[str, Any], prev: dict[str, Any] | None) -> dict[str, Any]:
    """governance.audit.seal as its brief specifies it, for as long as that module is missing."""
    out = {k: v for k, v in entry.items() if k != "hash"}
    out["seq"] = int(prev["seq"]) + 1 if prev else 1
    out["prev_hash"] = prev["hash"] if prev else "0" * 64
    out["hash"] = hashlib.sha256(_canonical(out)).hexdigest()
    return out


def entry_hash(entry: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical({k: v for k, v in entry.items() if k != "hash"})).hexdigest()


@pytest.fixture
def seal() -> Sealer:
    try:
        from meshctl.governance.audit import seal as real_seal
    except ImportError:
        return standin_seal
    return real_seal


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer(appendonly=True, fsync="always").start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_stores(
    backend: str, request: pytest.FixtureRequest, seal: Sealer
) -> AsyncIterator[MakeStores]:
    """`await make_stores(n)`: n replicas sharing one state (memory: the same instance n times,
    since an in-process store has no other replica; Redis: n connections on one prefix)."""
    opened: list[Store] = []
    prefix = f"t-{uuid.uuid4().hex[:12]}"

    async def make(n: int = 1, *, history_limit: int = 10_000) -> list[Store]:
        if backend == "memory":
            mem = MemoryStore("r0", history_limit=history_limit, seal=seal)
            opened.append(mem)
            return [mem] * n
        server: RedisServer = request.getfixturevalue("redis_server")
        stores: list[Store] = []
        for i in range(n):
            stores.append(
                await RedisStore.connect(
                    server.url, origin=f"r{i}", prefix=prefix, history_limit=history_limit, seal=seal
                )
            )
        opened.extend(stores)
        return stores

    yield make
    for s in opened:
        await s.close()


@pytest.fixture
async def store(make_stores: MakeStores) -> Store:
    return (await make_stores(1))[0]


def provider(pid: str, zone: str = "z1", capacity: float = 100.0) -> Provider:
    return Provider(
        id=pid,
        capabilities=["graph-analysis"],
        zone=zone,
        endpoints=[Endpoint(address="127.0.0.1", port=8080)],
        labels={"compliance": ["gdpr", "pci"]},
        capacity_rps=capacity,
        latency_p99_ms=10,
        cost_per_1k=0.5,
        region="eu-west",
    )


def contract(cid: str, shares: dict[str, float], state: ContractState = ContractState.ACTIVE) -> Contract:
    rps = sum(shares.values()) or 1.0
    allocation = Allocation(
        shares=[
            Share(provider_id=p, zone="z1", rps=r, weight=100, expected_p99_ms=12.0, cost_per_1k=0.5)
            for p, r in shares.items()
        ],
        rps=rps,
        expected_p99_ms=12.0,
        cost_per_1k=0.5,
    )
    return Contract(
        id=cid,
        owner="agent-1",
        request=ContractRequest(
            consumer="frontend", capability="graph-analysis", sla=Sla(p99_latency_ms=50, rps=rps)
        ),
        state=state,
        allocation=allocation if shares else None,
        created_at=1.0,
        updated_at=2.0,
        expires_at=3600.0,
    )


async def next_event(feed: Any) -> ChangeEvent:
    event: ChangeEvent = await asyncio.wait_for(anext(feed), 5.0)
    return event


# -- plain objects -----------------------------------------------------------------------------


async def test_zones_put_get_list_delete(store: Store) -> None:
    await store.put_zone(Zone(name="eu-west-1b", region="eu-west"))
    await store.put_zone(Zone(name="eu-west-1a", region="eu-west"))
    await store.put_zone(Zone(name="eu-west-1a", region="eu-central"))  # overwrite, not duplicate
    assert await store.list_zones() == [
        Zone(name="eu-west-1a", region="eu-central"),
        Zone(name="eu-west-1b", region="eu-west"),
    ]
    await store.delete_zone("eu-west-1b")
    await store.delete_zone("never-existed")
    assert await store.list_zones() == [Zone(name="eu-west-1a", region="eu-central")]


async def test_links_are_undirected(store: Store) -> None:
    await store.put_link(Link(a="z2", b="z1", latency_ms=5))
    await store.put_link(Link(a="z1", b="z2", latency_ms=7))  # the same link, new latency
    await store.put_link(Link(a="z1", b="z3", latency_ms=9))
    links = await store.list_links()
    assert [(lk.key, lk.latency_ms) for lk in links] == [(("z1", "z2"), 7), (("z1", "z3"), 9)]
    await store.delete_link("z2", "z1")
    assert [lk.key for lk in await store.list_links()] == [("z1", "z3")]


async def test_providers_put_get_list_delete(store: Store) -> None:
    assert await store.get_provider("p1") is None
    await store.put_provider(provider("p1"))
    await store.put_provider(provider("p0", capacity=5))
    got = await store.get_provider("p1")
    assert got == provider("p1")
    assert got is not None and got.labels["compliance"] == ["gdpr", "pci"]
    assert [p.id for p in await store.list_providers()] == ["p0", "p1"]
    # What a caller does to a returned object must not leak into the store.
    got.capacity_rps = 1
    assert (await store.get_provider("p1")) == provider("p1")
    await store.delete_provider("p1")
    assert await store.get_provider("p1") is None
    assert [p.id for p in await store.list_providers()] == ["p0"]


async def test_contract_commit_get_list(store: Store) -> None:
    assert await store.get_contract("c1") is None
    c1 = contract("c1", {"p1": 10})
    await store.commit_contract(c1, {"p1": 10}, {"p1": 100})
    await store.commit_contract(contract("c0", {}), {}, {})
    assert await store.get_contract("c1") == c1
    assert [c.id for c in await store.list_contracts()] == ["c0", "c1"]


# -- reservations ------------------------------------------------------------------------------


async def test_commit_reserves_and_rejects_oversubscription(store: Store) -> None:
    cap = {"p1": 100.0, "p2": 50.0}
    await store.commit_contract(contract("c1", {"p1": 60, "p2": 20}), {"p1": 60, "p2": 20}, cap)
    assert await store.reservations() == {"p1": {"c1": 60.0}, "p2": {"c1": 20.0}}

    feed = store.follow()
    with pytest.raises(CapacityConflict) as err:
        await store.commit_contract(contract("c2", {"p1": 10, "p2": 40}), {"p1": 10, "p2": 40}, cap)
    assert err.value.details["provider"] == "p2"
    assert "p2" in err.value.message
    # Nothing of c2 was stored: no contract, no partial reservation on p1, no change event.
    assert await store.get_contract("c2") is None
    assert await store.reservations() == {"p1": {"c1": 60.0}, "p2": {"c1": 20.0}}
    await store.put_zone(Zone(name="marker", region="r"))
    assert (await next_event(feed)).key == "marker"

    await store.commit_contract(contract("c2", {"p1": 40, "p2": 30}), {"p1": 40, "p2": 30}, cap)  # exact fit
    assert await store.reservations() == {"p1": {"c1": 60.0, "c2": 40.0}, "p2": {"c1": 20.0, "c2": 30.0}}


async def test_float_shares_that_fill_capacity_exactly_fit(store: Store) -> None:
    third = 100 / 3
    for i in range(3):
        await store.commit_contract(contract(f"c{i}", {"p": third}), {"p": third}, {"p": 100})
    with pytest.raises(CapacityConflict):
        await store.commit_contract(contract("c3", {"p": 0.001}), {"p": 0.001}, {"p": 100})


async def test_release_by_committing_empty_and_move(store: Store) -> None:
    cap = {"a": 10.0, "b": 10.0}
    await store.commit_contract(contract("c1", {"a": 10}), {"a": 10}, cap)
    with pytest.raises(CapacityConflict):
        await store.commit_contract(contract("c2", {"a": 1}), {"a": 1}, cap)
    # c1 moves to b: a is freed in the same step.
    await store.commit_contract(contract("c1", {"b": 10}), {"b": 10}, cap)
    assert await store.reservations() == {"b": {"c1": 10.0}}
    await store.commit_contract(contract("c2", {"a": 10}), {"a": 10}, cap)
    # Revoking releases everything the contract held.
    revoked = contract("c1", {}, ContractState.REVOKED)
    await store.commit_contract(revoked, {}, cap)
    assert await store.reservations() == {"a": {"c2": 10.0}}
    assert (await store.get_contract("c1")) == revoked


async def test_recommit_and_shrink_are_always_allowed(store: Store) -> None:
    await store.commit_contract(contract("c1", {"p": 80}), {"p": 80}, {"p": 100})
    # The operator lowered p's capacity below what is held: c1 can stay or shrink, not grow.
    await store.commit_contract(contract("c1", {"p": 80}), {"p": 80}, {"p": 50})
    await store.commit_contract(contract("c1", {"p": 60}), {"p": 60}, {"p": 50})
    with pytest.raises(CapacityConflict):
        await store.commit_contract(contract("c1", {"p": 70}), {"p": 70}, {"p": 50})
    assert await store.reservations() == {"p": {"c1": 60.0}}


async def test_provider_without_capacity_cannot_be_reserved(store: Store) -> None:
    with pytest.raises(CapacityConflict) as err:
        await store.commit_contract(contract("c1", {"gone": 1}), {"gone": 1}, {})
    assert err.value.details["provider"] == "gone"
    with pytest.raises(ValidationFailed):
        await store.commit_contract(contract("c1", {"p": 1}), {"p": -1}, {"p": 10})
    assert await store.get_contract("c1") is None


async def test_concurrent_commits_never_exceed_capacity(make_stores: MakeStores) -> None:
    replicas = await make_stores(2)
    cap = {"scarce": 100.0, "other": 1000.0}

    async def propose(i: int) -> bool:
        shares = {"scarce": 7.0, "other": 1.0}
        try:
            await replicas[i % 2].commit_contract(contract(f"c{i:02d}", shares), shares, cap)
        except CapacityConflict:
            return False
        return True

    admitted = await asyncio.gather(*(propose(i) for i in range(50)))
    held = await replicas[0].reservations()
    assert sum(held["scarce"].values()) <= 100.0
    # 14 x 7 = 98: exactly as many fit as capacity allows, and every admitted one holds its share.
    assert sum(admitted) == 14
    assert sorted(held["scarce"]) == sorted(f"c{i:02d}" for i, ok in enumerate(admitted) if ok)
    assert sorted(c.id for c in await replicas[1].list_contracts()) == sorted(held["scarce"])
    assert sum(held["other"].values()) == 14.0


# -- audit -----------------------------------------------------------------------------------------


async def test_concurrent_audit_appends_form_one_chain(make_stores: MakeStores) -> None:
    replicas = await make_stores(2)

    async def append(i: int) -> dict[str, Any]:
        entry = {"at": 1.0 + i, "actor": f"agent-{i}", "kind": "proposal", "subject": f"c{i}", "details": {}}
        return await replicas[i % 2].append_audit(entry)

    returned = await asyncio.gather(*(append(i) for i in range(20)))
    chain = await replicas[0].list_audit()
    assert [e["seq"] for e in chain] == list(range(1, 21))
    assert chain[0]["prev_hash"] == "0" * 64
    for prev, cur in itertools.pairwise(chain):
        assert cur["prev_hash"] == prev["hash"]
    assert all(e["hash"] == entry_hash(e) for e in chain)
    assert sorted(e["actor"] for e in chain) == sorted(f"agent-{i}" for i in range(20))
    assert sorted(returned, key=lambda e: e["seq"]) == chain

    assert [e["seq"] for e in await replicas[1].list_audit(since_seq=15)] == [16, 17, 18, 19, 20]
    assert [e["seq"] for e in await replicas[1].list_audit(since_seq=3, limit=2)] == [4, 5]


# -- change feed -----------------------------------------------------------------------------------


async def test_follow_sees_events_after_it_started(store: Store) -> None:
    await store.publish(ChangeEvent(kind="policy", op="put", key="before"))
    await asyncio.sleep(0.05)
    feed = store.follow()
    # Published before the first read of the feed, but after follow(): must be seen.
    await store.publish(ChangeEvent(kind="policy", op="put", key="pii-eu-only", data={"v": 2}))
    await store.put_zone(Zone(name="z9", region="r9"))
    await store.commit_contract(contract("c1", {"p": 1}), {"p": 1}, {"p": 10})
    await store.delete_zone("z9")

    got = [await next_event(feed) for _ in range(4)]
    assert [(e.kind, e.op, e.key) for e in got] == [
        ("policy", "put", "pii-eu-only"),
        ("zone", "put", "z9"),
        ("contract", "put", "c1"),
        ("zone", "delete", "z9"),
    ]
    assert got[0].data == {"v": 2}
    assert got[1].data == {"name": "z9", "region": "r9"}
    assert got[2].data["id"] == "c1"
    assert all(e.origin == "r0" for e in got)
    assert len({e.seq for e in got}) == 4 and all(e.seq for e in got)


async def test_every_follower_gets_every_event(store: Store) -> None:
    feeds = [store.follow() for _ in range(3)]
    await store.put_provider(provider("p1"))
    for feed in feeds:
        event = await next_event(feed)
        assert (event.kind, event.key) == ("provider", "p1")
        assert Provider.model_validate(event.data) == provider("p1")


# -- history ---------------------------------------------------------------------------------------


async def test_history_append_list_bounded(make_stores: MakeStores) -> None:
    (store,) = await make_stores(1, history_limit=5)
    assert await store.list_history() == []
    for version in range(1, 13):
        await store.append_history({"version": version, "cause": f"change {version}", "graph": {"n": [1, 2]}})
    history = await store.list_history()
    assert [h["version"] for h in history] == [8, 9, 10, 11, 12]
    assert history[-1] == {"version": 12, "cause": "change 12", "graph": {"n": [1, 2]}}


async def test_replicas_interleaving_history_appends_read_back_every_snapshot(
    make_stores: MakeStores,
) -> None:
    """Two replicas appending mesh snapshots that share (equal) items at once: one version
    sequence, and each version reads back as exactly the snapshot that got it."""
    a, b = await make_stores(2)
    zones = [{"name": f"z{i}", "region": "eu"} for i in range(3)]
    rows = [{"id": f"c{i:02d}", "state": "active", "sla": {"p99_ms": 20.0 + i}} for i in range(20)]

    def snap(origin: str, step: int) -> dict[str, Any]:
        changed = {**rows[step], "state": "degraded", "by": origin}
        return {
            "version": 0,
            "at": 1000.0 + step,
            "cause": f"{origin} step {step}",
            "detail": {"contract": changed["id"]},
            "zones": zones,
            "consumers": {f"consumer-{i:03d}": "z1" for i in range(30)},
            "contracts": [*rows[:step], changed, *rows[step + 1 :]],
        }

    wanted = [(s, snap(s_name, i)) for i in range(12) for s_name, s in (("a", a), ("b", b))]
    versions = await asyncio.gather(*(s.append_history(snapshot) for s, snapshot in wanted))
    assert sorted(versions) == list(range(1, len(wanted) + 1))
    expected = sorted(({**snapshot, "version": v} for (_s, snapshot), v in zip(wanted, versions, strict=True)),
                      key=lambda h: h["version"])  # fmt: skip
    assert await a.list_history() == expected
    assert await b.list_history() == expected
