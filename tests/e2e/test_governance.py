"""Governance seen from outside: compliance-aware routing through real Envoy, human escalation,
policy reload refusing a broken file, and a tampered audit entry named by verify."""

from __future__ import annotations

from typing import Any

from _mesh import CAPABILITY, Mesh
from _traffic import fetch, paced
from harness import wait_for

ZONE = "eu-west-1a"


def _shares(contract: dict[str, Any]) -> set[str]:
    alloc = contract.get("allocation") or {}
    return {s["provider_id"] for s in [*alloc.get("shares", []), *alloc.get("failover", [])]}


async def _serving(port: int, host: str = CAPABILITY) -> None:
    async def ok() -> bool:
        return (await fetch(port, host)).status == 200

    await wait_for(ok, timeout=10, what="Envoy to route the capability")


async def test_pii_never_leaves_the_eu_even_when_abroad_is_cheaper_and_faster(mesh: Mesh) -> None:
    eu = await mesh.provider("ga-eu", "eu-central-1a", capacity=300, p99=30, cost=0.90)
    us = await mesh.provider(
        "ga-us", "us-east-1a", capacity=1000, p99=1, cost=0.01, labels={"compliance": ["gdpr"]}
    )
    sc = await mesh.sidecar("fd-pii", "fraud-detection", ZONE)
    pii = {
        "consumer": "fraud-detection",
        "capability": CAPABILITY,
        "sla": {"p99_latency_ms": 200, "rps": 100},  # loose enough that us-east is latency-feasible
        "labels": {"data_class": "pii"},
    }
    # The same request without PII goes abroad: the policy, not the SLA, is what keeps PII home.
    plain = await mesh.propose({**pii, "labels": {}}, dry_run="true")
    assert _shares(plain.json()["contract"]) >= {"ga-us"}, plain.text

    r = await mesh.propose(pii, wait="acked")
    assert r.status_code == 201, r.text
    contract = r.json()["contract"]
    assert _shares(contract) == {"ga-eu"}
    why = (await mesh.agent.get(f"/v1/contracts/{contract['id']}/explain")).json()
    dropped = {c["provider"]: c["dropped_because"] for c in why["candidates"]}
    assert dropped["ga-us"] == "policy:pii-eu-only"

    tally = await paced(sc.port, CAPABILITY, 200, rps=80)
    assert tally.failed() == [] and us.hits == 0 and eu.hits >= 200

    # Re-solve: the only EU provider leaves. The contract degrades rather than move abroad.
    assert (await mesh.client("provider-fleet").delete("/v1/providers/ga-eu")).status_code == 204
    after = await mesh.contract(contract["id"])
    assert after["state"] == "degraded", after
    assert "ga-us" not in _shares(after)
    assert any("pii-eu-only" in reason for reason in after["reasons"]), after["reasons"]
    await paced(sc.port, CAPABILITY, 50, rps=80)
    assert us.hits == 0


async def test_escalated_contract_carries_traffic_only_after_approval(mesh: Mesh) -> None:
    up = await mesh.provider("ga-1", "eu-west-1b", capacity=500, p99=10, cost=0.2)
    sc = await mesh.sidecar("fd-esc", "fraud-detection", ZONE)
    big_spender = {
        "consumer": "fraud-detection",
        "capability": CAPABILITY,
        "sla": {"p99_latency_ms": 40, "rps": 50},
        "max_cost_per_1k": 200,  # 50 x 200 = 10,000 > 5,000: spend-escalation
    }
    r = await mesh.propose(big_spender)
    assert r.status_code == 202, r.text
    cid = r.json()["contract"]["id"]
    assert r.json()["outcome"] == "pending_approval"
    assert any("spend-escalation" in x for x in r.json()["reasons"])
    # Capacity is held while a human decides, but no route exists.
    assert mesh.held() == {"ga-1": 50}
    assert (await fetch(sc.port, CAPABILITY)).status == 404
    assert up.hits == 0
    # Agents cannot approve their own exceptions.
    assert (await mesh.agent.post(f"/v1/contracts/{cid}/approve", json={"reason": "me"})).status_code == 403

    r = await mesh.operator.post(f"/v1/contracts/{cid}/approve", json={"reason": "incident INC-42"})
    assert r.status_code == 200, r.text
    await _serving(sc.port)
    seen = await mesh.contract(cid, who="agent-a")
    assert seen["state"] == "active"
    assert any("approved by operator:oncall: incident INC-42" in x for x in seen["reasons"])

    # A rejected exception never carries traffic and gives its capacity back.
    sc2 = await mesh.sidecar("risk-1", "risk-scoring", ZONE)
    r = await mesh.propose({**big_spender, "consumer": "risk-scoring"})
    assert r.status_code == 202, r.text
    cid2 = r.json()["contract"]["id"]
    r = await mesh.operator.post(f"/v1/contracts/{cid2}/reject", json={"reason": "not during a freeze"})
    assert r.status_code == 200 and r.json()["state"] == "rejected"
    seen = await mesh.contract(cid2, who="agent-a")
    assert any("rejected by operator:oncall: not during a freeze" in x for x in seen["reasons"])
    assert (await fetch(sc2.port, CAPABILITY)).status == 404
    assert mesh.held() == {"ga-1": 50}  # only the approved contract holds capacity
    report = (await mesh.operator.get("/v1/audit/report", params={"since": 0})).json()
    approved = [e for e in report["exceptions"] if e.get("contract") == cid or e.get("subject") == cid]
    assert approved, report


async def test_broken_policy_file_is_refused_with_file_line_and_old_policies_stay(mesh: Mesh) -> None:
    before = (await mesh.operator.get("/v1/policies")).json()
    broken = (
        "name: typo\n"
        "description: a require policy with a syntax error on line 5\n"
        "effect: require\n"
        "predicate: |\n"
        "  provider.region.startsWith(\n"
    )
    r = await mesh.operator.post(
        "/v1/policies/reload", json={"documents": [{"filename": "typo.yaml", "content": broken}]}
    )
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_policy"
    assert err["field"].startswith("typo.yaml:"), err
    assert int(err["field"].split(":")[1]) in (4, 5), err
    assert (await mesh.operator.get("/v1/policies")).json() == before
    # Agents may not reload at all.
    assert (await mesh.agent.post("/v1/policies/reload", json=None)).status_code == 403
    # And the policies in force still work: PII is still kept home.
    await mesh.provider("ga-us", "us-east-1a", capacity=100, p99=1, cost=0.01)
    r = await mesh.propose(
        {"consumer": "fraud-detection", "consumer_zone": ZONE, "capability": CAPABILITY,
         "sla": {"p99_latency_ms": 200, "rps": 10}, "labels": {"data_class": "pii"}}
    )  # fmt: skip
    assert r.status_code == 200 and r.json()["outcome"] == "rejected", r.text
    assert any("pii-eu-only" in x for x in r.json()["reasons"])


async def test_one_changed_byte_in_a_stored_audit_entry_is_named_by_verify(mesh: Mesh) -> None:
    await mesh.provider("ga-1", "eu-west-1b", capacity=500, p99=10, cost=0.2)
    for rps in (10, 20, 30):
        r = await mesh.propose(
            {"consumer": "fraud-detection", "consumer_zone": ZONE, "capability": CAPABILITY,
             "sla": {"p99_latency_ms": 40, "rps": rps}}
        )  # fmt: skip
        assert r.status_code == 201
    ok = (await mesh.operator.get("/v1/audit/verify")).json()
    assert ok["ok"] is True and ok["checked"] >= 4
    entries = (await mesh.operator.get("/v1/audit")).json()
    victim = next(e for e in entries if e["kind"] == "admission" and e["details"]["allocation"]["rps"] == 20)
    stored = mesh.plane.store._audit[victim["seq"] - 1]  # type: ignore[attr-defined]
    stored["details"]["allocation"]["rps"] = 21.0  # one digit: "20.0" -> "21.0"
    broken = (await mesh.operator.get("/v1/audit/verify")).json()
    assert broken["ok"] is False
    assert broken["first_broken_seq"] == victim["seq"]
    assert (await mesh.agent.get("/v1/audit/verify")).status_code == 403
