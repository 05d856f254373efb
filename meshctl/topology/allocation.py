"""Candidates and allocations: the primitives the solver and the counter-offer share.

`screen` marks every provider of a capability with the first check it fails; `allocate` turns the
feasible ones into an `Allocation` (min-cost split, availability spread, weights, failover);
`keep_current` answers whether a contract's allocation today still meets its request.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from meshctl.model import Allocation, ContractRequest, Provider, Share
from meshctl.topology.flow import EPS, INF, FlowItem, greedy_split, order
from meshctl.topology.graph import CapabilityGraph

MAX_FAILOVER = 2

Allowed = Callable[[Provider], str | None]

# Stages a candidate can be dropped at, in the order they are checked.
EXPIRED, CONSTRAINT, POLICY, UNREACHABLE, LATENCY, CAPACITY, OK = range(7)


@dataclass(slots=True, eq=False)  # identity equality: compared in hot loops, never by value
class Candidate:
    """A provider as the solver sees it for one request.

    ``id``/``zone``/``price`` repeat the provider's fields because the inner loops read them often.
    """

    provider: Provider
    id: str
    zone: str
    price: float
    residual: float
    stage: int = OK
    reason: str | None = None
    expected: float | None = None  # network path + provider p99; None until computed / unreachable

    def item(self, rank: int = 1) -> FlowItem:
        assert self.expected is not None
        return FlowItem(self.id, self.zone, self.residual, self.price, self.expected, rank)


def zones_required(availability: float | None) -> int:
    if availability is None or availability < 0.99:
        return 1
    if availability < 0.9999:
        return 2
    return 3


def zone_cap(rps: float, k: int) -> float:
    return rps / k if k > 1 else INF


def _label_ok(have: str | list[str] | None, want: str) -> bool:
    if isinstance(have, list):
        return want in have
    return have == want


def _constraint_reason(p: Provider, request: ContractRequest, graph: CapabilityGraph) -> str | None:
    c = request.constraints
    if c.regions and graph.region_of(p.zone) not in c.regions:
        return "constraints.regions"
    if c.zones and p.zone not in c.zones:
        return "constraints.zones"
    for key, want in c.required_labels.items():
        if not _label_ok(p.labels.get(key), want):
            return f"constraints.required_labels.{key}"
    if p.id in c.excluded_providers:
        return "constraints.excluded_providers"
    return None


def screen(
    request: ContractRequest,
    graph: CapabilityGraph,
    residual: Mapping[str, float],
    *,
    consumer_zone: str,
    now: float,
    allowed: Allowed | None,
) -> list[Candidate]:
    """Every provider of the capability, each marked with the first check it fails (if any)."""
    budget = request.sla.p99_latency_ms
    c = request.constraints
    constrained = bool(c.regions or c.zones or c.required_labels or c.excluded_providers)
    row = graph.latency_row(consumer_zone)
    out: list[Candidate] = []
    for p in graph.providers_for(request.capability):
        cand = Candidate(p, p.id, p.zone, p.cost_per_1k, max(0.0, residual.get(p.id, p.capacity_rps)))
        out.append(cand)
        if p.expires_at is not None and p.expires_at < now:
            cand.stage, cand.reason = EXPIRED, "expired"
            continue
        if constrained:
            why = _constraint_reason(p, request, graph)
            if why is not None:
                cand.stage, cand.reason = CONSTRAINT, why
                continue
        if allowed is not None:
            policy = allowed(p)
            if policy is not None:
                cand.stage, cand.reason = POLICY, f"policy:{policy}"
                continue
        path = row.get(p.zone)
        if path is None:
            cand.stage, cand.reason = UNREACHABLE, "unreachable"
            continue
        cand.expected = path + p.latency_p99_ms
        if cand.expected > budget + EPS:
            cand.stage, cand.reason = LATENCY, f"latency: {cand.expected:.1f} ms > {budget:.1f} ms"
        elif cand.residual <= EPS:
            cand.stage, cand.reason = CAPACITY, "no residual capacity"
    out.sort(key=lambda c: c.id)
    return out


def largest_remainder(amounts: Sequence[float], total: int = 100) -> list[int]:
    """Integer weights proportional to ``amounts`` summing to ``total``; none below 1 if avoidable."""
    s = sum(amounts)
    if not amounts or s <= 0:
        return [0] * len(amounts)
    raw = [a * total / s for a in amounts]
    weights = [math.floor(r) for r in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: (-(raw[i] - weights[i]), i))
    for i in by_remainder[: total - sum(weights)]:
        weights[i] += 1
    # A share that reserves capacity but gets weight 0 would receive no traffic: lend it 1.
    for i, w in enumerate(weights):
        if w == 0 and len(weights) <= total:
            donor = max(range(len(weights)), key=lambda j: (weights[j], -j))
            weights[donor] -= 1
            weights[i] = 1
    return weights


def _share(c: Candidate, rps: float, weight: int, priority: int = 0) -> Share:
    assert c.expected is not None
    return Share(
        provider_id=c.id,
        zone=c.zone,
        rps=rps,
        weight=weight,
        expected_p99_ms=c.expected,
        cost_per_1k=c.price,
        priority=priority,
    )


def pick_failover(pool: Sequence[Candidate], primaries: set[str], used_zones: set[str]) -> list[Candidate]:
    """Up to MAX_FAILOVER feasible non-primaries: other zones first, then the lowest expected p99."""
    rest = [c for c in pool if c.id not in primaries]
    zones = set(used_zones)
    chosen: list[Candidate] = []
    while rest and len(chosen) < MAX_FAILOVER:
        i = min(range(len(rest)), key=lambda j: (rest[j].zone in zones, rest[j].expected, rest[j].id))
        best = rest.pop(i)
        chosen.append(best)
        zones.add(best.zone)
    return chosen


def build_allocation(split: Mapping[str, float], feasible: Sequence[Candidate], rps: float) -> Allocation:
    by_id = {c.id: c for c in feasible}
    used = sorted((k, f) for k, f in split.items() if f > EPS)
    weights = largest_remainder([f for _, f in used])
    shares = [_share(by_id[k], f, w) for (k, f), w in zip(used, weights, strict=True)]
    failover = pick_failover(feasible, {s.provider_id for s in shares}, {s.zone for s in shares})
    return Allocation(
        shares=shares,
        failover=[_share(c, 0.0, 0, priority=1) for c in failover],
        rps=rps,
        expected_p99_ms=max(s.expected_p99_ms for s in shares),
        cost_per_1k=sum(s.rps * s.cost_per_1k for s in shares) / sum(s.rps for s in shares),
    )


def _meets(split: Mapping[str, float], price: Mapping[str, float], rps: float, bid: float | None) -> bool:
    total = sum(split.values())
    if total < rps - EPS * max(1.0, rps):
        return False
    if bid is None:
        return True
    return sum(f * price[k] for k, f in split.items()) / total <= bid + EPS


def allocate(
    feasible: Sequence[Candidate],
    rps: float,
    k: int,
    bid: float | None,
    keep: Mapping[str, float] | None = None,
) -> Allocation | None:
    """The allocation for ``rps`` over ``feasible`` (or None if it cannot be met within the bid).

    ``keep``: shares to hold on to (provider -> rps). They are placed first and the rest filled at
    least cost around them; if that breaks the bid, the plain min-cost split (which still prefers
    kept providers on price ties) is tried.
    """
    if not feasible:
        return None
    keep = keep or {}
    items = order(c.item(0 if c.id in keep else 1) for c in feasible)
    price = {c.id: c.price for c in feasible}
    cap = zone_cap(rps, k)
    if keep:
        # Kept flow is itself placed greedily (cheapest first) so caps and demand bound it.
        kept_items = [
            FlowItem(i.key, i.zone, min(i.capacity, keep[i.key]), i.price, i.latency)
            for i in items
            if i.key in keep
        ]
        kept = greedy_split(kept_items, rps, cap)
        split = greedy_split(items, rps, cap, preset=kept)
        if _meets(split, price, rps, bid):
            return build_allocation(split, feasible, rps)
    split = greedy_split(items, rps, cap)
    if _meets(split, price, rps, bid):
        return build_allocation(split, feasible, rps)
    return None


def keep_current(
    current: Allocation, request: ContractRequest, feasible: Sequence[Candidate], k: int
) -> Allocation | None:
    """``current`` refreshed, if every share still fits and the whole still meets the request."""
    by_id = {c.id: c for c in feasible}
    rps = request.sla.rps
    per_zone: dict[str, float] = {}
    shares: list[Share] = []
    for s in current.shares:
        c = by_id.get(s.provider_id)
        if c is None or c.residual < s.rps - EPS * max(1.0, s.rps):
            return None
        per_zone[c.zone] = per_zone.get(c.zone, 0.0) + s.rps
        assert c.expected is not None
        shares.append(
            s.model_copy(update={"zone": c.zone, "expected_p99_ms": c.expected, "cost_per_1k": c.price})
        )
    if not shares or abs(sum(s.rps for s in shares) - rps) > EPS * max(1.0, rps):
        return None
    cap = zone_cap(rps, k)
    if any(v > cap + EPS * max(1.0, rps) for v in per_zone.values()):
        return None
    cost = sum(s.rps * s.cost_per_1k for s in shares) / rps
    bid = request.max_cost_per_1k
    if bid is not None and cost > bid + EPS:
        return None
    primaries = {s.provider_id for s in shares}
    spare = [c for c in feasible if c.id not in primaries]
    old_fo = [by_id.get(f.provider_id) for f in current.failover]
    if all(c is not None and c.id not in primaries for c in old_fo) and len(old_fo) == min(
        MAX_FAILOVER, len(spare)
    ):
        failover = [c for c in old_fo if c is not None]
    else:
        failover = pick_failover(feasible, primaries, set(per_zone))
    fresh = current.model_copy(
        update={
            "shares": shares,
            "failover": [_share(c, 0.0, 0, priority=1) for c in failover],
            "rps": rps,
            "expected_p99_ms": max(s.expected_p99_ms for s in shares),
            "cost_per_1k": cost,
        }
    )
    return current if fresh == current else fresh
