"""Explain one contract: request → policies → candidates (and why each was dropped) → allocation →
the Envoy resources that carry it, their versions, and which proxies ACKed them."""

from __future__ import annotations

from typing import Any

from meshctl.contracts.service import Negotiator
from meshctl.model import Contract
from meshctl.topology.solver import SolveResult, solve
from meshctl.translate.node import contract_resource_names
from meshctl.xds.resources import SHORT_NAMES


def explain(n: Negotiator, contract: Contract) -> dict[str, Any]:
    result: SolveResult | None
    solved = n.last_solve.get(contract.id)
    if solved is not None:
        at, result, verdict = solved
        evaluated = "at the last decision"
    else:
        # After a restart the last solve is gone: evaluate now, and say so.
        at = n.clock()
        zone = contract.request.consumer_zone or n.state.graph.consumer_zone(contract.request.consumer) or ""
        v = n.policies().evaluate(
            contract.request, owner=contract.owner, consumer_zone=zone, contract_id=contract.id
        )
        verdict = v.to_dict()
        result = (
            solve(
                contract.request,
                n.state.graph,
                n.state.residual(exclude=contract.id),
                consumer_zone=zone,
                now=at,
                allowed=v.allows,
                current=contract.allocation,
            )
            if zone
            else None
        )  # type: ignore[assignment]
        evaluated = "now (no decision recorded by this replica)"
    candidates = [
        {
            "provider": c.provider_id,
            "zone": c.zone,
            "feasible": c.feasible,
            "dropped_because": c.reason,
            "expected_p99_ms": c.expected_p99_ms,
            "residual_rps": c.residual_rps,
            "cost_per_1k": c.cost_per_1k,
        }
        for c in (result.candidates if result is not None else [])
    ]
    proxies = []
    for node in n.sync.nodes_of([contract.request.consumer]):
        names = contract_resource_names(contract, proxyless=node.proxyless)
        snap = n.sync.cache.get_snapshot(node.node_id)
        st = n.sync.status.get(node.node_id)
        per_type = {}
        for type_url, rnames in names.items():
            short = SHORT_NAMES.get(type_url, type_url)
            sent = st.types.get(type_url) if st else None
            per_type[short] = {
                "resources": {
                    name: (snap.resource_versions(type_url).get(name) if snap else None) for name in rnames
                },
                "version_set": snap.version(type_url) if snap else None,
                "version_acked": sent.version_acked if sent else None,
                "last_nack": (
                    {"version": sent.last_nack.version, "error": sent.last_nack.error}
                    if sent and sent.last_nack
                    else None
                ),
            }
        acked = all(
            v["version_set"] is not None and v["version_set"] == v["version_acked"] for v in per_type.values()
        )
        proxies.append({"node": node.node_id, "zone": node.zone, "acked": acked, "types": per_type})
    return {
        "contract": contract.model_dump(mode="json"),
        "request": contract.request.model_dump(mode="json"),
        "policies": {"evaluated": evaluated, "at": at, **verdict},
        "candidates": candidates,
        "binding": [b.model_dump(mode="json") for b in (result.binding if result is not None else [])],
        "allocation": contract.allocation.model_dump(mode="json") if contract.allocation else None,
        "resources": {SHORT_NAMES.get(t, t): names for t, names in contract_resource_names(contract).items()},
        "proxies": proxies,
        "events": [e.model_dump(mode="json") for e in contract.events],
    }
