"""The control plane's in-memory view of the mesh: the graph, the contracts, the reservations.

Every replica holds one, rebuilt from the store at start and kept current from the change feed;
negotiation reads it (fast, no round trip) and writes go through the store's atomic operations.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from meshctl.model import LIVE_STATES, Contract, ContractState, Provider
from meshctl.topology.graph import CapabilityGraph


@dataclass
class MeshState:
    graph: CapabilityGraph = field(default_factory=CapabilityGraph)
    contracts: dict[str, Contract] = field(default_factory=dict)
    # provider id -> {contract id -> rps held}; mirrors the store's reservations.
    reservations: dict[str, dict[str, float]] = field(default_factory=dict)

    def put_contract(self, contract: Contract, reservation: dict[str, float]) -> None:
        self.contracts[contract.id] = contract
        for held in self.reservations.values():
            held.pop(contract.id, None)
        for pid, rps in reservation.items():
            if rps > 0:
                self.reservations.setdefault(pid, {})[contract.id] = rps

    def held_by(self, contract_id: str) -> dict[str, float]:
        return {p: h[contract_id] for p, h in self.reservations.items() if contract_id in h}

    def residual(self, exclude: str | None = None) -> Residual:
        """provider id -> capacity not held by other contracts (``exclude`` counts as free).

        Computed on lookup: a negotiation reads only the candidates of one capability, and walking
        every provider (and every reservation) of the mesh for each proposal made admission cost
        grow with the mesh. Iteration lists the providers someone holds capacity on; any other
        provider is wholly free (the solver reads a missing key as full capacity).
        """
        return Residual(self, exclude)

    def capacity(self, provider_ids: Iterable[str]) -> dict[str, float]:
        out: dict[str, float] = {}
        for pid in provider_ids:
            p = self.graph.provider(pid)
            out[pid] = p.capacity_rps if p is not None else 0.0
        return out

    def live(self) -> list[Contract]:
        return [c for c in self.contracts.values() if c.state in LIVE_STATES]

    def holding(self) -> list[Contract]:
        """Contracts that hold capacity: live ones and those waiting for approval."""
        return [
            c
            for c in self.contracts.values()
            if c.state in LIVE_STATES or c.state is ContractState.PENDING_APPROVAL
        ]

    def providers_by_id(self) -> dict[str, Provider]:
        return {p.id: p for p in self.graph.providers()}

    def using(self, provider_id: str) -> list[Contract]:
        out = []
        for c in self.holding():
            a = c.allocation
            if a and any(s.provider_id == provider_id for s in [*a.shares, *a.failover]):
                out.append(c)
        return out


class Residual(Mapping[str, float]):
    """A read-only view of residual capacity over a MeshState (see `MeshState.residual`)."""

    __slots__ = ("_exclude", "_state")

    def __init__(self, state: MeshState, exclude: str | None) -> None:
        self._state = state
        self._exclude = exclude

    def __getitem__(self, provider_id: str) -> float:
        p = self._state.graph.provider(provider_id)
        if p is None:
            raise KeyError(provider_id)
        held = self._state.reservations.get(provider_id, {})
        used = sum(r for cid, r in held.items() if cid != self._exclude)
        return max(0.0, p.capacity_rps - used)

    def __iter__(self) -> Iterator[str]:
        graph = self._state.graph
        return iter([pid for pid, held in self._state.reservations.items() if held and graph.provider(pid)])

    def __len__(self) -> int:
        return sum(1 for _ in self)
