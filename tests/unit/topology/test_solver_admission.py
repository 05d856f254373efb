"""The solver admits what fits: who is a candidate, how rps is split, spread, budget, failover."""

from __future__ import annotations

import pytest
from topo_helpers import LINKS, ZONES, graph, provider, request

from meshctl.model import Allocation, Provider
from meshctl.topology import SolveResult, solve
from meshctl.topology.allocation import largest_remainder


def _solve(g, req, residual=None, **kw) -> SolveResult:  # type: ignore[no-untyped-def]
    kw.setdefault("consumer_zone", "a1")
    kw.setdefault("now", 1000.0)
    return solve(req, g, residual or {}, **kw)


def _admitted(res: SolveResult) -> Allocation:
    assert res.allocation is not None, res.reasons()
    assert res.counter_offer is None and res.binding == []
    return res.allocation


def _split(alloc: Allocation) -> dict[str, float]:
    return {s.provider_id: round(s.rps, 6) for s in alloc.shares}


def test_every_candidate_gets_a_verdict_with_the_reason_it_was_dropped() -> None:
    g = graph(
        ZONES,
        LINKS,
        provider("ok", "a1"),
        provider("old", "a1", expires_at=999.0),
        provider("us", "b1", p99=1),
        provider("nogdpr", "a2", labels={"compliance": ["pci"]}),
        provider("banned", "a2", labels={"compliance": ["gdpr", "pci"]}),
        provider("slow", "a2", p99=50, labels={"compliance": "gdpr"}),
        provider("full", "a2", labels={"compliance": ["gdpr"]}),
        provider("denied", "a1", labels={"compliance": ["gdpr"], "tier": "x"}),
        provider("other-cap", "a1", cap="embed"),
    )
    g.set_zone(g.zone("a1").model_copy(update={"name": "lonely"}))  # type: ignore[union-attr]
    g.set_provider(provider("island", "lonely", labels={"compliance": ["gdpr"]}))
    req = request(
        10, 40, regions=["eu"], required_labels={"compliance": "gdpr"}, excluded_providers=["banned"]
    )

    def policy(p: Provider) -> str | None:
        return "no-tier-x" if p.labels.get("tier") == "x" else None

    res = _solve(g, req, {"full": 0.0}, allowed=policy)
    reasons = {c.provider_id: c.reason for c in res.candidates}
    assert reasons == {
        "ok": "constraints.required_labels.compliance",
        "old": "expired",
        "us": "constraints.regions",
        "nogdpr": "constraints.required_labels.compliance",
        "banned": "constraints.excluded_providers",
        "slow": "latency: 52.0 ms > 40.0 ms",
        "full": "no residual capacity",
        "denied": "policy:no-tier-x",
        "island": "unreachable",
    }
    assert res.allocation is None
    assert [c.provider_id for c in res.candidates] == sorted(reasons)  # other capabilities never appear
    slow = next(c for c in res.candidates if c.provider_id == "slow")
    assert slow.expected_p99_ms == 52.0 and not slow.feasible


def test_zone_constraint_and_list_or_scalar_labels() -> None:
    g = graph(
        ZONES,
        LINKS,
        provider("p1", "a1", labels={"accel": "h100"}),
        provider("p2", "a2", labels={"accel": ["a100", "h100"]}),
        provider("p3", "a2", labels={"accel": "a100"}),
    )
    res = _solve(g, request(10, 40, zones=["a2"], required_labels={"accel": "h100"}))
    assert {c.provider_id: c.reason for c in res.candidates} == {
        "p1": "constraints.zones",
        "p2": None,
        "p3": "constraints.required_labels.accel",
    }
    assert _split(_admitted(res)) == {"p2": 10}


def test_cheapest_first_then_fastest_on_price_ties() -> None:
    g = graph(
        ZONES,
        LINKS,
        provider("cheap", "a2", rps=30, price=0.5),
        provider("near", "a1", rps=50, price=1.0),
        provider("far", "a2", rps=50, price=1.0),
        provider("dear", "a1", rps=500, price=3.0),
    )
    alloc = _admitted(_solve(g, request(100, 40)))
    assert _split(alloc) == {"cheap": 30, "near": 50, "far": 20}
    assert [s.weight for s in alloc.shares] == [30, 20, 50]  # sorted by provider id: cheap, far, near
    assert alloc.rps == 100
    assert alloc.expected_p99_ms == 12.0  # a2 is 2 ms away + 10 ms provider p99
    assert alloc.cost_per_1k == pytest.approx((30 * 0.5 + 70 * 1.0) / 100)
    by_id = {s.provider_id: s for s in alloc.shares}
    assert by_id["near"].expected_p99_ms == 10.5 and by_id["cheap"].cost_per_1k == 0.5


def test_residual_capacity_limits_each_share() -> None:
    g = graph(ZONES, LINKS, provider("p1", "a1", rps=100, price=1), provider("p2", "a2", rps=100, price=2))
    alloc = _admitted(_solve(g, request(100, 40), {"p1": 25.0}))
    assert _split(alloc) == {"p1": 25, "p2": 75}
    assert alloc.reservation == {"p1": 25, "p2": 75}


@pytest.mark.parametrize(
    ("availability", "zones"), [(None, 1), (0.95, 1), (0.99, 2), (0.999, 2), (0.9999, 3)]
)
def test_availability_spreads_over_zones(availability: float | None, zones: int) -> None:
    g = graph(
        ZONES,
        {**LINKS, ("a1", "b1"): 20},
        provider("a1-cheap", "a1", rps=1000, price=0.1),
        provider("a2-mid", "a2", rps=1000, price=0.2),
        provider("b1-dear", "b1", rps=1000, price=0.3),
    )
    alloc = _admitted(_solve(g, request(90, 40, availability=availability)))
    per_zone: dict[str, float] = {}
    for s in alloc.shares:
        per_zone[s.zone] = per_zone.get(s.zone, 0) + s.rps
    assert len(per_zone) == zones
    assert max(per_zone.values()) <= 90 / zones + 1e-6
    assert sum(per_zone.values()) == pytest.approx(90)
    assert sum(s.weight for s in alloc.shares) == 100


def test_spread_caps_zone_even_when_one_zone_has_several_providers() -> None:
    g = graph(
        ZONES,
        LINKS,
        provider("x", "a1", rps=40, price=0.1),
        provider("y", "a1", rps=40, price=0.2),
        provider("z", "a2", rps=100, price=0.9),
    )
    alloc = _admitted(_solve(g, request(100, 40, availability=0.999)))
    assert _split(alloc) == {"x": 40, "y": 10, "z": 50}


def test_budget_caps_the_blended_price() -> None:
    g = graph(ZONES, LINKS, provider("p1", "a1", rps=50, price=1.0), provider("p2", "a2", rps=100, price=3.0))
    alloc = _admitted(_solve(g, request(100, 40, bid=2.0)))  # blend is exactly 2.0
    assert alloc.cost_per_1k == pytest.approx(2.0)
    res = _solve(g, request(100, 40, bid=1.99))
    assert res.allocation is None and res.counter_offer is not None


def test_failover_prefers_other_zones_then_lowest_p99_and_holds_nothing() -> None:
    g = graph(
        ZONES,
        {**LINKS, ("a1", "b1"): 20},
        provider("primary", "a1", rps=500, price=0.1),
        provider("same-zone", "a1", rps=500, price=0.5, p99=1),
        provider("a2-fast", "a2", rps=500, price=0.9, p99=3),
        provider("a2-slow", "a2", rps=500, price=0.2, p99=9),
        provider("b1", "b1", rps=500, price=0.9, p99=5),
    )
    alloc = _admitted(_solve(g, request(100, 40)))
    assert _split(alloc) == {"primary": 100}
    assert [(f.provider_id, f.priority, f.rps, f.weight) for f in alloc.failover] == [
        ("a2-fast", 1, 0.0, 0),
        ("b1", 1, 0.0, 0),  # a third zone beats a2-slow and the primary's own zone
    ]
    assert alloc.reservation == {"primary": 100}
    assert alloc.failover[0].expected_p99_ms == 5.0


def test_failover_falls_back_to_the_primary_zone_when_alone() -> None:
    g = graph(ZONES, LINKS, provider("p1", "a1", price=0.1), provider("p2", "a1", price=0.5))
    alloc = _admitted(_solve(g, request(50, 40)))
    assert [f.provider_id for f in alloc.failover] == ["p2"]


def test_weights_are_integers_summing_to_100_by_largest_remainder() -> None:
    assert largest_remainder([1, 1, 1]) == [34, 33, 33]
    assert largest_remainder([33.5, 33.4, 33.1]) == [34, 33, 33]
    assert largest_remainder([999, 0.5, 0.5]) == [98, 1, 1]  # every reserving share gets traffic
    assert largest_remainder([]) == []


def test_expired_lease_is_not_a_candidate_but_a_live_one_is() -> None:
    g = graph(ZONES, LINKS, provider("p1", "a1", expires_at=1000.5), provider("p2", "a1", expires_at=999.0))
    alloc = _admitted(_solve(g, request(10, 40), now=1000.0))
    assert _split(alloc) == {"p1": 10}
