"""Keeping contracts as the mesh changes: stable re-solves, degraded and back, leases, replicas."""

from __future__ import annotations

from contracts_helpers import Clock, request, spec

from meshctl.controlplane import ControlPlane
from meshctl.model import ContractState, Link, ProposalOutcome, TopologyFile

AGENT = "agent-a"


def _shares(plane: ControlPlane, cid: str) -> dict[str, float]:
    c = plane.lifecycle.get(cid)
    assert c.allocation is not None
    return {s.provider_id: s.rps for s in c.allocation.shares}


async def _admit(plane: ControlPlane, **kw: object) -> str:
    d = await plane.negotiator.propose(AGENT, request(**kw))  # type: ignore[arg-type]
    assert d.outcome is ProposalOutcome.ADMITTED, d
    assert d.contract is not None
    return d.contract.id


async def test_an_unrelated_provider_joining_does_not_move_an_allocation(plane: ControlPlane) -> None:
    await plane.put_provider(spec("ga-a", "eu-west-1a", capacity=100, cost=0.30))
    await plane.put_provider(spec("ga-b", "eu-west-1b", capacity=100, cost=0.40))
    await plane.put_provider(spec("ga-c", "eu-west-1c", capacity=100, cost=0.50))
    await plane.put_provider(spec("ga-d", "eu-west-1c", capacity=100, cost=0.60))
    cid = await _admit(plane, rps=150)
    before = plane.lifecycle.get(cid)
    assert before.allocation is not None
    assert _shares(plane, cid) == {"ga-a": 100.0, "ga-b": 50.0}
    assert {s.provider_id for s in before.allocation.failover} == {"ga-c", "ga-d"}

    # Cheaper and closer than all: a fresh proposal would take it; the kept contract must not move.
    await plane.put_provider(spec("ga-new", "eu-west-1a", capacity=500, cost=0.01))
    await plane.put_provider(spec("other-cap", "eu-west-1a", cap="speech-to-text"))
    await plane.lifecycle.resolve(everything=True, cause="test: re-check everything")
    after = plane.lifecycle.get(cid)
    assert after.allocation == before.allocation
    assert after.state is ContractState.ACTIVE
    assert [e.kind for e in after.events] == ["proposed", "admitted"]

    fresh = await plane.negotiator.propose(AGENT, request(rps=150), dry_run=True)
    assert fresh.contract is not None and fresh.contract.allocation is not None
    assert {s.provider_id for s in fresh.contract.allocation.shares} == {"ga-new"}


async def test_a_newcomer_may_become_a_failover_but_primaries_stay(plane: ControlPlane) -> None:
    await plane.put_provider(spec("ga-a", "eu-west-1a", capacity=100, cost=0.30))
    cid = await _admit(plane, rps=50)
    before = plane.lifecycle.get(cid)
    assert before.allocation is not None and before.allocation.failover == []
    await plane.put_provider(spec("ga-new", "eu-west-1b", capacity=500, cost=0.01))
    await plane.lifecycle.resolve(everything=True, cause="test: re-check everything")
    after = plane.lifecycle.get(cid)
    assert after.allocation is not None
    assert after.allocation.shares == before.allocation.shares
    assert [s.provider_id for s in after.allocation.failover] == ["ga-new"]
    assert await plane.store.reservations() == {"ga-a": {cid: 50.0}}  # a failover holds nothing


async def test_a_provider_leaving_moves_only_the_contracts_that_used_it(plane: ControlPlane) -> None:
    await plane.put_provider(spec("ga-a", "eu-west-1a", capacity=100, cost=0.10))
    await plane.put_provider(spec("ga-b", "eu-west-1b", capacity=100, cost=0.20))
    await plane.put_provider(spec("ga-c", "eu-west-1c", capacity=100, cost=0.30))
    on_a = await _admit(plane, rps=100)
    on_b = await _admit(plane, rps=60)
    assert _shares(plane, on_a) == {"ga-a": 100.0}
    assert _shares(plane, on_b) == {"ga-b": 60.0}

    await plane.delete_provider("ga-a")
    assert _shares(plane, on_b) == {"ga-b": 60.0}
    moved = plane.lifecycle.get(on_a)
    assert moved.state is ContractState.ACTIVE
    assert _shares(plane, on_a) == {"ga-b": 40.0, "ga-c": 60.0}
    assert moved.events[-1].kind == "resolve" and "ga-a left" in moved.events[-1].detail
    held = await plane.store.reservations()
    assert "ga-a" not in held
    assert sum(held["ga-b"].values()) == 100.0


async def test_degraded_when_capacity_disappears_and_active_when_it_returns(plane: ControlPlane) -> None:
    await plane.put_provider(spec("ga-a", "eu-west-1a", capacity=100, cost=0.10))
    await plane.put_provider(spec("ga-b", "eu-west-1b", capacity=50, cost=0.20))
    cid = await _admit(plane, rps=120)
    assert _shares(plane, cid) == {"ga-a": 100.0, "ga-b": 20.0}

    await plane.delete_provider("ga-a")
    c = plane.lifecycle.get(cid)
    assert c.state is ContractState.DEGRADED
    assert c.reasons and any("sla.rps" in r for r in c.reasons), c.reasons
    # It keeps the best the mesh can still do, and holds no more than exists.
    assert _shares(plane, cid) == {"ga-b": 50.0}
    assert {p: sum(h.values()) for p, h in (await plane.store.reservations()).items()} == {"ga-b": 50.0}
    assert c.events[-1].kind == "degraded"

    await plane.put_provider(spec("ga-a", "eu-west-1a", capacity=100, cost=0.10))
    c = plane.lifecycle.get(cid)
    assert c.state is ContractState.ACTIVE and c.reasons == []
    assert sum(_shares(plane, cid).values()) == 120.0
    assert c.events[-1].kind == "resolve"


async def test_a_revoked_contract_frees_capacity_for_a_degraded_one(plane: ControlPlane) -> None:
    await plane.put_provider(spec("ga-a", "eu-west-1a", capacity=100, cost=0.10))
    await plane.put_provider(spec("ga-b", "eu-west-1b", capacity=100, cost=0.20))
    big = await _admit(plane, rps=100)
    small = await _admit(plane, rps=60)
    await plane.delete_provider("ga-b")  # 100 rps of capacity left for 160 rps of contracts
    states = {c: plane.lifecycle.get(c).state for c in (big, small)}
    assert sorted(states.values()) == [ContractState.ACTIVE, ContractState.DEGRADED], states
    held = await plane.store.reservations()
    assert sum(held["ga-a"].values()) <= 100.0

    degraded = next(c for c, s in states.items() if s is ContractState.DEGRADED)
    other = small if degraded == big else big
    await plane.lifecycle.revoke(other, AGENT, AGENT)
    c = plane.lifecycle.get(degraded)
    assert c.state is ContractState.ACTIVE, c.reasons
    assert sum(_shares(plane, degraded).values()) == c.request.sla.rps
    assert c.events[-1].kind == "resolve" and "capacity freed" in c.events[-1].detail


async def test_a_lapsed_lease_counts_as_leaving(plane: ControlPlane, clock: Clock) -> None:
    await plane.put_provider(spec("ga-a", "eu-west-1a", capacity=100, cost=0.10, ttl_s=10))
    await plane.put_provider(spec("ga-b", "eu-west-1b", capacity=100, cost=0.20))
    cid = await _admit(plane, rps=80)
    assert _shares(plane, cid) == {"ga-a": 80.0}

    clock.advance(8)
    await plane.heartbeat("ga-a")
    clock.advance(8)  # 16 s after registering, 8 s after the heartbeat: alive
    assert await plane.lifecycle.lapse_leases() == []
    clock.advance(3)
    assert await plane.lifecycle.lapse_leases() == ["ga-a"]
    assert plane.state.graph.provider("ga-a") is None
    assert _shares(plane, cid) == {"ga-b": 80.0}
    assert "provider lease lapsed" in plane.lifecycle.get(cid).events[-1].detail
    assert [e["kind"] for e in await plane.store.list_audit()].count("lease_lapsed") == 1


async def test_a_slower_link_moves_contracts_that_no_longer_meet_their_p99(plane: ControlPlane) -> None:
    await plane.put_provider(spec("ga-fra", "eu-central-1a", capacity=100, p99=25, cost=0.10))
    await plane.put_provider(spec("ga-dub", "eu-west-1b", capacity=100, p99=20, cost=0.50))
    cid = await _admit(plane, rps=50, p99=40)  # 12 ms + 25 ms to Frankfurt: fits, and cheaper
    assert _shares(plane, cid) == {"ga-fra": 50.0}
    await plane.put_link(Link(a="eu-west-1a", b="eu-central-1a", latency_ms=30))
    # The direct link is now 30 ms, but through eu-west-1b it is 1.2 + 13 = 14.2 ms: 39.2 still fits.
    assert _shares(plane, cid) == {"ga-fra": 50.0}
    assert plane.lifecycle.get(cid).events[-1].kind == "admitted"
    # Now the best path is via eu-central-1b: 14.5 + 1.4 = 15.9 ms, and 40.9 ms is over budget.
    await plane.put_link(Link(a="eu-west-1b", b="eu-central-1a", latency_ms=30))
    assert _shares(plane, cid) == {"ga-dub": 50.0}
    assert plane.lifecycle.get(cid).state is ContractState.ACTIVE


async def test_a_stale_replica_never_oversubscribes(plane: ControlPlane, topology: TopologyFile) -> None:
    """Two replicas on one store; the second has not seen the first's admission yet."""
    await plane.put_provider(spec("ga-a", "eu-west-1a", capacity=100, cost=0.10))
    stale = ControlPlane(plane.store, policies=plane.policy_set, topology=topology)
    await stale.load()  # its view: ga-a with all 100 rps free
    assert await _admit(plane, rps=80)
    assert stale.state.residual()["ga-a"] == 100.0 and stale.state.reservations == {}

    d = await stale.negotiator.propose("agent-b", request(rps=60))
    # The store refused the stale commit; the replica re-read and answered with what is left.
    assert d.outcome is ProposalOutcome.COUNTER_OFFER, d
    assert d.counter_offer is not None and d.counter_offer.sla.rps == 20.0
    held = await plane.store.reservations()
    assert sum(held["ga-a"].values()) == 80.0
