"""MemoryStore specifics (the shared behaviour suite is tests/integration/store_contract.py) and the
pure helpers both backends use. No network."""

from __future__ import annotations

import asyncio
import gc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshctl.errors import CapacityConflict
from meshctl.model import Contract, ContractRequest, ContractState, Sla, Zone
from meshctl.store.base import ChangeEvent
from meshctl.store.memory import MemoryStore, exceeds_capacity, link_key, normalise_reservation
from meshctl.store.redis_feed import decode_event, encode_event


def _contract(cid: str) -> Contract:
    return Contract(
        id=cid,
        owner="agent",
        request=ContractRequest(consumer="svc", capability="cap", sla=Sla(p99_latency_ms=10, rps=1)),
        state=ContractState.ACTIVE,
        created_at=0,
        updated_at=0,
        expires_at=60,
    )


async def test_follower_sees_events_published_before_its_first_read() -> None:
    store = MemoryStore("me")
    feed = store.follow()
    await store.publish(ChangeEvent(kind="policy", op="put", key="p", origin="other"))
    await store.put_zone(Zone(name="z", region="r"))
    first, second = await anext(feed), await anext(feed)
    assert (first.key, first.origin, first.seq) == ("p", "other", "1")
    assert (second.key, second.origin, second.seq) == ("z", "me", "2")


async def test_aclose_and_close_end_followers() -> None:
    store = MemoryStore()
    closed, open_ = store.follow(), store.follow()
    await closed.aclose()
    await store.publish(ChangeEvent(kind="policy", op="put", key="x"))
    with pytest.raises(StopAsyncIteration):
        await anext(closed)
    assert (await anext(open_)).key == "x"
    waiter = asyncio.create_task(anext(open_, None))
    await asyncio.sleep(0)
    await store.close()
    assert await asyncio.wait_for(waiter, 1) is None


async def test_dropped_follower_stops_collecting() -> None:
    store = MemoryStore()
    store.follow()  # never read, never closed
    gc.collect()
    assert len(store._followers) == 0
    await store.publish(ChangeEvent(kind="policy", op="put", key="x"))


async def test_published_event_data_is_copied() -> None:
    store = MemoryStore()
    feed = store.follow()
    data = {"rules": ["a"]}
    await store.publish(ChangeEvent(kind="policy", op="put", key="x", data=data))
    data["rules"].append("b")
    assert (await anext(feed)).data == {"rules": ["a"]}


async def test_audit_windows() -> None:
    store = MemoryStore()
    for i in range(5):
        await store.append_audit({"actor": "system", "subject": f"c{i}", "kind": "admission", "at": 1.0})
    assert [e["seq"] for e in await store.list_audit(since_seq=5)] == []
    assert [e["seq"] for e in await store.list_audit(since_seq=0, limit=2)] == [1, 2]
    assert await store.list_audit(limit=0) == []
    listed = await store.list_audit()
    listed[0]["actor"] = "mallory"
    assert (await store.list_audit())[0]["actor"] == "system"


def test_helpers() -> None:
    assert link_key("b", "a") == link_key("a", "b") == "a|b"
    # Zero shares hold nothing; a provider missing from the capacity map has none.
    assert normalise_reservation("c", {"a": 0, "b": 2}, {}) == [("b", 2.0, 0.0)]
    assert normalise_reservation("c", {"a": 1}, {"a": float("inf")})[0][2] == 1e300
    assert not exceeds_capacity(held_by_others=90, own_now=0, requested=10, capacity=100)
    assert exceeds_capacity(held_by_others=90, own_now=0, requested=10.001, capacity=100)
    assert not exceeds_capacity(held_by_others=200, own_now=10, requested=10, capacity=100)


def test_event_codec_round_trip() -> None:
    event = ChangeEvent(kind="contract", op="put", key="c1", data={"id": "c1", "ünï": [1.5]})
    fields = encode_event(event, origin="r7")
    assert decode_event("5-1", fields) == ChangeEvent(
        kind="contract", op="put", key="c1", origin="r7", seq="5-1", data={"id": "c1", "ünï": [1.5]}
    )
    assert decode_event("6-0", {"kind": "zone", "data": "not json"}).data == {}


# A commit is (contract index, {provider index: rps}); capacities are fixed per example.
_commits = st.lists(
    st.tuples(
        st.integers(0, 5),
        st.dictionaries(st.integers(0, 2), st.sampled_from([0.0, 0.5, 1.0, 2.5, 5.0, 10.0]), max_size=3),
    ),
    max_size=25,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(capacities=st.lists(st.sampled_from([1.0, 5.0, 10.0, 12.5]), min_size=3, max_size=3), commits=_commits)
def test_reservations_match_a_plain_model_and_never_oversubscribe(
    capacities: list[float], commits: list[tuple[int, dict[int, float]]]
) -> None:
    async def run() -> None:
        store = MemoryStore()
        cap = {f"p{i}": c for i, c in enumerate(capacities)}
        model: dict[str, dict[str, float]] = {}  # contract -> provider -> rps
        for ci, shares in commits:
            cid = f"c{ci}"
            wanted = {f"p{pi}": rps for pi, rps in shares.items()}
            held = {p: sum(r.get(p, 0.0) for c, r in model.items() if c != cid) for p in cap}
            own = model.get(cid, {})
            fits = all(
                rps <= own.get(p, 0.0) or held[p] + rps <= cap[p] + 1e-6 for p, rps in wanted.items() if rps
            )
            try:
                await store.commit_contract(_contract(cid), wanted, cap)
            except CapacityConflict:
                assert not fits
                continue
            assert fits
            model[cid] = {p: r for p, r in wanted.items() if r > 0}
        expected: dict[str, dict[str, float]] = {}
        for cid, held_by_cid in model.items():
            for p, rps in held_by_cid.items():
                expected.setdefault(p, {})[cid] = rps
        assert await store.reservations() == expected

    asyncio.run(run())
