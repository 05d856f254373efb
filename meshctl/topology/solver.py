"""The SLA solver: a contract request + the capability graph -> an allocation, or the best offer.

Pure: reads the graph, the residual capacities and the clock it is given; changes nothing.

Steps: candidates by capability -> constraints -> governance filter -> latency -> min-cost split of
the rps over residual capacity (`flow`), availability met by a per-zone cap -> weights and failover
(`allocation`). When `current` (the contract's allocation today) still works it comes back as it is;
when something must move, current shares are kept where they still fit and only the rest is
re-placed. When the request cannot be met, `offer` works out what the mesh can do instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from meshctl.model import Allocation, Binding, ContractRequest, CounterOffer
from meshctl.topology.allocation import OK, Allowed, allocate, keep_current, screen, zones_required
from meshctl.topology.graph import CapabilityGraph
from meshctl.topology.offer import counter_offer


@dataclass(slots=True)
class CandidateVerdict:
    provider_id: str
    zone: str
    feasible: bool
    reason: str | None  # why dropped; None when feasible
    expected_p99_ms: float | None  # None when dropped before the latency check, or unreachable
    residual_rps: float
    cost_per_1k: float


@dataclass
class SolveResult:
    allocation: Allocation | None  # None when the full request cannot be met
    counter_offer: CounterOffer | None  # best the mesh can do now, with Binding constraints named
    candidates: list[CandidateVerdict]  # every provider of the capability considered, feasible or why not
    # What stops the request (empty when admitted). Set even when no offer is possible at all, so a
    # rejection can name the capability, constraint or policy responsible.
    binding: list[Binding] = field(default_factory=list)

    def reasons(self) -> list[str]:
        return [f"{b.constraint}: {b.reason}" for b in self.binding]


def solve(
    request: ContractRequest,
    graph: CapabilityGraph,
    residual: Mapping[str, float],
    *,
    consumer_zone: str,
    now: float,
    allowed: Allowed | None = None,
    current: Allocation | None = None,
) -> SolveResult:
    """Solve ``request`` for a consumer in ``consumer_zone``.

    ``residual[provider_id]``: capacity minus what OTHER contracts hold (for a re-solve, leave this
    contract's own reservation out of it); a missing key means the provider's full capacity.
    ``allowed(p)``: None if governance allows p, else the name of the rejecting policy.
    ``current``: the contract's allocation today; returned unchanged if it still meets the request.
    """
    cands = screen(request, graph, residual, consumer_zone=consumer_zone, now=now, allowed=allowed)
    verdicts = [
        CandidateVerdict(
            provider_id=c.id,
            zone=c.zone,
            feasible=c.stage == OK,
            reason=c.reason,
            expected_p99_ms=c.expected,
            residual_rps=c.residual,
            cost_per_1k=c.price,
        )
        for c in cands
    ]
    feasible = [c for c in cands if c.stage == OK]
    k = zones_required(request.sla.availability)
    rps, bid = request.sla.rps, request.max_cost_per_1k
    alloc: Allocation | None = None
    if feasible:
        if current is not None:
            alloc = keep_current(current, request, feasible, k)
            if alloc is None:
                alloc = allocate(feasible, rps, k, bid, keep=current.reservation)
        else:
            alloc = allocate(feasible, rps, k, bid)
    if alloc is not None:
        return SolveResult(allocation=alloc, counter_offer=None, candidates=verdicts)
    offer, binding = counter_offer(request, cands, graph=graph, consumer_zone=consumer_zone)
    return SolveResult(allocation=None, counter_offer=offer, candidates=verdicts, binding=binding)
