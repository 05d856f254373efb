"""Counter-offers: what the mesh can do now when a request cannot be met in full.

Three best values are worked out over the candidates that pass the constraints and policies:
(a) the most rps that fits within the latency budget and the price bid,
(b) the lowest p99 at which the full rps fits (within the bid if possible),
(c) the lowest blended price for the full rps within the latency budget.

The offer changes as little of the request as it can: it keeps the full rps by relaxing only the
price, else only the latency, else only the availability tier; failing that it keeps the SLA and
the bid and lowers the rps; only then does it relax latency and price together. Offered values are
rounded in the agent's favour of feasibility (rps down, p99 and price up), so re-proposing exactly
the offered terms is admitted while nothing else has changed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from meshctl.model import Allocation, Binding, ContractRequest, CounterOffer, Sla
from meshctl.topology.allocation import (
    CONSTRAINT,
    EXPIRED,
    LATENCY,
    OK,
    POLICY,
    UNREACHABLE,
    Candidate,
    allocate,
    zone_cap,
    zones_required,
)
from meshctl.topology.flow import EPS, FlowItem, greedy_split, max_total, order
from meshctl.topology.graph import CapabilityGraph

# The availability each zone-spread tier can promise when the offer lowers the tier.
TIER_AVAILABILITY: dict[int, float | None] = {1: None, 2: 0.999}


def _up(x: float, places: int) -> float:
    f = 10**places
    return math.ceil(x * f - 1e-6) / f


def _down(x: float, places: int = 3) -> float:
    f = 10**places
    return math.floor(x * f + 1e-6) / f


def _split(items: Sequence[FlowItem], demand: float, k: int) -> dict[str, float]:
    return greedy_split(items, demand, zone_cap(demand, k))


def _price(split: dict[str, float], items: Sequence[FlowItem]) -> float:
    price = {it.key: it.price for it in items}
    total = sum(split.values())
    return sum(f * price[key] for key, f in split.items()) / total if total > 0 else 0.0


def _fits(items: Sequence[FlowItem], demand: float, k: int, bid: float | None) -> bool:
    split = _split(items, demand, k)
    if sum(split.values()) < demand - EPS * max(1.0, demand):
        return False
    return bid is None or _price(split, items) <= bid + EPS


def _max_rps(items: Sequence[FlowItem], rps: float, k: int, bid: float | None) -> float:
    """(a): the most rps within ``items`` and the bid, to 1/1000 rps, never above what fits.

    The min blended price only rises with the demand (scale a flow down and its average price
    stays), so bisection converges on the limit; the limit is then snapped to the nearest 1/1000
    when that still fits (bisection approaches 75 as 74.99999...), else floored.
    """
    hi = min(rps, max_total(items, k))
    if hi <= EPS:
        return 0.0
    if not _fits(items, hi, k, bid):
        lo = 0.0
        while hi - lo > 1e-9 * max(1.0, rps):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if _fits(items, mid, k, bid) else (lo, mid)
        hi = lo
    nice = round(hi, 3)
    if nice > hi and not _fits(items, nice, k, bid):
        nice = _down(hi)
    return nice


def _min_latency(items: Sequence[FlowItem], rps: float, k: int, bid: float | None) -> float | None:
    """(b): the lowest latency threshold whose providers carry the full rps (None if none does).
    Feasibility only grows as the threshold rises, so bisect over the distinct latencies."""
    levels = sorted({it.latency for it in items})

    def ok(level: float) -> bool:
        return _fits([it for it in items if it.latency <= level], rps, k, bid)

    if not levels or not ok(levels[-1]):
        return None
    lo, hi = -1, len(levels) - 1  # ok(levels[hi]) holds; levels[lo] does not (or lo is before the start)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(levels[mid]) else (mid, hi)
    return levels[hi]


def _filter_bindings(
    cands: Sequence[Candidate],
    request: ContractRequest,
    graph: CapabilityGraph,
    consumer_zone: str,
    any_ok: bool,
) -> list[Binding]:
    """Constraints and policies that dropped providers which could otherwise serve the request.
    When nothing at all can serve, every filter that dropped something is named."""
    p99 = request.sla.p99_latency_ms
    dropped: dict[str, list[str]] = {}
    for c in cands:
        if c.stage not in (CONSTRAINT, POLICY) or c.reason is None:
            continue
        name = c.reason if c.stage == POLICY else ".".join(c.reason.split(".")[:2])
        path = graph.zone_latency(consumer_zone, c.zone)
        useful = path is not None and path + c.provider.latency_p99_ms <= p99 + EPS and c.residual > EPS
        if useful or not any_ok:
            dropped.setdefault(name, []).append(c.id)
    out = []
    for name, ids in dropped.items():
        some = ", ".join(ids[:3]) + (", ..." if len(ids) > 3 else "")
        what = "that could serve within the SLA" if any_ok else "offering the capability"
        out.append(Binding(constraint=name, reason=f"excludes {len(ids)} provider(s) {what}: {some}"))
    return out


def counter_offer(
    request: ContractRequest, cands: Sequence[Candidate], *, graph: CapabilityGraph, consumer_zone: str
) -> tuple[CounterOffer | None, list[Binding]]:
    """The best offer the mesh can make now (None if it can serve nothing) and what binds."""
    sla, bid, cap = request.sla, request.max_cost_per_1k, request.capability
    rps, p99, k = sla.rps, sla.p99_latency_ms, zones_required(sla.availability)
    if all(c.stage == EXPIRED for c in cands):
        why = f"no provider offers {cap}" if not cands else f"every provider of {cap} has an expired lease"
        return None, [Binding(constraint="capability", reason=why)]

    usable = [c for c in cands if c.stage in (LATENCY, OK) and c.residual > EPS]
    items = order(c.item() for c in usable)
    within = [it for it in items if it.latency <= p99 + EPS]

    a = _max_rps(within, rps, k, bid)
    full_within = max_total(within, k) >= rps - EPS * max(1.0, rps)
    c_price = _price(_split(within, rps, k), within) if full_within else None
    b = b_any = tier = None
    if not full_within:
        b = _min_latency(items, rps, k, bid)
        b_any = b if bid is None else _min_latency(items, rps, k, None)
        tier = next((k2 for k2 in range(k - 1, 0, -1) if _fits(within, rps, k2, bid)), None)

    binding = _filter_bindings(cands, request, graph, consumer_zone, any_ok=bool(usable))
    past_filters = [c for c in cands if c.stage >= UNREACHABLE]
    if past_filters and all(c.stage == UNREACHABLE for c in past_filters):
        binding.append(
            Binding(constraint="consumer_zone", reason=f"no provider is reachable from {consumer_zone}")
        )
    bid_txt = f" at <= {bid:g}/1k" if bid is not None else ""
    binding.append(
        Binding(constraint="sla.rps", reason=f"at most {a:g} rps fit within {p99:g} ms{bid_txt}", best=a)
    )
    b_best = b if b is not None else b_any
    if b_best is not None:
        binding.append(
            Binding(
                constraint="sla.p99_latency_ms",
                reason=f"the full {rps:g} rps needs a p99 of at least {b_best:g} ms",
                best=_up(b_best, 3),
            )
        )
    any_price: float | None = None
    if b is None and b_any is not None:
        any_price = _price(_split([it for it in items if it.latency <= b_any], rps, k), items)
    if bid is not None and c_price is not None and c_price > bid + EPS:
        binding.append(
            Binding(
                constraint="max_cost_per_1k",
                reason=f"the full {rps:g} rps within {p99:g} ms costs at least {c_price:g}/1k",
                best=_up(c_price, 4),
            )
        )
    elif bid is not None and any_price is not None:
        binding.append(
            Binding(
                constraint="max_cost_per_1k",
                reason=f"the full {rps:g} rps costs at least {any_price:g}/1k at a p99 of {b_any:g} ms",
                best=_up(any_price, 4),
            )
        )
    if tier is not None:
        binding.append(
            Binding(
                constraint="sla.availability",
                reason=(
                    f"only {tier} zone(s) can carry the full rps; "
                    f"availability {sla.availability} needs {k} zones"
                ),
                best=TIER_AVAILABILITY[tier],
            )
        )

    terms = _choose(request, a, c_price, b, b_any, any_price, tier, items)
    if terms is None:
        return None, binding
    offer_sla, offer_bid = terms
    pool = [c for c in usable if c.expected is not None and c.expected <= offer_sla.p99_latency_ms + EPS]
    alloc: Allocation | None = allocate(
        pool, offer_sla.rps, zones_required(offer_sla.availability), offer_bid
    )
    return CounterOffer(sla=offer_sla, max_cost_per_1k=offer_bid, binding=binding, allocation=alloc), binding


def _choose(
    request: ContractRequest,
    a: float,
    c_price: float | None,
    b: float | None,
    b_any: float | None,
    any_price: float | None,
    tier: int | None,
    items: Sequence[FlowItem],
) -> tuple[Sla, float | None] | None:
    """Pick the offered terms: change one dimension if one suffices, in the order the module says."""
    sla, bid = request.sla, request.max_cost_per_1k
    if c_price is not None and bid is not None and c_price > bid + EPS:
        return sla, _up(c_price, 4)
    if b is not None:
        return sla.model_copy(update={"p99_latency_ms": _up(b, 3)}), bid
    if tier is not None:
        return sla.model_copy(update={"availability": TIER_AVAILABILITY[tier]}), bid
    if a > 0:
        return sla.model_copy(update={"rps": a}), bid
    if b_any is not None and any_price is not None:
        return sla.model_copy(update={"p99_latency_ms": _up(b_any, 3)}), _up(any_price, 4)
    k = zones_required(sla.availability)
    most = _down(min(sla.rps, max_total(items, k)))
    if most <= 0:
        return None
    split = _split(items, most, k)
    lat = {it.key: it.latency for it in items}
    price = _price(split, items)
    offered_bid = None if bid is None else max(bid, _up(price, 4))
    return sla.model_copy(
        update={"rps": most, "p99_latency_ms": _up(max(lat[x] for x in split), 3)}
    ), offered_bid
