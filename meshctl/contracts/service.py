"""Negotiation: a proposal becomes admitted, counter-offered, rejected or pending approval.

The steps follow DESIGN.md "Negotiation": governance verdict → solve over the graph → atomic
reservation in the store → translation and push to the consumer's proxies → (optionally) wait for
their ACK. One trace spans the whole chain. The lifecycle after admission lives in lifecycle.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry import trace

from meshctl.contracts.state import MeshState
from meshctl.errors import CapacityConflict, Conflict, ValidationFailed
from meshctl.governance.policy import PolicySet, Verdict
from meshctl.model import (
    Contract,
    ContractEvent,
    ContractRequest,
    ContractState,
    Decision,
    ProposalOutcome,
)
from meshctl.store.base import Store
from meshctl.sync import ConfigSync, PushResult
from meshctl.topology.solver import SolveResult, solve
from meshctl.xds.resources import ROUTE

log = logging.getLogger(__name__)
tracer = trace.get_tracer("meshctl.contracts")

# How long a contract waiting for approval holds its capacity (documented in the README).
APPROVAL_HOLD_S = 900.0
COMMIT_RETRIES = 5

Recorder = Callable[[str, dict[str, Any]], Awaitable[None]]


def new_contract_id() -> str:
    return "c-" + uuid.uuid4().hex[:12]


class Negotiator:
    def __init__(
        self,
        state: MeshState,
        store: Store,
        policies: Callable[[], PolicySet],
        sync: ConfigSync,
        *,
        clock: Callable[[], float] = time.time,
        record: Recorder | None = None,
        metrics: Any = None,
    ) -> None:
        self.state = state
        self.store = store
        self.policies = policies
        self.sync = sync
        self.clock = clock
        self._record = record
        self.metrics = metrics
        # One negotiation at a time per replica keeps solve→commit short and conflict-free locally;
        # across replicas the store's atomic commit is what prevents oversubscription.
        self.lock = asyncio.Lock()
        # Last solve per contract (candidates and why each was dropped), for `explain`.
        self.last_solve: dict[str, tuple[float, SolveResult, dict[str, Any]]] = {}

    async def record(self, cause: str, detail: dict[str, Any]) -> None:
        if self._record is not None:
            await self._record(cause, detail)

    # -- helpers -----------------------------------------------------------------------------------
    def consumer_zone(self, request: ContractRequest) -> str:
        zone = request.consumer_zone or self.state.graph.consumer_zone(request.consumer)
        if zone is None:
            raise ValidationFailed(
                f"consumer {request.consumer!r} has no connected proxy; give consumer_zone",
                field="consumer_zone",
            )
        if self.state.graph.zone(zone) is None:
            raise ValidationFailed(f"unknown zone {zone!r}", field="consumer_zone")
        return zone

    def validate(self, request: ContractRequest) -> None:
        known_regions = {z.region for z in self.state.graph.zones()}
        for i, region in enumerate(request.constraints.regions):
            if region not in known_regions:
                raise ValidationFailed(f"unknown region {region!r}", field=f"constraints.regions.{i}")
        for i, zone in enumerate(request.constraints.zones):
            if self.state.graph.zone(zone) is None:
                raise ValidationFailed(f"unknown zone {zone!r}", field=f"constraints.zones.{i}")

    async def audit(
        self,
        *,
        actor: str,
        subject: str,
        kind: str,
        decision: str,
        verdict: Verdict | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        entry: dict[str, Any] = {
            "at": self.clock(),
            "actor": actor,
            "subject": subject,
            "kind": kind,
            "decision": decision,
            "policies": [dict(r) for r in verdict.results] if verdict else [],
            "details": dict(details or {}),
        }
        # Agents read the audit entries of their own contracts, including the system's decisions.
        known = self.state.contracts.get(subject)
        if known is not None:
            entry["details"].setdefault("owner", known.owner)
        await self.store.append_audit(entry)

    async def commit(self, contract: Contract, reservation: dict[str, float]) -> None:
        capacity = self.state.capacity(reservation)
        await self.store.commit_contract(contract, reservation, capacity)
        self.state.put_contract(contract, reservation)

    def push(self, services: list[str]) -> list[PushResult]:
        with tracer.start_as_current_span("translate+push") as span:
            results = self.sync.push_services(services)
            span.set_attribute("mesh.nodes", len(results))
            return results

    async def wait_acked(self, results: list[PushResult], timeout_s: float) -> bool:
        with tracer.start_as_current_span("ack") as span:
            ok = await self.sync.wait_acked(results, timeout_s)
            span.set_attribute("mesh.acked", ok)
            return ok

    # -- propose -------------------------------------------------------------------------------------
    async def propose(
        self,
        owner: str,
        request: ContractRequest,
        *,
        dry_run: bool = False,
        wait_acked: bool = False,
        ack_timeout_s: float = 5.0,
        idempotency_key: str | None = None,
    ) -> Decision:
        if idempotency_key and not dry_run:
            replay = self.replay(owner, request, idempotency_key)
            if replay is not None:
                return replay
        started = time.perf_counter()
        with tracer.start_as_current_span("negotiate") as span:
            span.set_attribute("mesh.owner", owner)
            span.set_attribute("mesh.capability", request.capability)
            span.set_attribute("mesh.dry_run", dry_run)
            decision = await self._propose(
                owner, request, dry_run, wait_acked, ack_timeout_s, idempotency_key
            )
            span.set_attribute("mesh.outcome", str(decision.outcome))
            if decision.contract is not None:
                span.set_attribute("mesh.contract_id", decision.contract.id)
        if self.metrics is not None:
            self.metrics.admission(str(decision.outcome), time.perf_counter() - started)
        return decision

    def replay(self, owner: str, request: ContractRequest, key: str) -> Decision | None:
        """The decision already taken for this agent's `key`, if any (stored contracts only)."""
        for c in self.state.contracts.values():
            if c.owner == owner and c.idempotency_key == key:
                if c.request != request:
                    raise Conflict(
                        "this Idempotency-Key was used for a different proposal", field="Idempotency-Key"
                    )
                outcome = {
                    ContractState.PENDING_APPROVAL: ProposalOutcome.PENDING_APPROVAL,
                    ContractState.REJECTED: ProposalOutcome.REJECTED,
                }.get(c.state, ProposalOutcome.ADMITTED)
                return Decision(proposal_id=c.id, outcome=outcome, contract=c, reasons=c.reasons)
        return None

    def _replay_in_flight(self, owner: str, request: ContractRequest, key: str | None) -> Decision | None:
        return self.replay(owner, request, key) if key else None

    async def _propose(
        self,
        owner: str,
        request: ContractRequest,
        dry_run: bool,
        wait_acked: bool,
        ack_timeout_s: float,
        idempotency_key: str | None = None,
    ) -> Decision:
        self.validate(request)
        zone = self.consumer_zone(request)
        cid = new_contract_id()
        with tracer.start_as_current_span("policy"):
            verdict = self.policies().evaluate(request, owner=owner, consumer_zone=zone, contract_id=cid)
        now = self.clock()
        base = Contract(
            id=cid,
            owner=owner,
            request=request,
            state=ContractState.REJECTED,
            created_at=now,
            updated_at=now,
            expires_at=now + request.duration_s,
            policies=[dict(r) for r in verdict.results],
            events=[ContractEvent(at=now, kind="proposed")],
            idempotency_key=idempotency_key,
        )
        if verdict.denied:
            reasons = [f"policy:{h.name}: {h.message}" for h in verdict.denied]
            contract = base.model_copy(update={"reasons": reasons})
            contract.events.append(ContractEvent(at=now, kind="rejected", detail="; ".join(reasons)))
            if not dry_run:
                async with self.lock:
                    replay = self._replay_in_flight(owner, request, idempotency_key)
                    if replay is not None:
                        return replay
                    await self.commit(contract, {})
                await self.audit(
                    actor=owner, subject=cid, kind="rejection", decision="denied by policy", verdict=verdict
                )
            return Decision(
                proposal_id=base.id,
                outcome=ProposalOutcome.REJECTED,
                contract=contract,
                reasons=reasons,
                dry_run=dry_run,
            )

        async with self.lock:
            # A retry that raced the first attempt finds it here, once that one has committed.
            replay = None if dry_run else self._replay_in_flight(owner, request, idempotency_key)
            if replay is not None:
                return replay
            for _attempt in range(COMMIT_RETRIES):
                with tracer.start_as_current_span("solve") as span:
                    result = solve(
                        request,
                        self.state.graph,
                        self.state.residual(),
                        consumer_zone=zone,
                        now=now,
                        allowed=verdict.allows,
                    )
                    span.set_attribute("mesh.candidates", len(result.candidates))
                self.last_solve[cid] = (now, result, verdict.to_dict())
                if result.allocation is None:
                    return await self._no_allocation(base, result, verdict, owner, dry_run)
                escalate = bool(verdict.escalated)
                state = ContractState.PENDING_APPROVAL if escalate else ContractState.ACTIVE
                reasons = [f"policy:{h.name}: {h.message}" for h in verdict.escalated]
                warnings = [f"warning: policy:{h.name}: {h.message}" for h in verdict.warnings]
                expires = now + (APPROVAL_HOLD_S if escalate else request.duration_s)
                contract = base.model_copy(
                    update={
                        "state": state,
                        "allocation": result.allocation,
                        "reasons": reasons + warnings,
                        "expires_at": expires,
                    }
                )
                contract.events.append(
                    ContractEvent(at=now, kind="pending_approval" if escalate else "admitted")
                )
                if dry_run:
                    outcome = ProposalOutcome.PENDING_APPROVAL if escalate else ProposalOutcome.ADMITTED
                    return Decision(
                        proposal_id=base.id, outcome=outcome, contract=contract, reasons=reasons, dry_run=True
                    )
                try:
                    with tracer.start_as_current_span("store"):
                        await self.commit(contract, result.allocation.reservation)
                except CapacityConflict:
                    # Another replica took the capacity between our read and our commit: the
                    # change feed will have updated our view (or we re-read it); solve again.
                    await self.refresh_reservations()
                    continue
                break
            else:
                raise CapacityConflict("capacity kept changing under this proposal; retry")
        # The contract is stored: push now, before the audit and history writes, so a store
        # failure after this point cannot leave a committed contract without its routes (the
        # agent's retry with the same Idempotency-Key then finds it).
        results = [] if escalate else self.push([request.consumer])
        # Exactly one audit entry per decision: "admission", or "proposal" for one that waits for
        # an operator (the approval or rejection is then its own decision and entry).
        await self.audit(
            actor=owner,
            subject=cid,
            kind="proposal" if escalate else "admission",
            decision="escalated for approval (capacity held)" if escalate else "admitted",
            verdict=verdict,
            details={"allocation": result.allocation.model_dump(mode="json")},
        )
        if escalate:
            await self.record("contract pending approval", {"contract": cid})
            return Decision(
                proposal_id=base.id,
                outcome=ProposalOutcome.PENDING_APPROVAL,
                contract=contract,
                reasons=reasons,
            )
        await self.record("contract admitted", {"contract": cid})
        if wait_acked and results:
            await self.wait_acked(results, ack_timeout_s)
        contract = await self.with_acks(contract)
        return Decision(
            proposal_id=base.id, outcome=ProposalOutcome.ADMITTED, contract=contract, reasons=warnings
        )

    async def _no_allocation(
        self, base: Contract, result: SolveResult, verdict: Verdict, owner: str, dry_run: bool
    ) -> Decision:
        reasons = result.reasons()
        if result.counter_offer is not None:
            if not dry_run:
                await self.audit(
                    actor=owner,
                    subject=base.id,
                    kind="counter_offer",
                    decision="counter-offer",
                    verdict=verdict,
                    details={"counter_offer": result.counter_offer.model_dump(mode="json")},
                )
            return Decision(
                proposal_id=base.id,
                outcome=ProposalOutcome.COUNTER_OFFER,
                counter_offer=result.counter_offer,
                reasons=reasons,
                dry_run=dry_run,
            )
        contract = base.model_copy(update={"reasons": reasons})
        if not dry_run:
            await self.commit(contract, {})
            await self.audit(
                actor=owner,
                subject=base.id,
                kind="rejection",
                decision="no feasible provider",
                verdict=verdict,
            )
        return Decision(
            proposal_id=base.id,
            outcome=ProposalOutcome.REJECTED,
            contract=contract,
            reasons=reasons,
            dry_run=dry_run,
        )

    async def refresh_reservations(self) -> None:
        self.state.reservations = await self.store.reservations()

    async def with_acks(self, contract: Contract) -> Contract:
        """The contract with its allocation's config version and the proxies that ACKed it."""
        if contract.allocation is None:
            return contract
        nodes = self.sync.nodes_of([contract.request.consumer])
        acked, versions = [], []
        for n in nodes:
            snap = self.sync.cache.get_snapshot(n.node_id)
            if snap is None:
                continue
            versions.append(snap.versions())
            if self.sync.acked(PushResult(n.node_id, snap.versions(), True)):
                acked.append(n.node_id)
        version = None
        if versions:
            version = versions[0].get(ROUTE)
        alloc = contract.allocation.model_copy(update={"acked_by": sorted(acked), "config_version": version})
        return contract.model_copy(update={"allocation": alloc})
