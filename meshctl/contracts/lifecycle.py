"""Keeping contracts after admission: renew, revoke, approve/reject, expiry, leases and re-solves.

Re-solves are stable: the solver keeps an allocation whose providers are all still feasible, so
a change moves only the contracts that must move (make-before-break is the xDS layer's job: the
old cluster stays until the new routes are ACKed).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from opentelemetry import trace

from meshctl.contracts.service import Negotiator
from meshctl.errors import CapacityConflict, Conflict, NotFound, ValidationFailed
from meshctl.model import LIVE_STATES, Allocation, Contract, ContractEvent, ContractState
from meshctl.topology.solver import solve

log = logging.getLogger(__name__)
tracer = trace.get_tracer("meshctl.contracts")


class Lifecycle:
    """Every state change runs under the negotiator's lock and re-reads the contract inside it, so
    a verb and a re-solve never write from each other's stale copy (last writer would win)."""

    def __init__(self, negotiator: Negotiator) -> None:
        self.n = negotiator
        self.state = negotiator.state

    def get(self, contract_id: str, owner: str | None = None) -> Contract:
        """`owner=None` is the operator's view; an agent never learns another agent's contract exists."""
        c = self.state.contracts.get(contract_id)
        if c is None or (owner is not None and c.owner != owner):
            raise NotFound(f"contract {contract_id!r} not found", field="contract_id")
        return c

    async def _transition(
        self,
        contract: Contract,
        state: ContractState,
        *,
        kind: str,
        actor: str,
        detail: str = "",
        allocation: Allocation | bool | None = False,
        reasons: list[str] | None = None,
        expires_at: float | None = None,
    ) -> Contract:
        now = self.n.clock()
        update: dict[str, object] = {"state": state, "updated_at": now}
        if allocation is not False:
            update["allocation"] = allocation
        if reasons is not None:
            update["reasons"] = reasons
        if expires_at is not None:
            update["expires_at"] = expires_at
        new = contract.model_copy(update=update)
        new.events = [*contract.events, ContractEvent(at=now, kind=kind, detail=detail)]
        holds = state in LIVE_STATES or state is ContractState.PENDING_APPROVAL
        reservation = new.allocation.reservation if (holds and new.allocation) else {}
        await self.n.commit(new, reservation)
        # Stored: push before the audit and history writes, so a store failure after this point
        # cannot leave the proxies on routes the stored state no longer has (a retry would 409).
        self.n.push([new.request.consumer])
        await self.n.audit(actor=actor, subject=contract.id, kind=kind, decision=detail or str(state))
        await self.n.record(f"contract {kind}", {"contract": contract.id})
        return new

    # -- agent and operator verbs ---------------------------------------------------------------------
    async def renew(self, contract_id: str, owner: str | None, duration_s: float | None = None) -> Contract:
        async with self.n.lock:
            return await self._renew(self.get(contract_id, owner), owner, duration_s)

    async def _renew(self, c: Contract, owner: str | None, duration_s: float | None) -> Contract:
        if c.state not in LIVE_STATES:
            raise Conflict(f"contract is {c.state}, only active or degraded contracts renew", field="state")
        extra = duration_s or c.request.duration_s
        # A renewal is a new commitment: the policies decide on it as on a proposal, or a contract
        # could renew itself past what a deny policy allows (e.g. deny-unbounded-duration).
        zone = c.request.consumer_zone or self.state.graph.consumer_zone(c.request.consumer) or ""
        verdict = self.n.policies().evaluate(
            c.request.model_copy(update={"duration_s": extra}),
            owner=c.owner,
            consumer_zone=zone,
            contract_id=c.id,
        )
        if verdict.denied:
            hits = "; ".join(f"policy:{h.name}: {h.message}" for h in verdict.denied)
            raise ValidationFailed(
                f"renewal denied: {hits}",
                field="duration_s",
                details={"policies": [h.name for h in verdict.denied]},
            )
        new = await self._transition(
            c,
            c.state,
            kind="renew",
            actor=owner or "operator",
            detail=f"+{extra:g}s",
            expires_at=self.n.clock() + extra,
        )
        return new

    async def revoke(self, contract_id: str, owner: str | None, actor: str) -> Contract:
        async with self.n.lock:
            c = self.get(contract_id, owner)
            if c.state not in LIVE_STATES and c.state is not ContractState.PENDING_APPROVAL:
                raise Conflict(f"contract is already {c.state}", field="state")
            new = await self._transition(
                c, ContractState.REVOKED, kind="revoke", actor=actor, detail="revoked"
            )
        await self.resolve_degraded()
        return new

    async def approve(self, contract_id: str, actor: str, reason: str) -> Contract:
        async with self.n.lock:
            c = self.get(contract_id)
            if c.state is not ContractState.PENDING_APPROVAL:
                raise Conflict(f"contract is {c.state}, not pending_approval", field="state")
            now = self.n.clock()
            new = await self._transition(
                c,
                ContractState.ACTIVE,
                kind="approval",
                actor=actor,
                detail=reason,
                reasons=[r for r in c.reasons if not r.startswith("policy:")]
                + [f"approved by {actor}: {reason}"],
                expires_at=now + c.request.duration_s,
            )
            # The mesh may have changed while a human decided: go live on what is feasible now
            # (moved, or degraded with reasons) rather than on the allocation held since then.
            if await self._resolve_one(new, "approved"):
                new = self.state.contracts[new.id]
        return new

    async def reject(self, contract_id: str, actor: str, reason: str) -> Contract:
        async with self.n.lock:
            c = self.get(contract_id)
            if c.state is not ContractState.PENDING_APPROVAL:
                raise Conflict(f"contract is {c.state}, not pending_approval", field="state")
            new = await self._transition(
                c,
                ContractState.REJECTED,
                kind="approval_rejected",
                actor=actor,
                detail=reason,
                reasons=[*c.reasons, f"rejected by {actor}: {reason}"],
            )
        await self.resolve_degraded()
        return new

    # -- time ----------------------------------------------------------------------------------------------
    async def expire_due(self) -> list[str]:
        """Expire contracts past `expires_at` (pending approvals time out to rejected)."""
        now = self.n.clock()
        done: list[str] = []
        async with self.n.lock:
            for c in list(self.state.contracts.values()):
                if c.expires_at > now:
                    continue
                if c.state in LIVE_STATES:
                    await self._transition(
                        c, ContractState.EXPIRED, kind="expiry", actor="system", detail="duration ended"
                    )
                elif c.state is ContractState.PENDING_APPROVAL:
                    await self._transition(
                        c,
                        ContractState.REJECTED,
                        kind="expiry",
                        actor="system",
                        detail="approval not given in time",
                        reasons=[*c.reasons, "approval timed out"],
                    )
                else:
                    continue
                done.append(c.id)
        if done:
            await self.resolve_degraded()
        return done

    async def lapse_leases(self, *, grace_from: float = 0.0) -> list[str]:
        """Providers whose lease ended leave the graph exactly as if they had deregistered.

        No lease ends before `grace_from` + its ttl: the control plane sets it when the store comes
        back from an outage, during which heartbeats could not be stored."""
        now = self.n.clock()
        gone = [
            p.id
            for p in self.state.graph.providers()
            if p.expires_at is not None and max(p.expires_at, grace_from + (p.ttl_s or 0.0)) < now
        ]
        for pid in gone:
            await self.n.store.delete_provider(pid)
            self.state.graph.remove_provider(pid)
            await self.n.audit(
                actor="system", subject=pid, kind="lease_lapsed", decision="provider lease lapsed"
            )
            await self.n.record("provider lease lapsed", {"provider": pid})
        if gone:
            await self.resolve(gone, cause="provider lease lapsed")
        return gone

    # -- re-solve ------------------------------------------------------------------------------------------------
    async def resolve(
        self, provider_ids: Iterable[str] = (), *, cause: str, everything: bool = False
    ) -> list[str]:
        """Re-solve contracts that use `provider_ids` (or every live one); returns the ids that moved."""
        ids = set(provider_ids)
        affected = (
            [c.id for c in self.state.holding()]
            if everything
            else [c.id for pid in ids for c in self.state.using(pid)]
        )
        moved: list[str] = []
        async with self.n.lock:
            for cid in dict.fromkeys(affected):
                c = self.state.contracts.get(cid)
                # Re-read under the lock: a revoke or renew may have landed since `affected`.
                if c is None or not _holds(c):
                    continue
                if await self._resolve_one(c, cause):
                    moved.append(cid)
        return moved

    async def resolve_degraded(self) -> list[str]:
        """Capacity freed up: degraded contracts may be fully met again."""
        degraded = [c.id for c in self.state.live() if c.state is ContractState.DEGRADED]
        if not degraded:
            return []
        moved: list[str] = []
        async with self.n.lock:
            for cid in degraded:
                c = self.state.contracts.get(cid)
                if c is None or c.state is not ContractState.DEGRADED:
                    continue
                if await self._resolve_one(c, "capacity freed"):
                    moved.append(cid)
        return moved

    async def _resolve_one(self, c: Contract, cause: str) -> bool:
        with tracer.start_as_current_span("resolve") as span:
            span.set_attribute("mesh.contract_id", c.id)
            span.set_attribute("mesh.cause", cause)
            zone = c.request.consumer_zone or self.state.graph.consumer_zone(c.request.consumer)
            if zone is None or self.state.graph.zone(zone) is None:
                return False
            verdict = self.n.policies().evaluate(
                c.request, owner=c.owner, consumer_zone=zone, contract_id=c.id
            )
            now = self.n.clock()
            for _ in range(3):
                result = solve(
                    c.request,
                    self.state.graph,
                    self.state.residual(exclude=c.id),
                    consumer_zone=zone,
                    now=now,
                    allowed=verdict.allows,
                    current=c.allocation,
                )
                self.n.last_solve[c.id] = (now, result, verdict.to_dict())
                new_alloc: Allocation | None
                if result.allocation is not None:
                    new_alloc, state, reasons = result.allocation, ContractState.ACTIVE, []
                else:
                    offer = result.counter_offer
                    new_alloc = offer.allocation if offer is not None else None
                    state = ContractState.DEGRADED
                    reasons = result.reasons() or ["no feasible provider"]
                pending = c.state is ContractState.PENDING_APPROVAL
                if pending:
                    # Waiting for a human: the held capacity follows the mesh, the state does not.
                    state, reasons = ContractState.PENDING_APPROVAL, list(dict.fromkeys([*c.reasons, *reasons]))
                if state is c.state and _same_shares(new_alloc, c.allocation):
                    return False
                kind = "resolve" if state is not ContractState.DEGRADED else "degraded"
                detail = f"{cause}: " + (
                    "moved" if state is not ContractState.DEGRADED else "; ".join(reasons)
                )
                try:
                    await self._transition(
                        c,
                        state,
                        kind=kind,
                        actor="system",
                        detail=detail,
                        allocation=new_alloc,
                        reasons=reasons,
                    )
                except CapacityConflict:
                    await self.n.refresh_reservations()
                    continue
                if self.n.metrics is not None:
                    self.n.metrics.resolved(kind)
                return True
            return False


def _holds(c: Contract) -> bool:
    return c.state in LIVE_STATES or c.state is ContractState.PENDING_APPROVAL


def _share_key(al: Allocation) -> list[tuple[str, float, int, int]]:
    return sorted((s.provider_id, round(s.rps, 6), s.weight, s.priority) for s in [*al.shares, *al.failover])


def _same_shares(a: Allocation | None, b: Allocation | None) -> bool:
    if a is None or b is None:
        return a is b
    return _share_key(a) == _share_key(b)
