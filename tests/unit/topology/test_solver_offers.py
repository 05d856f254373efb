"""When a request cannot be met: the counter-offer, and which constraints it names as binding."""

from __future__ import annotations

import pytest
from topo_helpers import LINKS, ZONES, graph, provider, request

from meshctl.model import ContractRequest, CounterOffer, Provider
from meshctl.topology import CapabilityGraph, SolveResult, solve


def _solve(
    g: CapabilityGraph, req: ContractRequest, residual: dict[str, float] | None = None, **kw: object
) -> SolveResult:
    res = solve(req, g, residual or {}, consumer_zone="a1", now=0.0, **kw)  # type: ignore[arg-type]
    assert res.allocation is None
    return res


def _binding(res: SolveResult) -> dict[str, float | None]:
    assert res.counter_offer is None or res.counter_offer.binding == res.binding
    return {b.constraint: b.best for b in res.binding}


def _accept(g: CapabilityGraph, req: ContractRequest, offer: CounterOffer) -> None:
    """Re-proposing exactly the offered terms is admitted, with the allocation the offer showed."""
    again = req.model_copy(update={"sla": offer.sla, "max_cost_per_1k": offer.max_cost_per_1k})
    res = solve(again, g, {}, consumer_zone="a1", now=0.0)
    assert res.allocation is not None, res.reasons()
    assert offer.allocation is not None
    assert res.allocation.reservation == pytest.approx(offer.allocation.reservation)


def test_capacity_binds_offer_lowers_rps() -> None:
    g = graph(ZONES, LINKS, provider("p1", "a1", rps=60), provider("p2", "a2", rps=30))
    req = request(200, 40)
    res = _solve(g, req)
    assert _binding(res) == {"sla.rps": 90}
    offer = res.counter_offer
    assert offer is not None and offer.sla.rps == 90 and offer.sla.p99_latency_ms == 40
    _accept(g, req, offer)


def test_price_binds_offer_raises_price_only() -> None:
    g = graph(ZONES, LINKS, provider("p1", "a1", rps=50, price=1.0), provider("p2", "a2", rps=100, price=4.0))
    req = request(100, 40, bid=2.0)
    res = _solve(g, req)
    best = _binding(res)
    assert best["max_cost_per_1k"] == 2.5  # 50 @ 1.0 + 50 @ 4.0
    assert best["sla.rps"] == 75  # 50 @ 1.0 + 25 @ 4.0 averages exactly the bid
    assert "sla.p99_latency_ms" not in best
    offer = res.counter_offer
    assert offer is not None
    assert offer.sla == req.sla and offer.max_cost_per_1k == 2.5
    _accept(g, req, offer)


def test_latency_binds_offer_relaxes_p99_to_the_lowest_that_fits() -> None:
    g = graph(
        ZONES,
        LINKS,
        provider("near", "a1", rps=50, p99=5),
        provider("far", "b1", rps=100, p99=5),  # 82 + 5 = 87 ms away
        provider("farther", "b1", rps=100, p99=30),
    )
    req = request(100, 40)
    res = _solve(g, req)
    assert _binding(res) == {"sla.rps": 50, "sla.p99_latency_ms": 87.0}
    offer = res.counter_offer
    assert offer is not None and offer.sla.p99_latency_ms == 87.0 and offer.sla.rps == 100
    _accept(g, req, offer)


def test_latency_and_price_both_binding_offer_keeps_sla_and_bid_with_fewer_rps() -> None:
    g = graph(
        ZONES,
        LINKS,
        provider("near", "a1", rps=50, price=1.0),
        provider("far-dear", "b1", rps=100, price=9.0),
    )
    req = request(100, 40, bid=2.0)
    res = _solve(g, req)
    best = _binding(res)
    assert best["sla.rps"] == 50
    assert best["sla.p99_latency_ms"] == 92.0
    assert best["max_cost_per_1k"] == 5.0  # the full rps at 92 ms blends 1.0 and 9.0
    offer = res.counter_offer
    assert offer is not None and offer.sla.rps == 50 and offer.max_cost_per_1k == 2.0
    _accept(g, req, offer)


def test_zone_spread_binds_offer_lowers_availability_tier() -> None:
    g = graph(ZONES, LINKS, provider("x", "a1", rps=100), provider("y", "a2", rps=100))
    req = request(100, 40, availability=0.9999)
    res = _solve(g, req)
    best = _binding(res)
    assert best["sla.availability"] == 0.999
    assert best["sla.rps"] == 0  # nothing fits over three zones
    offer = res.counter_offer
    assert offer is not None and offer.sla.availability == 0.999 and offer.sla.rps == 100
    _accept(g, req, offer)


def test_constraints_and_policies_that_exclude_useful_providers_are_named() -> None:
    g = graph(
        ZONES,
        LINKS,
        provider("ok", "a1", rps=10, labels={"compliance": "gdpr"}),
        provider("no-label", "a1", rps=100),
        provider("denied", "a2", rps=100, labels={"compliance": "gdpr"}),
        provider("us", "b1", rps=100, labels={"compliance": "gdpr"}),
        provider("excluded", "a1", rps=100, labels={"compliance": "gdpr"}),
    )
    req = request(
        50, 40, regions=["eu"], required_labels={"compliance": "gdpr"}, excluded_providers=["excluded"]
    )

    def policy(p: Provider) -> str | None:
        return "eu-only-a1" if p.zone == "a2" else None

    best = _binding(_solve(g, req, allowed=policy))
    # "us" is too far away to help, so the region constraint is not blamed for dropping it.
    assert set(best) == {
        "constraints.required_labels",
        "policy:eu-only-a1",
        "constraints.excluded_providers",
        "sla.rps",
    }
    assert best["sla.rps"] == 10


def test_when_nothing_can_serve_every_filter_is_named_and_no_offer_is_made() -> None:
    g = graph(ZONES, LINKS, provider("us", "b1"), provider("far", "a2", p99=60, labels={"x": "y"}))
    res = _solve(g, request(50, 40, regions=["eu"], required_labels={"x": "z"}))
    assert res.counter_offer is None
    names = {b.constraint for b in res.binding}
    assert {"constraints.regions", "constraints.required_labels"} <= names
    assert any("sla.rps" in r for r in res.reasons())


def test_missing_capability_names_the_capability() -> None:
    g = graph(ZONES, LINKS, provider("p1", "a1", cap="embed"), provider("p2", "a1", expires_at=-1.0))
    res = _solve(g, request(10, 40, cap="translate"))
    assert res.counter_offer is None and res.candidates == []
    assert [b.constraint for b in res.binding] == ["capability"]
    res = _solve(g, request(10, 40))  # the only "infer" provider's lease has lapsed
    assert [b.constraint for b in res.binding] == ["capability"]
    assert res.candidates[0].reason == "expired"


def test_unreachable_consumer_zone_is_named() -> None:
    g = graph(ZONES, LINKS, provider("p1", "a1"))
    res = solve(request(10, 40), g, {}, consumer_zone="nowhere-1a", now=0.0)
    assert res.allocation is None and res.counter_offer is None
    assert "consumer_zone" in {b.constraint for b in res.binding}


def test_exhausted_capacity_after_other_reservations() -> None:
    g = graph(ZONES, LINKS, provider("p1", "a1", rps=100))
    res = _solve(g, request(50, 40), {"p1": 0.0})
    assert res.counter_offer is None
    assert _binding(res) == {"sla.rps": 0}
    assert res.candidates[0].reason == "no residual capacity"
