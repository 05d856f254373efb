"""Topology history: the snapshot in force at an instant, diffs with causes, provider lifetimes,
bounded retention — across a provider whose lease lived 5 seconds (fake clock)."""

from __future__ import annotations

import pytest
from history_helpers import ephemeral_story, plane_on_fake_clock, spec

from meshctl.errors import NotFound
from meshctl.topology import history


def _ids(items: list[dict]) -> list[str]:
    return [i["id"] for i in items]


def _shares(contract: dict) -> dict[str, int]:
    return {s["provider_id"]: s["weight"] for s in contract["allocation"]["shares"]}


async def test_point_in_time_sees_the_provider_only_while_its_lease_ran() -> None:
    s = await ephemeral_story()
    snaps = await s.plane.store.list_history()

    before = history.at_instant(snaps, 1001.5)
    assert _ids(before["providers"]) == ["p-static"]
    assert before["contracts"] == []

    during = history.at_instant(snaps, 1005.0)  # lease still running, contract admitted at 1003
    assert during["version"] == s.versions["admitted"]
    assert _ids(during["providers"]) == ["p-eph", "p-static"]
    eph = next(p for p in during["providers"] if p["id"] == "p-eph")
    assert eph["expires_at"] == 1007.0 and eph["ttl_s"] == 5.0
    (contract,) = during["contracts"]
    assert contract["state"] == "active"
    assert set(_shares(contract)) == {"p-eph", "p-static"}

    after = history.at_instant(snaps, 1009.0)
    assert after["version"] == s.versions["resolved"]
    assert _ids(after["providers"]) == ["p-static"]
    (contract,) = after["contracts"]
    assert contract["state"] == "degraded"
    assert _shares(contract) == {"p-static": 100}


async def test_instant_before_the_first_snapshot_is_not_found() -> None:
    s = await ephemeral_story()
    snaps = await s.plane.store.list_history()
    with pytest.raises(NotFound) as e:
        history.at_instant(snaps, 999.0)
    assert e.value.field == "at"
    assert history.at_instant(snaps, 1000.0)["version"] == 1  # exactly at the first one counts


async def test_diff_names_the_vanished_provider_the_moved_shares_and_the_causes() -> None:
    s = await ephemeral_story()
    snaps = await s.plane.store.list_history()
    d = history.diff(snaps, s.versions["admitted"], s.versions["resolved"])

    assert d["providers"] == {"appeared": [], "vanished": ["p-eph"], "changed": []}
    (change,) = d["contracts"]["changed"]
    assert change["id"] == s.contract_id
    assert change["state"] == {"from": "active", "to": "degraded"}
    moved = {m["provider_id"]: m for m in change["moved"]}
    assert moved["p-eph"]["from"]["rps"] == 50 and moved["p-eph"]["to"] is None
    assert moved["p-static"]["from"]["rps"] == 100 and moved["p-static"]["to"]["weight"] == 100
    assert [c["cause"] for c in d["causes"]] == ["provider lease lapsed", "contract degraded"]
    assert d["causes"][0]["detail"] == {"provider": "p-eph"}
    assert d["zones"] == d["links"] == {"appeared": [], "vanished": [], "changed": []}

    # Over the whole story the provider came and went: it is in neither end of the diff.
    whole = history.diff(snaps, s.versions["topology"], s.versions["resolved"])
    assert whole["providers"]["appeared"] == ["p-static"]
    assert whole["contracts"]["appeared"] == [s.contract_id]
    assert "provider lease lapsed" in [c["cause"] for c in whole["causes"]]
    assert len(whole["causes"]) == s.versions["resolved"] - s.versions["topology"]


async def test_diff_reports_link_latency_and_provider_field_changes() -> None:
    s = await ephemeral_story()
    plane = s.plane
    v0 = plane.history_version
    from meshctl.model import Link

    s.clock.now = 1010.0
    await plane.put_link(Link(a="eu-b", b="eu-a", latency_ms=7.5))
    changed = spec("p-static", "eu-a").model_copy(update={"capacity_rps": 250.0})
    await plane.put_provider(changed)
    d = history.diff(await plane.store.list_history(), v0, plane.history_version)
    assert d["links"]["changed"] == [{"id": "eu-a|eu-b", "latency_ms": {"from": 2.0, "to": 7.5}}]
    (prov,) = d["providers"]["changed"]
    assert prov == {"id": "p-static", "fields": {"capacity_rps": {"from": 100.0, "to": 250.0}}}
    # More capacity: the degraded contract is met again, on the same provider.
    (c,) = d["contracts"]["changed"]
    assert c["state"] == {"from": "degraded", "to": "active"}
    assert {m["provider_id"]: m["to"]["rps"] for m in c["moved"]} == {"p-static": 150.0}


async def test_diff_of_unknown_version_is_not_found() -> None:
    s = await ephemeral_story()
    with pytest.raises(NotFound) as e:
        history.diff(await s.plane.store.list_history(), 1, 999)
    assert e.value.field == "version"


async def test_provider_lifetimes_keep_the_gone_provider() -> None:
    s = await ephemeral_story()
    rows = {r["id"]: r for r in history.provider_lifetimes(await s.plane.store.list_history())}
    eph = rows["p-eph"]
    assert (eph["first_seen"], eph["last_seen"], eph["gone_at"]) == (1002.0, 1003.0, 1008.0)
    assert eph["gone_cause"] == "provider lease lapsed" and eph["present"] is False
    assert eph["lease_expires_at"] == 1007.0 and eph["ttl_s"] == 5.0
    assert rows["p-static"]["present"] is True and rows["p-static"]["gone_at"] is None


async def test_a_provider_that_comes_back_has_one_row_per_stay() -> None:
    plane, clock = await plane_on_fake_clock()
    for t, action in ((1001, "put"), (1002, "del"), (1003, "put")):
        clock.now = t
        if action == "put":
            await plane.put_provider(spec("p-flap", "eu-a", ttl_s=30))
        else:
            await plane.delete_provider("p-flap")
    rows = history.provider_lifetimes(await plane.store.list_history())
    assert [(r["first_seen"], r["gone_at"], r["gone_cause"]) for r in rows] == [
        (1001, 1002, "provider deregistered"),
        (1003, None, None),
    ]


async def test_retention_is_bounded_and_queries_see_only_what_is_kept() -> None:
    plane, clock = await plane_on_fake_clock(history_limit=3)
    for i in range(6):
        clock.now = 1001 + i
        await plane.put_provider(spec(f"p{i}", "eu-a"))
    snaps = await plane.store.list_history()
    assert [s["version"] for s in snaps] == [5, 6, 7]
    with pytest.raises(NotFound):
        history.at_instant(snaps, 1002.0)
    assert _ids(history.at_instant(snaps, 1004.5)["providers"]) == ["p0", "p1", "p2", "p3"]


def test_window_and_summary() -> None:
    snaps = [
        {"version": v, "at": float(v), "cause": f"c{v}", "providers": [{}] * v, "contracts": []}
        for v in range(1, 6)
    ]
    assert [s["version"] for s in history.window(snaps, since=2, until=4)] == [2, 3]
    assert history.summary(snaps[2]) == {
        "version": 3,
        "at": 3.0,
        "cause": "c3",
        "detail": {},
        "providers": 3,
        "contracts": 0,
    }
