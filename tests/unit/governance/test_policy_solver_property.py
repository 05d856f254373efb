"""Property: whatever the solver answers, no allocation puts traffic (primary or failover) on a
provider that a `require` policy rules out.

Random zones, links, providers, residual capacity, contracts and require policies (the shipped
PII policies plus predicates from `_grammar`). Each provider in an answer is checked against the
plain-Python model of every applicable predicate, not against `Verdict.allows` itself, and the
re-solve path (`current` = an allocation made before the policies applied) is exercised too.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshctl.governance import PolicySet
from meshctl.model import Allocation, ContractRequest, Endpoint, Link, Provider, Sla, Zone
from meshctl.topology.graph import CapabilityGraph
from meshctl.topology.solver import solve

from ._grammar import VALUES, Labels, Pred, predicates
from ._support import REPO

ZONES = {
    "eu-west-1a": "eu-west", "eu-west-1b": "eu-west", "eu-central-1a": "eu-central",
    "us-east-1a": "us-east", "ap-south-1a": "ap-south",
}
PII_ONLY = '"data_class" in contract.labels && contract.labels.data_class == "pii"'
DEFAULTS = [(p.name, p.read_text()) for p in sorted((REPO / "policies").glob("*.yaml"))]


def pii_eu_only(region: str, labels: Labels) -> bool:
    return region.startswith("eu")


def gdpr(region: str, labels: Labels) -> bool:
    c = labels.get("compliance")
    return ("gdpr" in c) if isinstance(c, list) else c == "gdpr"


label_values = st.one_of(st.sampled_from(VALUES), st.lists(st.sampled_from(VALUES), max_size=2, unique=True))
provider_specs = st.lists(
    st.fixed_dictionaries({
        "zone": st.sampled_from(sorted(ZONES)),
        "labels": st.dictionaries(st.sampled_from(["tier", "compliance"]), label_values, max_size=2),
        "capacity_rps": st.integers(20, 300),
        "latency_p99_ms": st.integers(1, 40),
        "cost_per_1k": st.sampled_from([0.1, 0.5, 1.0, 2.0, 4.0]),
        "held": st.sampled_from([0.0, 0.0, 0.5, 1.0]),  # share of capacity other contracts hold
    }),
    min_size=2,
    max_size=10,
)
requests = st.fixed_dictionaries({
    "rps": st.integers(1, 150),
    "p99": st.integers(20, 250),
    "availability": st.sampled_from([None, None, 0.99, 0.999, 0.9999]),
    "bid": st.sampled_from([None, 1.0, 3.0, 5.0]),
    "pii": st.booleans(),
    "consumer_zone": st.sampled_from(sorted(ZONES)),
})


def build_graph(specs: list[dict[str, Any]], link_ms: list[int]) -> tuple[CapabilityGraph, list[Provider]]:
    graph = CapabilityGraph()
    for name, region in ZONES.items():
        graph.set_zone(Zone(name=name, region=region))
    names = sorted(ZONES)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    for (a, b), ms in zip(pairs, link_ms, strict=False):
        graph.set_link(Link(a=a, b=b, latency_ms=ms))
    stored = []
    for i, s in enumerate(specs):
        stored.append(graph.set_provider(Provider(
            id=f"p{i}", capabilities=["scoring"], zone=s["zone"],
            endpoints=[Endpoint(address="127.0.0.1", port=9000 + i)], labels=s["labels"],
            capacity_rps=s["capacity_rps"], latency_p99_ms=s["latency_p99_ms"], cost_per_1k=s["cost_per_1k"],
        )))
    return graph, stored


def used_providers(alloc: Allocation | None) -> set[str]:
    if alloc is None:
        return set()
    return {s.provider_id for s in alloc.shares} | {s.provider_id for s in alloc.failover}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    specs=provider_specs,
    link_ms=st.lists(st.integers(1, 40), min_size=10, max_size=10),
    req=requests,
    preds=st.lists(st.tuples(predicates, st.booleans()), max_size=2),
    with_defaults=st.booleans(),
)
def test_no_allocation_uses_a_provider_a_require_policy_rules_out(
    specs: list[dict[str, Any]], link_ms: list[int], req: dict[str, Any],
    preds: list[tuple[Pred, bool]], with_defaults: bool,
) -> None:
    graph, providers = build_graph(specs, link_ms)
    docs = list(DEFAULTS) if with_defaults else []
    for i, (pred, only_pii) in enumerate(preds):
        applies = f"applies_to: {json.dumps(PII_ONLY)}\n" if only_pii else ""
        docs.append((f"r{i}.yaml", f"name: r{i}\neffect: require\n{applies}predicate: {json.dumps(pred.cel)}\n"))
    policies = PolicySet.from_documents(docs)

    request = ContractRequest(
        consumer="fraud-detection", capability="scoring",
        sla=Sla(p99_latency_ms=req["p99"], rps=req["rps"], availability=req["availability"]),
        max_cost_per_1k=req["bid"], labels={"data_class": "pii"} if req["pii"] else {},
    )
    verdict = policies.evaluate(request, owner="agent", consumer_zone=req["consumer_zone"])

    # The model of what may serve this contract, independent of the policy engine.
    rules = []
    if with_defaults and req["pii"]:
        rules += [pii_eu_only, gdpr]
    rules += [pred.model for pred, only_pii in preds if req["pii"] or not only_pii]
    permitted = {p.id for p in providers if all(rule(p.region, p.labels) is True for rule in rules)}

    residual = {p.id: p.capacity_rps * (1 - s["held"]) for p, s in zip(providers, specs, strict=True)}
    kw: dict[str, Any] = {"consumer_zone": req["consumer_zone"], "now": 0.0}
    before = solve(request, graph, residual, **kw).allocation  # e.g. made before the policies changed
    answers = [
        solve(request, graph, residual, allowed=verdict.allows, **kw),
        solve(request, graph, residual, allowed=verdict.allows, current=before, **kw),
    ]
    for result in answers:
        offered = result.counter_offer.allocation if result.counter_offer else None
        for alloc in (result.allocation, offered):
            assert used_providers(alloc) <= permitted, (used_providers(alloc) - permitted, verdict.to_dict())
        for cand in result.candidates:
            if cand.provider_id not in permitted:
                assert not cand.feasible and cand.reason is not None and cand.reason.startswith("policy:")
