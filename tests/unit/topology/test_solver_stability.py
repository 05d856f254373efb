"""Re-solving a live contract moves traffic only when it must."""

from __future__ import annotations

from topo_helpers import LINKS, ZONES, graph, provider, request

from meshctl.model import Allocation, Link
from meshctl.topology import CapabilityGraph, solve


def _mesh() -> CapabilityGraph:
    return graph(
        ZONES,
        {**LINKS, ("a1", "b1"): 20},
        provider("p1", "a1", rps=40, price=1.0),
        provider("p2", "a2", rps=40, price=1.0),
        provider("p3", "a2", rps=100, price=2.0),
        provider("p4", "b1", rps=100, price=2.0, p99=5),
        provider("p5", "b1", rps=100, price=3.0),
    )


def _alloc(
    g: CapabilityGraph,
    residual: dict[str, float] | None = None,
    current: Allocation | None = None,
    **req: object,
) -> Allocation:
    res = solve(request(100, 40, **req), g, residual or {}, consumer_zone="a1", now=0.0, current=current)  # type: ignore[arg-type]
    assert res.allocation is not None, res.reasons()
    return res.allocation


def _split(alloc: Allocation) -> dict[str, float]:
    return {s.provider_id: round(s.rps, 6) for s in alloc.shares}


def test_unrelated_change_keeps_the_allocation_identical() -> None:
    g = _mesh()
    first = _alloc(g)
    assert _split(first) == {"p1": 40, "p2": 40, "p3": 20}
    first = first.model_copy(update={"config_version": "v7", "acked_by": ["n1"]})
    # A cheaper provider appears, another capability changes, residual shifts elsewhere.
    g.set_provider(provider("cheaper", "a1", rps=1000, price=0.1))
    g.set_provider(provider("e1", "a2", cap="embed"))
    again = _alloc(g, {"p5": 10.0}, current=first)
    assert again is first  # same object: nothing to push


def test_current_kept_when_still_feasible_even_if_no_longer_cheapest() -> None:
    g = _mesh()
    first = _alloc(g)
    g.set_provider(provider("p3", "a2", rps=100, price=2.5))  # p3 got dearer, still within no bid
    again = _alloc(g, current=first)
    assert again.shares is not first.shares
    assert [(s.provider_id, s.rps, s.weight) for s in again.shares] == [
        (s.provider_id, s.rps, s.weight) for s in first.shares
    ]
    assert {s.provider_id: s.cost_per_1k for s in again.shares}["p3"] == 2.5  # facts refreshed


def test_vanished_provider_only_its_share_moves() -> None:
    g = _mesh()
    first = _alloc(g)
    g.remove_provider("p2")
    again = _alloc(g, current=first)
    before, after = _split(first), _split(again)
    assert "p2" not in after
    assert after["p1"] == before["p1"] and sum(after.values()) == 100
    moved = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    assert sum(moved.values()) == before["p2"]  # exactly the vanished share was re-placed


def test_shrunk_residual_moves_only_the_overflow() -> None:
    g = _mesh()
    first = _alloc(g)
    # Another contract took most of p3: the 20 rps it carried for us no longer fit.
    again = _alloc(g, {"p3": 5.0}, current=first)
    after = _split(again)
    assert after["p1"] == 40 and after["p2"] == 40 and after["p3"] == 5
    assert after["p4"] == 15  # next cheapest, fastest in b1


def test_kept_shares_beat_a_cheaper_newcomer_when_something_must_move() -> None:
    g = _mesh()
    first = _alloc(g)
    g.set_provider(provider("cheap", "b1", rps=1000, price=0.5))
    g.remove_provider("p3")
    after = _split(_alloc(g, current=first))
    assert after == {"p1": 40, "p2": 40, "cheap": 20}


def test_link_slowdown_moves_shares_that_break_latency() -> None:
    g = _mesh()
    first = _alloc(g)
    g.set_link(Link(a="a1", b="a2", latency_ms=35))  # a2 now 45 ms away incl. provider p99
    g.remove_link("a2", "b1")
    after = _alloc(g, current=first)
    assert all(s.zone != "a2" for s in after.shares)
    assert _split(after)["p1"] == 40


def test_kept_shares_respect_a_new_spread_requirement() -> None:
    g = _mesh()
    first = _alloc(g)  # a1: 40, a2: 60
    after = _alloc(g, current=first, availability=0.9999)  # now at most 33.3 per zone
    per_zone: dict[str, float] = {}
    for s in after.shares:
        per_zone[s.zone] = per_zone.get(s.zone, 0) + s.rps
    assert set(per_zone) == {"a1", "a2", "b1"}
    assert max(per_zone.values()) <= 100 / 3 + 1e-6
    assert _split(after)["p1"] == round(100 / 3, 6)
