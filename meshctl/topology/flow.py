"""Splitting a demand over providers: the min-cost flow, fast and reference.

The flow network is source -> zone -> provider -> sink, with zone arcs capped (availability spread)
and provider arcs capped by residual capacity; the unit cost of a provider arc orders by price, then
a stability rank, then expected latency. The zone caps and provider caps form a laminar family, so
the feasible flows are the independent vectors of a polymatroid and the greedy walk in cost order is
an exact min-cost flow (Edmonds). `greedy_split` is that walk, O(n) on presorted items;
`reference_split` solves the same network with `networkx.max_flow_min_cost` and exists so tests and
the benchmark can check the greedy against it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import networkx as nx

INF = math.inf
EPS = 1e-9


@dataclass(frozen=True, slots=True)
class FlowItem:
    key: str
    zone: str
    capacity: float
    price: float
    latency: float
    rank: int = 0  # 0 = preferred (already carries this contract), 1 = other; breaks price ties only

    def sort_key(self) -> tuple[float, int, float, str]:
        return (self.price, self.rank, self.latency, self.key)


def order(items: Iterable[FlowItem]) -> list[FlowItem]:
    return sorted(items, key=FlowItem.sort_key)


def greedy_split(
    items: Sequence[FlowItem],
    demand: float,
    zone_cap: float = INF,
    preset: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Min-cost split of ``demand`` over ``items`` (already in `order`), no zone above ``zone_cap``.

    ``preset`` is flow already placed (kept shares); the walk fills what remains around it and the
    result includes it. Returns key -> flow for every item that carries some; the total is
    min(demand, what the network can carry).
    """
    out: dict[str, float] = dict(preset) if preset else {}
    used: dict[str, float] = {}
    left = demand
    if preset:
        for it in items:
            got = out.get(it.key)
            if got:
                used[it.zone] = used.get(it.zone, 0.0) + got
                left -= got
    for it in items:
        if left <= EPS:
            break
        have = out.get(it.key, 0.0)
        take = min(it.capacity - have, zone_cap - used.get(it.zone, 0.0), left)
        if take > EPS:
            out[it.key] = have + take
            used[it.zone] = used.get(it.zone, 0.0) + take
            left -= take
    return out


def max_total(items: Iterable[FlowItem], zones_required: int) -> float:
    """The largest demand r that fits when no zone may carry more than r / zones_required.

    With per-zone capacity z_i, r fits iff f(r) = sum(min(z_i, r/k)) - r >= 0; f is concave and
    piecewise linear with breakpoints at k*z_i, so the root is found by one pass over sorted z_i.
    """
    per_zone: dict[str, float] = {}
    for it in items:
        if it.capacity > EPS:
            per_zone[it.zone] = per_zone.get(it.zone, 0.0) + it.capacity
    zs = sorted(per_zone.values())
    k = zones_required
    if k <= 1:
        return sum(zs)
    n = len(zs)
    if n < k:
        return 0.0
    prev_r, prev_f, below = 0.0, 0.0, 0.0  # below: sum of z_i already under the cap
    for j, z in enumerate(zs):
        r = k * z
        above = n - j  # zones (this one included) whose capacity is >= r/k
        f = below + above * z - r
        if f < 0:
            slope = above / k - 1.0  # zones j.. still at the cap on (prev_r, r)
            return prev_r + prev_f / -slope if slope < 0 else prev_r
        prev_r, prev_f = r, f
        below += z
    return sum(zs)


def reference_split(
    items: Sequence[FlowItem],
    demand: float,
    zone_cap: float = INF,
    *,
    scale: int = 1000,
) -> dict[str, float]:
    """The same split by networkx's network simplex on the explicit flow network.

    Capacities are scaled to integers (``scale`` units per rps, floored) because network simplex is
    exact only on integers; unit costs encode (price, rank, latency) lexicographically in one integer.
    """
    if not items or demand <= 0:
        return {}
    prices = {it.key: round(it.price * 10_000) for it in items}
    lats = {it.key: round(it.latency * 1_000) for it in items}
    d = math.floor(demand * scale + EPS)
    lat_span = (max(lats.values()) + 1) * (d + 1)  # beats any total latency difference
    rank_span = lat_span * (d + 1) * 2  # beats any total (rank, latency) difference
    g = nx.DiGraph()
    g.add_edge("src", "s", capacity=d, weight=0)
    for zone in {it.zone for it in items}:
        cap = d if zone_cap == INF else math.floor(zone_cap * scale + EPS)
        g.add_edge("s", ("z", zone), capacity=cap, weight=0)
    for it in items:
        w = prices[it.key] * rank_span + it.rank * lat_span + lats[it.key]
        g.add_edge(("z", it.zone), ("p", it.key), capacity=math.floor(it.capacity * scale + EPS), weight=w)
        g.add_edge(("p", it.key), "t", capacity=d, weight=0)
    flow = nx.max_flow_min_cost(g, "src", "t")
    out: dict[str, float] = {}
    for it in items:
        f = flow[("z", it.zone)][("p", it.key)]
        if f:
            out[it.key] = f / scale
    return out


def total_cost(split: Mapping[str, float], items: Iterable[FlowItem]) -> float:
    """Total price of a split (rps x price per 1k)."""
    price = {it.key: it.price for it in items}
    return sum(f * price[k] for k, f in split.items())
