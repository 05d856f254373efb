"""Exports of a topology snapshot: JSON node-link, GraphML (both read back with networkx), DOT."""

from __future__ import annotations

import re
from typing import Any

import networkx as nx
import pytest

from meshctl.errors import ValidationFailed
from meshctl.topology import export


def _share(pid: str, zone: str, rps: float, weight: int, priority: int = 0) -> dict[str, Any]:
    return {
        "provider_id": pid,
        "zone": zone,
        "rps": rps,
        "weight": weight,
        "expected_p99_ms": 9.5,
        "cost_per_1k": 1.0,
        "priority": priority,
    }


def _provider(pid: str, zone: str, ttl: float | None = None) -> dict[str, Any]:
    return {
        "id": pid,
        "capabilities": ["infer", "embed"],
        "zone": zone,
        "region": "eu",
        "endpoints": [{"address": "127.0.0.1", "port": 9000, "protocol": "http"}],
        "labels": {"compliance": ["gdpr"]},
        "capacity_rps": 100.0,
        "latency_p99_ms": 5.0,
        "cost_per_1k": 1.0,
        "ttl_s": ttl,
        "registered_at": 1.0,
        "expires_at": 6.0 if ttl else None,
    }


def _contract(
    cid: str, state: str, shares: list[dict[str, Any]], failover: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "id": cid,
        "owner": "agent",
        "consumer": "checkout",
        "consumer_zone": "eu-a",
        "capability": "infer",
        "state": state,
        "sla": {"p99_latency_ms": 50, "rps": 150, "availability": None},
        "expires_at": 99.0,
        "allocation": {
            "shares": shares,
            "failover": failover or [],
            "rps": 150,
            "expected_p99_ms": 9.5,
            "cost_per_1k": 1.0,
        },
    }


SNAP: dict[str, Any] = {
    "version": 7,
    "at": 1003.0,
    "cause": 'link "eu-a|eu-b" changed',
    "detail": {},
    "zones": [
        {"name": "eu-a", "region": "eu"},
        {"name": "eu-b", "region": "eu"},
        {"name": "us-a", "region": "us"},
    ],
    "links": [{"a": "eu-a", "b": "eu-b", "latency_ms": 2.0}],
    "providers": [_provider("p-a", "eu-a"), _provider("p-b", "eu-b", ttl=5)],
    "consumers": {},
    "contracts": [
        _contract("c-1", "active", [_share("p-a", "eu-a", 100, 67), _share("p-b", "eu-b", 50, 33)]),
        _contract("c-2", "degraded", [_share("p-a", "eu-a", 20, 100)], [_share("p-b", "eu-b", 0, 0, 1)]),
        _contract("c-old", "revoked", [_share("p-b", "eu-b", 10, 100)]),
    ],
}


def test_json_is_node_link_that_networkx_reads_back() -> None:
    g = nx.node_link_graph(export.to_json(SNAP), edges="edges")
    assert g.is_multigraph() and g.is_directed()
    kinds = {n: d["kind"] for n, d in g.nodes(data=True)}
    assert kinds == {
        "zone:eu-a": "zone",
        "zone:eu-b": "zone",
        "zone:us-a": "zone",
        "provider:p-a": "provider",
        "provider:p-b": "provider",
        "consumer:checkout": "consumer",
    }
    # The consumer sits in the zone its contracts named (no proxy connected in this snapshot).
    assert g.nodes["consumer:checkout"]["zone"] == "eu-a"
    flows = {k: d for _, _, k, d in g.edges(keys=True, data=True) if d["kind"] == "flow"}
    # Two contracts over the same consumer->provider pair stay two edges; revoked ones carry nothing.
    assert set(flows) == {"c-1/p-a", "c-1/p-b", "c-2/p-a", "c-2/p-b"}
    assert (flows["c-1/p-a"]["weight"], flows["c-1/p-a"]["rps"]) == (67, 100)
    assert flows["c-2/p-b"]["priority"] == 1 and flows["c-2/p-a"]["state"] == "degraded"
    assert g.edges["zone:eu-a", "zone:eu-b", "link"]["latency_ms"] == 2.0
    assert g.graph["version"] == 7


def test_graphml_round_trips_with_scalar_attributes() -> None:
    text = export.to_graphml(SNAP)
    g = nx.parse_graphml(text, force_multigraph=True)
    p = g.nodes["provider:p-b"]
    assert p["capabilities"] == "infer,embed" and p["ttl_s"] == 5.0 and p["expires_at"] == 6.0
    # Absent values are left out instead of being written as the string "None".
    assert "ttl_s" not in g.nodes["provider:p-a"] and "None" not in text
    weights = sorted(d["weight"] for _, _, d in g.edges(data=True) if d["kind"] == "flow")
    assert weights == [0, 33, 67, 100]


def test_dot_draws_zones_as_clusters_holding_their_members() -> None:
    text = export.to_dot(SNAP)
    assert text.startswith('digraph "meshctl v7" {') and text.rstrip().endswith("}")
    clusters = re.findall(r"subgraph cluster_\d+ \{(.*?)\n  \}", text, re.S)
    assert len(clusters) == 3
    by_zone = {re.search(r'label="([^ ]+) \(', c).group(1): c for c in clusters}  # type: ignore[union-attr]
    assert '"provider:p-a"' in by_zone["eu-a"] and '"consumer:checkout"' in by_zone["eu-a"]
    assert '"provider:p-b"' in by_zone["eu-b"] and "provider" not in by_zone["us-a"]
    assert '"consumer:checkout" -> "provider:p-a" [label="c-1\\n67% · 100 rps"' in text
    assert "style=dashed" in text  # the failover flow
    assert "c-old" not in text  # a revoked contract is no flow
    # Quotes in the cause are escaped, so the file still parses.
    assert 'label="topology v7: link \\"eu-a|eu-b\\" changed"' in text
    assert text.count("{") == text.count("}")


def test_a_share_on_a_provider_already_gone_is_still_drawn() -> None:
    snap = {**SNAP, "providers": [_provider("p-a", "eu-a")]}
    g = export.to_graph(snap)
    assert g.nodes["provider:p-b"].get("gone") is True
    assert '"provider:p-b"' in export.to_dot(snap)


def test_render_picks_the_format_and_refuses_unknown_ones() -> None:
    assert isinstance(export.render(SNAP, "json"), dict)
    assert str(export.render(SNAP, "graphml")).startswith("<?xml")
    assert str(export.render(SNAP, "dot")).startswith("digraph")
    with pytest.raises(ValidationFailed) as e:
        export.render(SNAP, "svg")
    assert e.value.field == "format"
