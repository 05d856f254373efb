"""Evaluating policies on contracts and providers: effects, fail-closed errors, the predicate cache."""

from __future__ import annotations

from typing import Any

import pytest

from meshctl.errors import ValidationFailed
from meshctl.governance import load_policies
from meshctl.model import Constraints, Sla

from ._support import REPO, make_provider, make_request, policies_from

EFFECTS = """\
policies:
  - name: no-long
    effect: deny
    predicate: contract.duration_s > 86400.0
    message: too long
  - name: big-spend
    effect: escalate
    predicate: contract.sla.rps * contract.max_cost_per_1k > 1000.0
    message: needs approval
  - name: no-avail
    effect: warn
    applies_to: contract.sla.availability == 0.0
    message: no availability target
  - name: gold-only
    effect: require
    applies_to: contract.labels.tier == "gold"
    predicate: provider.labels.tier == "gold"
    message: gold providers only
"""


def by_name(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["policy"]: r for r in results}


def test_nothing_fires_on_a_plain_contract() -> None:
    ps = policies_from(EFFECTS)
    v = ps.evaluate(make_request(sla=Sla(p99_latency_ms=50, rps=10, availability=0.99),
                                 labels={"tier": "silver"}), owner="a", consumer_zone="z")
    assert v.decision == "allow"
    assert not (v.denied or v.escalated or v.warnings or v.requires)
    assert {r["outcome"] for r in v.results} == {"not_applicable"}
    assert all(r["applies"] is False for r in v.results)
    assert v.allows(make_provider()) is None


def test_each_effect() -> None:
    ps = policies_from(EFFECTS)
    req = make_request(duration_s=10 * 86400, sla=Sla(p99_latency_ms=50, rps=1000), max_cost_per_1k=2.0,
                       labels={"tier": "gold"})
    v = ps.evaluate(req, owner="agent-1", consumer_zone="eu-west-1a", contract_id="c-1")
    assert [(h.name, h.message) for h in v.denied] == [("no-long", "too long")]
    assert [h.name for h in v.escalated] == ["big-spend"]
    assert [h.name for h in v.warnings] == ["no-avail"]
    assert [p.name for p in v.requires] == ["gold-only"]
    assert v.decision == "deny"
    results = by_name(v.results)
    assert results["no-long"] == {
        "policy": "no-long", "effect": "deny", "applies": True, "outcome": "deny", "message": "too long",
    }
    assert results["big-spend"]["outcome"] == "escalate"
    assert results["no-avail"]["outcome"] == "warn"
    assert results["gold-only"]["outcome"] == "require"
    assert v.allows(make_provider(labels={"tier": "gold"})) is None
    assert v.allows(make_provider(labels={"tier": "silver"})) == "gold-only"


def test_escalation_without_deny() -> None:
    ps = policies_from(EFFECTS)
    v = ps.evaluate(make_request(sla=Sla(p99_latency_ms=50, rps=1000, availability=0.9)),
                    owner="a", consumer_zone=None)
    assert v.decision == "escalate"


def test_error_in_applies_to_fails_closed_and_is_reported() -> None:
    # Without the `in` guard, a contract lacking the label errors: the policy must still apply.
    ps = policies_from(EFFECTS)
    v = ps.evaluate(make_request(), owner="a", consumer_zone="z")
    r = by_name(v.results)["gold-only"]
    assert r["applies"] is True and r["outcome"] == "error"
    assert "no such member" in r["message"] and "failing closed" in r["message"]
    assert [p.name for p in v.requires] == ["gold-only"]


def test_error_in_deny_predicate_denies() -> None:
    ps = policies_from(
        "name: budget-cap\neffect: deny\npredicate: contract.max_cost_per_1k > 10.0\nmessage: over budget\n"
    )
    v = ps.evaluate(make_request(max_cost_per_1k=None), owner="a", consumer_zone="z")  # null > 10.0
    assert v.decision == "deny"
    assert by_name(v.results)["budget-cap"]["outcome"] == "error"
    ok = ps.evaluate(make_request(max_cost_per_1k=1.0), owner="a", consumer_zone="z")
    assert ok.decision == "allow"


def test_error_in_require_predicate_excludes_the_provider() -> None:
    ps = policies_from(
        "name: tiered\neffect: require\npredicate: provider.labels.tier == 'gold'\n"
    )
    v = ps.evaluate(make_request(), owner="a", consumer_zone="z")
    unlabelled = make_provider("p-none", labels={})
    assert v.allows(unlabelled) == "tiered"
    assert "no such member" in v.provider_errors["p-none"]
    assert v.allows(make_provider("p-gold", labels={"tier": "gold"})) is None


def test_allows_with_list_labels_and_string_labels() -> None:
    ps = load_policies(REPO / "policies")
    pii = make_request(labels={"data_class": "pii"})
    v = ps.evaluate(pii, owner="fraud-agent", consumer_zone="eu-west-1a")
    assert {p.name for p in v.requires} == {"pii-eu-only", "gdpr-compliance"}
    assert v.allows(make_provider(region="eu-west", labels={"compliance": ["pci", "gdpr"]})) is None
    assert v.allows(make_provider(region="eu-west", labels={"compliance": "gdpr"})) is None
    assert v.allows(make_provider(region="eu-west", labels={"compliance": ["pci"]})) == "gdpr-compliance"
    assert v.allows(make_provider(region="eu-west", labels={"compliance": "no-gdpr"})) == "gdpr-compliance"
    assert v.allows(make_provider(region="eu-west", labels={})) == "gdpr-compliance"
    assert v.allows(make_provider(region="us-east", labels={"compliance": ["gdpr"]})) == "pii-eu-only"
    # The same providers may serve non-PII contracts anywhere.
    plain = ps.evaluate(make_request(), owner="a", consumer_zone="us-east-1a")
    assert plain.allows(make_provider(region="us-east")) is None


def test_default_policies_on_the_demo_contract() -> None:
    ps = load_policies(REPO / "policies")
    demo = make_request(sla=Sla(p99_latency_ms=50, rps=100, availability=0.999), max_cost_per_1k=2.0,
                        labels={"data_class": "pii"})
    assert ps.evaluate(demo, owner="fraud-agent", consumer_zone="eu-west-1a").decision == "allow"
    month = ps.evaluate(make_request(duration_s=31 * 86400), owner="a", consumer_zone="z")
    assert [h.name for h in month.denied] == ["deny-unbounded-duration"]
    no_budget = ps.evaluate(make_request(sla=Sla(p99_latency_ms=50, rps=5000), max_cost_per_1k=None),
                            owner="a", consumer_zone="z")
    assert [h.name for h in no_budget.escalated] == ["spend-escalation"]
    rich = ps.evaluate(make_request(sla=Sla(p99_latency_ms=50, rps=2000), max_cost_per_1k=3.0),
                       owner="a", consumer_zone="z")
    assert [h.name for h in rich.escalated] == ["spend-escalation"]
    busy = ps.evaluate(make_request(sla=Sla(p99_latency_ms=50, rps=500)), owner="a", consumer_zone="z")
    assert [h.name for h in busy.warnings] == ["warn-no-availability"]


def test_cache_is_keyed_on_provider_content() -> None:
    ps = policies_from("name: gold\neffect: require\npredicate: \"'gold' in provider.labels.tiers\"\n")
    v = ps.evaluate(make_request(), owner="a", consumer_zone="z")
    gold = make_provider("p1", labels={"tiers": ["gold"]})
    assert v.allows(gold) is None
    # The same provider id re-registers without the label: it must be re-evaluated, not served from cache.
    demoted = make_provider("p1", labels={"tiers": ["silver"]})
    assert v.allows(demoted) == "gold"
    assert v.allows(make_provider("p1", labels={"tiers": ["silver", "gold"]})) is None
    # A string is not a one-element list: `in` on a string is an error, so the provider is excluded.
    assert v.allows(make_provider("p1", labels={"tiers": "gold"})) == "gold"
    assert "needs a list or map" in v.provider_errors["p1"]
    assert v.allows(make_provider("p1", labels={"tiers": ["gold"]})) is None
    assert "p1" not in v.provider_errors


def test_cache_serves_repeat_checks_and_survives_new_verdicts() -> None:
    ps = policies_from("name: eu\neffect: require\npredicate: provider.region.startsWith('eu')\n")
    providers = [make_provider(f"p{i}", region="eu-west" if i % 2 else "us-east") for i in range(20)]
    first = ps.evaluate(make_request(), owner="a", consumer_zone="z")
    answers = [first.allows(p) for p in providers]
    misses = ps.cache_stats["misses"]
    # Only the region is read, so 20 providers in 2 regions cost 2 evaluations.
    assert misses == 2
    second = ps.evaluate(make_request(sla=Sla(p99_latency_ms=10, rps=1)), owner="b", consumer_zone="y")
    assert [second.allows(p) for p in providers] == answers
    assert ps.cache_stats["misses"] == misses
    assert answers.count(None) == 10


def test_cache_keys_only_on_the_labels_a_predicate_reads() -> None:
    ps = load_policies(REPO / "policies")
    v = ps.evaluate(make_request(labels={"data_class": "pii"}), owner="a", consumer_zone="z")
    base = {"compliance": ["gdpr"]}
    alike = [make_provider(f"p{i}", labels={**base, "instance": f"i-{i}"}) for i in range(10)]
    assert all(v.allows(p) is None for p in alike)
    # Ten providers differing only in a label no policy reads: one evaluation per policy.
    assert ps.cache_stats["misses"] == 2
    # Changing a label the policy reads is new content.
    assert v.allows(make_provider("p0", labels={"compliance": ["pci"], "instance": "i-0"})) == "gdpr-compliance"
    assert ps.cache_stats["misses"] == 3


def test_cache_separates_contracts_when_the_predicate_reads_the_contract() -> None:
    ps = policies_from(
        "name: near\neffect: require\npredicate: provider.zone == contract.consumer_zone\n"
    )
    p = make_provider(region="eu-west")  # zone eu-west-1a
    here = ps.evaluate(make_request(), owner="a", consumer_zone="eu-west-1a")
    there = ps.evaluate(make_request(), owner="a", consumer_zone="us-east-1a")
    assert here.allows(p) is None
    assert there.allows(p) == "near"


def test_contract_activation_defaults_for_missing_values() -> None:
    ps = policies_from(
        """\
policies:
  - name: no-budget
    effect: warn
    predicate: contract.max_cost_per_1k == null
  - name: no-availability
    effect: warn
    predicate: contract.sla.availability == 0.0
  - name: no-zone
    effect: warn
    predicate: contract.consumer_zone == "" && contract.id == ""
  - name: constraints
    effect: warn
    predicate: >-
      "eu-west" in contract.constraints.regions
      && contract.constraints.required_labels.tier == "gold"
      && contract.owner == "agent-9" && contract.capability == "graph-analysis"
"""
    )
    req = make_request(max_cost_per_1k=None,
                       constraints=Constraints(regions=["eu-west"], required_labels={"tier": "gold"}))
    v = ps.evaluate(req, owner="agent-9", consumer_zone=None)
    assert [w.name for w in v.warnings] == ["no-budget", "no-availability", "no-zone", "constraints"]
    v2 = ps.evaluate(make_request(sla=Sla(p99_latency_ms=5, rps=5, availability=0.99)), owner="agent-9",
                     consumer_zone="z", contract_id="c-1")
    assert v2.warnings == []


def test_numbers_compare_by_value() -> None:
    ps = policies_from("name: ten\neffect: warn\npredicate: contract.sla.rps == 10\n")
    ten = make_request(sla=Sla(p99_latency_ms=5, rps=10))
    eleven = make_request(sla=Sla(p99_latency_ms=5, rps=11))
    assert ps.evaluate(ten, owner="a", consumer_zone="z").warnings
    assert not ps.evaluate(eleven, owner="a", consumer_zone="z").warnings


def test_policy_test_dry_run() -> None:
    ps = load_policies(REPO / "policies")
    out = ps.test(
        {"consumer": "fraud-detection", "capability": "graph-analysis", "owner": "fraud-agent",
         "sla": {"p99_latency_ms": 50, "rps": 100, "availability": 0.999}, "labels": {"data_class": "pii"}},
        [
            {"id": "eu-good", "region": "eu-west", "labels": {"compliance": ["gdpr"]}},
            {"id": "us", "region": "us-east", "labels": {"compliance": ["gdpr"]}},
            {"id": "eu-nogdpr", "region": "eu-central"},
        ],
    )
    assert out["decision"] == "allow"
    assert out["providers"] == [
        {"id": "eu-good", "allowed": True, "failed_policy": None, "error": None},
        {"id": "us", "allowed": False, "failed_policy": "pii-eu-only", "error": None},
        {"id": "eu-nogdpr", "allowed": False, "failed_policy": "gdpr-compliance", "error": None},
    ]
    assert {r["policy"] for r in out["results"]} == set(ps.names)


def test_policy_test_rejects_a_bad_sample_with_its_field() -> None:
    ps = load_policies(REPO / "policies")
    with pytest.raises(ValidationFailed) as info:
        ps.test({"consumer": "x", "capability": "c", "sla": {"p99_latency_ms": 5, "rps": -1}}, [])
    assert info.value.field == "contract.sla.rps"
    with pytest.raises(ValidationFailed) as info:
        ps.test({"consumer": "x", "capability": "c", "sla": {"p99_latency_ms": 5, "rps": 1}},
                [{"id": "p", "capacity_rps": 0}])
    assert info.value.field == "providers[0].capacity_rps"
