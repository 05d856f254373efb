"""Renew, revoke, approve and reject, and expiry: state, capacity held, and the recorded trail."""

from __future__ import annotations

import pytest
from contracts_helpers import Clock, request, spec

from meshctl.contracts.service import APPROVAL_HOLD_S
from meshctl.controlplane import ControlPlane
from meshctl.errors import Conflict, NotFound, ValidationFailed
from meshctl.model import ContractState, ProposalOutcome

AGENT = "agent-a"


async def _held(plane: ControlPlane) -> dict[str, float]:
    res = await plane.store.reservations()
    return {p: sum(h.values()) for p, h in res.items() if h}


async def _kinds(plane: ControlPlane, cid: str) -> list[str]:
    stored = await plane.store.get_contract(cid)
    assert stored is not None
    return [e.kind for e in stored.events]


async def test_renew_extends_the_contract_past_its_first_end(plane: ControlPlane, clock: Clock) -> None:
    await plane.put_provider(spec("ga-a", "eu-west-1a"))
    d = await plane.negotiator.propose(AGENT, request(rps=50, duration_s=60))
    assert d.outcome is ProposalOutcome.ADMITTED and d.contract is not None
    cid = d.contract.id
    assert d.contract.expires_at == clock.now + 60

    clock.advance(30)
    renewed = await plane.lifecycle.renew(cid, AGENT, duration_s=120)
    assert renewed.expires_at == clock.now + 120
    assert renewed.state is ContractState.ACTIVE
    assert renewed.allocation == d.contract.allocation  # renewing does not move traffic
    assert (await _kinds(plane, cid))[-1] == "renew"

    clock.advance(60)  # past the original end: still alive
    assert await plane.lifecycle.expire_due() == []
    assert await _held(plane) == {"ga-a": 50.0}

    clock.advance(61)
    assert await plane.lifecycle.expire_due() == [cid]
    gone = plane.lifecycle.get(cid)
    assert gone.state is ContractState.EXPIRED
    assert await _held(plane) == {}
    assert (await _kinds(plane, cid))[-1] == "expiry"


async def test_renew_without_duration_uses_the_requested_one(plane: ControlPlane, clock: Clock) -> None:
    await plane.put_provider(spec("ga-a", "eu-west-1a"))
    d = await plane.negotiator.propose(AGENT, request(rps=10, duration_s=45))
    assert d.contract is not None
    clock.advance(40)
    renewed = await plane.lifecycle.renew(d.contract.id, None)  # the operator may renew too
    assert renewed.expires_at == clock.now + 45


async def test_only_live_contracts_renew_and_only_their_owner_sees_them(plane: ControlPlane) -> None:
    await plane.put_provider(spec("ga-a", "eu-west-1a"))
    d = await plane.negotiator.propose(AGENT, request(rps=10))
    assert d.contract is not None
    cid = d.contract.id
    with pytest.raises(NotFound):
        await plane.lifecycle.renew(cid, "agent-b")
    with pytest.raises(NotFound):
        await plane.lifecycle.revoke(cid, "agent-b", "agent-b")
    assert plane.lifecycle.get(cid).state is ContractState.ACTIVE

    revoked = await plane.lifecycle.revoke(cid, AGENT, AGENT)
    assert revoked.state is ContractState.REVOKED
    assert await _held(plane) == {}
    with pytest.raises(Conflict):
        await plane.lifecycle.renew(cid, AGENT)
    with pytest.raises(Conflict):
        await plane.lifecycle.revoke(cid, AGENT, AGENT)


async def test_large_spend_waits_for_approval_holding_its_capacity(plane: ControlPlane, clock: Clock) -> None:
    await plane.put_provider(spec("ga-a", "eu-west-1a", capacity=300, cost=0.1))
    # 200 rps x a bid of 30 per 1k = 6000 > 5000: the spend-escalation policy asks a human.
    d = await plane.negotiator.propose(AGENT, request(rps=200, bid=30.0, duration_s=600))
    assert d.outcome is ProposalOutcome.PENDING_APPROVAL and d.contract is not None
    c = d.contract
    assert c.state is ContractState.PENDING_APPROVAL
    assert any(r.startswith("policy:spend-escalation") for r in c.reasons)
    assert c.expires_at == clock.now + APPROVAL_HOLD_S
    assert await _held(plane) == {"ga-a": 200.0}
    # Held capacity is not available to others meanwhile.
    other = await plane.negotiator.propose("agent-b", request(rps=150))
    assert other.outcome is ProposalOutcome.COUNTER_OFFER

    clock.advance(10)
    approved = await plane.lifecycle.approve(c.id, "operator:oncall", "incident 4711")
    assert approved.state is ContractState.ACTIVE
    assert approved.expires_at == clock.now + 600
    assert "approved by operator:oncall: incident 4711" in approved.reasons
    assert not any(r.startswith("policy:") for r in approved.reasons)
    assert await _held(plane) == {"ga-a": 200.0}
    assert (await _kinds(plane, c.id))[-1] == "approval"
    audit = [e for e in await plane.store.list_audit() if e["subject"] == c.id]
    assert [e["kind"] for e in audit][-1] == "approval" and audit[-1]["actor"] == "operator:oncall"
    with pytest.raises(Conflict):
        await plane.lifecycle.approve(c.id, "operator:oncall", "twice")
    with pytest.raises(Conflict):
        await plane.lifecycle.reject(c.id, "operator:oncall", "too late")


async def test_rejecting_a_pending_contract_frees_its_capacity(plane: ControlPlane) -> None:
    await plane.put_provider(spec("ga-a", "eu-west-1a", capacity=300, cost=0.1))
    d = await plane.negotiator.propose(AGENT, request(rps=200, bid=30.0))
    assert d.contract is not None
    rejected = await plane.lifecycle.reject(d.contract.id, "operator:oncall", "not for this")
    assert rejected.state is ContractState.REJECTED
    assert rejected.reasons[-1] == "rejected by operator:oncall: not for this"
    assert await _held(plane) == {}
    assert (await plane.negotiator.propose("agent-b", request(rps=250))).outcome is ProposalOutcome.ADMITTED


async def test_an_approval_not_given_in_time_becomes_a_rejection(plane: ControlPlane, clock: Clock) -> None:
    await plane.put_provider(spec("ga-a", "eu-west-1a", capacity=300, cost=0.1))
    d = await plane.negotiator.propose(AGENT, request(rps=200, bid=30.0))
    assert d.contract is not None
    clock.advance(APPROVAL_HOLD_S - 1)
    assert await plane.lifecycle.expire_due() == []
    clock.advance(2)
    assert await plane.lifecycle.expire_due() == [d.contract.id]
    c = plane.lifecycle.get(d.contract.id)
    assert c.state is ContractState.REJECTED and "approval timed out" in c.reasons
    assert await _held(plane) == {}
    with pytest.raises(Conflict):
        await plane.lifecycle.approve(c.id, "operator:oncall", "late")


async def test_dry_run_decides_the_same_and_stores_nothing(plane: ControlPlane) -> None:
    await plane.put_provider(spec("ga-a", "eu-west-1a", capacity=100))
    history = len(await plane.store.list_history())
    audit = len(await plane.store.list_audit())
    what_if = await plane.negotiator.propose(AGENT, request(rps=80), dry_run=True)
    assert what_if.dry_run and what_if.outcome is ProposalOutcome.ADMITTED
    assert what_if.contract is not None and what_if.contract.allocation is not None
    assert await plane.store.list_contracts() == []
    assert await _held(plane) == {}
    assert len(await plane.store.list_history()) == history
    assert len(await plane.store.list_audit()) == audit
    real = await plane.negotiator.propose(AGENT, request(rps=80))
    assert real.contract is not None and real.contract.allocation is not None
    assert real.contract.allocation.shares == what_if.contract.allocation.shares


async def test_a_renewal_is_checked_by_the_policies_like_a_proposal(plane: ControlPlane, clock: Clock) -> None:
    await plane.put_provider(spec("ga-a", "eu-west-1a"))
    d = await plane.negotiator.propose(AGENT, request(rps=10, duration_s=600))
    assert d.contract is not None
    cid = d.contract.id
    # deny-unbounded-duration refuses contracts over 30 days; renewing must not get around it.
    with pytest.raises(ValidationFailed) as exc:
        await plane.lifecycle.renew(cid, AGENT, duration_s=10**8)
    assert exc.value.field == "duration_s"
    assert "policy:deny-unbounded-duration" in exc.value.message
    c = plane.lifecycle.get(cid)
    assert c.expires_at == d.contract.expires_at and c.events[-1].kind == "admitted"
    ok = await plane.lifecycle.renew(cid, AGENT, duration_s=2_592_000)  # exactly 30 days is allowed
    assert ok.expires_at == clock.now + 2_592_000
