"""Property: every decision the control plane takes leaves exactly one audit entry (dry runs none).

Random providers, contracts and operator/agent actions run against a ControlPlane (no xDS) on the
default policies, which deny, escalate, warn and require — so every kind of decision occurs.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from contracts_helpers import REPO, Clock, request, spec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshctl.controlplane import ControlPlane
from meshctl.errors import Conflict
from meshctl.governance.audit import verify
from meshctl.governance.policy import PolicySet
from meshctl.model import ProposalOutcome
from meshctl.store.memory import MemoryStore
from meshctl.topology.loader import load_topology

ZONES = ["eu-west-1a", "eu-west-1b", "eu-central-1a", "us-east-1a"]
POLICIES = PolicySet.load(REPO / "policies")
TOPOLOGY = load_topology(REPO / "deploy" / "topology.yaml")

providers = st.lists(
    st.tuples(st.sampled_from(ZONES), st.integers(20, 200), st.integers(1, 30), st.sampled_from([0.1, 0.5, 2.0])),
    min_size=1,
    max_size=4,
)
proposal = st.fixed_dictionaries(
    {
        "rps": st.integers(5, 400),
        "p99": st.sampled_from([5, 40, 200]),
        "bid": st.sampled_from([None, 0.2, 1.0, 200.0]),
        "pii": st.booleans(),
        "dry_run": st.booleans(),
        "duration_s": st.sampled_from([60, 600, 40 * 86400]),
    }
)
action = st.one_of(
    st.tuples(st.just("propose"), proposal),
    st.tuples(st.just("revoke"), st.integers(0, 9)),
    st.tuples(st.just("approve"), st.integers(0, 9)),
    st.tuples(st.just("reject"), st.integers(0, 9)),
    st.tuples(st.just("advance"), st.sampled_from([30, 120, 1000])),
    st.tuples(st.just("leave"), st.integers(0, 3)),
)


async def _run(provider_defs: list[tuple[str, int, int, float]], actions: list[tuple[str, Any]]) -> None:
    clock = Clock()
    plane = ControlPlane(MemoryStore(origin="prop"), policies=POLICIES, topology=TOPOLOGY, clock=clock, tick_s=3600)
    await plane.start(serve_xds=False)
    try:
        for i, (zone, cap, p99, cost) in enumerate(provider_defs):
            await plane.put_provider(spec(f"p{i}", zone, capacity=cap, p99=p99, cost=cost))
        ids: list[str] = []

        async def decisions() -> Counter[str]:
            return Counter(e["subject"] for e in await plane.store.list_audit())

        for kind, arg in actions:
            before = await decisions()
            if kind == "propose":
                req = request(
                    arg["rps"], arg["p99"], bid=arg["bid"], duration_s=arg["duration_s"],
                    labels={"data_class": "pii"} if arg["pii"] else {},
                )  # fmt: skip
                d = await plane.negotiator.propose("agent", req, dry_run=arg["dry_run"])
                after = await decisions()
                expected = 0 if arg["dry_run"] else 1
                assert after[d.proposal_id] - before[d.proposal_id] == expected, (d.outcome, arg)
                if d.contract is not None and not arg["dry_run"] and d.outcome is not ProposalOutcome.REJECTED:
                    ids.append(d.proposal_id)
                continue
            if kind in ("revoke", "approve", "reject"):
                if not ids:
                    continue
                cid = ids[arg % len(ids)]
                try:
                    if kind == "revoke":
                        await plane.lifecycle.revoke(cid, None, "operator:test")
                    elif kind == "approve":
                        await plane.lifecycle.approve(cid, "operator:test", "ok")
                    else:
                        await plane.lifecycle.reject(cid, "operator:test", "no")
                except Conflict:
                    # Not a decision: the contract was in the wrong state; nothing is recorded.
                    assert (await decisions())[cid] == before[cid]
                    continue
                # The action's own decision: one entry (a re-solve it triggers on other contracts
                # is their decision, counted below by subject).
                assert (await decisions())[cid] - before[cid] == 1
                continue
            if kind == "advance":
                clock.advance(arg)
                live_before = {c.id: c.state for c in plane.state.contracts.values()}
                expired = await plane.lifecycle.expire_due()
                after = await decisions()
                for cid in expired:
                    assert after[cid] - before[cid] == 1, (cid, live_before[cid])
                continue
            if kind == "leave":
                pid = f"p{arg}"
                if plane.state.graph.provider(pid) is None:
                    continue
                using = {c.id: c.allocation for c in plane.state.live()}
                await plane.delete_provider(pid)
                after = await decisions()
                for cid, old in using.items():
                    new = plane.state.contracts[cid]
                    moved = after[cid] - before[cid]
                    # A contract re-solved to a new allocation (or degraded) has one entry; one
                    # that did not change has none.
                    assert moved == (0 if new.allocation == old and new.state.value in ("active",) else moved)
                    assert moved in (0, 1), (cid, moved)
        assert verify(await plane.store.list_audit()).ok
    finally:
        await plane.stop()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(providers, st.lists(action, min_size=1, max_size=12))
def test_every_decision_has_exactly_one_audit_entry(
    provider_defs: list[tuple[str, int, int, float]], actions: list[tuple[str, Any]]
) -> None:
    asyncio.run(_run(provider_defs, actions))
