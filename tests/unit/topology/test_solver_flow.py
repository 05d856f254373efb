"""The fast split is an exact min-cost flow: networkx's network simplex agrees on every instance."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from topo_helpers import graph, provider, request

from meshctl.topology import solve
from meshctl.topology.allocation import zone_cap
from meshctl.topology.flow import FlowItem, greedy_split, max_total, order, reference_split

ZONE_NAMES = ["z1", "z2", "z3", "z4"]


@st.composite
def instances(draw: st.DrawFn) -> tuple[list[FlowItem], int, int]:
    n = draw(st.integers(1, 10))
    items = [
        FlowItem(
            key=f"p{i}",
            zone=draw(st.sampled_from(ZONE_NAMES)),
            capacity=draw(st.integers(0, 120)),
            price=draw(st.integers(0, 6)) / 2,  # few distinct prices: ties exercise the tie-breaks
            latency=draw(st.integers(0, 5)),
            rank=draw(st.integers(0, 1)),
        )
        for i in range(n)
    ]
    demand = 6 * draw(st.integers(1, 60))  # divisible by every zone count, so caps stay integral
    k = draw(st.integers(1, 3))
    return items, demand, k


def _totals(split: dict[str, float], items: list[FlowItem]) -> tuple[float, float, float, float]:
    by = {it.key: it for it in items}
    return (
        sum(split.values()),
        sum(f * by[k].price for k, f in split.items()),
        sum(f * by[k].rank for k, f in split.items()),
        sum(f * by[k].latency for k, f in split.items()),
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_greedy_matches_network_simplex(inst: tuple[list[FlowItem], int, int]) -> None:
    items, demand, k = inst
    cap = zone_cap(demand, k)
    fast = greedy_split(order(items), demand, cap)
    ref = reference_split(items, demand, cap)
    flow, price, rank, latency = _totals(fast, items)
    r_flow, r_price, r_rank, r_latency = _totals(ref, items)
    assert flow == pytest.approx(r_flow, abs=1e-6)
    assert price == pytest.approx(r_price, abs=1e-6)  # the same min total cost ...
    assert rank == pytest.approx(r_rank, abs=1e-6)  # ... and the same tie-breaks after it
    assert latency == pytest.approx(r_latency, abs=1e-6)
    by_zone: dict[str, float] = {}
    for key, f in fast.items():
        it = next(i for i in items if i.key == key)
        assert f <= it.capacity + 1e-9
        by_zone[it.zone] = by_zone.get(it.zone, 0) + f
    assert all(v <= cap + 1e-9 for v in by_zone.values())
    # max_total is the exact threshold at which the full demand stops fitting.
    assert (flow >= demand - 1e-6) == (demand <= max_total(items, k) + 1e-6)


def test_max_total_by_hand() -> None:
    def items(*caps: float) -> list[FlowItem]:
        return [FlowItem(f"p{i}", f"z{i}", c, 1.0, 1.0) for i, c in enumerate(caps)]

    assert max_total(items(10, 20, 30), 1) == 60
    assert max_total(items(10, 20, 30), 2) == 60  # no zone above half: 30 <= 60 / 2
    assert max_total(items(10, 100), 2) == 20  # the small zone caps the spread at 2 x 10
    assert max_total(items(10, 10, 100), 3) == 30
    assert max_total(items(10, 20, 100), 3) == pytest.approx(30)  # 10 + 10 + 10
    assert max_total(items(10, 20, 100), 2) == pytest.approx(60)  # 10 + 20 + 30: the big zone at r/2
    assert max_total(items(100, 100), 3) == 0  # three zones needed, two exist


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    caps=st.lists(
        st.tuples(
            st.sampled_from(["a1", "a2", "b1"]), st.integers(1, 80), st.integers(0, 4), st.integers(0, 30)
        ),
        min_size=1,
        max_size=8,
    ),
    rps=st.integers(1, 40).map(lambda x: x * 6),
    availability=st.sampled_from([None, 0.999, 0.9999]),
)
def test_solver_allocation_is_min_cost(
    caps: list[tuple[str, int, int, int]], rps: int, availability: float | None
) -> None:
    g = graph(
        {"a1": "eu", "a2": "eu", "b1": "us"},
        {("a1", "a2"): 2, ("a2", "b1"): 8},
        *(provider(f"p{i}", z, rps=c, price=price, p99=p99) for i, (z, c, price, p99) in enumerate(caps)),
    )
    res = solve(request(rps, 30, availability=availability), g, {}, consumer_zone="a1", now=0.0)
    feasible = [c for c in res.candidates if c.feasible]
    items = [
        FlowItem(c.provider_id, c.zone, c.residual_rps, c.cost_per_1k, c.expected_p99_ms or 0.0, 1)
        for c in feasible
    ]
    k = {None: 1, 0.999: 2, 0.9999: 3}[availability]
    ref = reference_split(items, rps, zone_cap(rps, k))
    r_flow, r_price, _, _ = _totals(ref, items)
    if res.allocation is None:
        assert r_flow < rps - 1e-6
    else:
        got = {s.provider_id: s.rps for s in res.allocation.shares}
        flow, price, _, _ = _totals(got, items)
        assert flow == pytest.approx(rps) and r_flow == pytest.approx(rps)
        assert price == pytest.approx(r_price, abs=1e-6)
        assert sum(s.weight for s in res.allocation.shares) == 100
