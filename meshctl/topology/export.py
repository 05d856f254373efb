"""Export a topology snapshot: JSON node-link and GraphML (both via networkx), and Graphviz DOT.

All pure functions of one history snapshot (see history.snapshot). The graph they share:

- nodes `zone:NAME` (kind zone, region), `provider:ID` (kind provider, zone, capabilities, capacity,
  p99, cost, lease), `consumer:SERVICE` (kind consumer, zone);
- edges `link` zone→zone (latency_ms; links are undirected, stored once a→b), `in_zone`
  provider/consumer→zone, and `flow` consumer→provider, one per contract share (key = contract id,
  weight, rps, priority, state), so two contracts over the same pair stay two edges.

GraphML and DOT hold scalars only: lists become comma-separated strings and absent values are
left out rather than written as "None".
"""

from __future__ import annotations

import io
import json
from typing import Any

import networkx as nx

from meshctl.errors import ValidationFailed

EXPORT_FORMATS = ("json", "graphml", "dot")
MEDIA_TYPES = {"json": "application/json", "graphml": "application/xml", "dot": "text/vnd.graphviz"}
# Contracts in these states carry traffic; others are history, not flows.
_FLOWING = ("active", "degraded")


def parse_format(value: str) -> str:
    if value not in EXPORT_FORMATS:
        raise ValidationFailed(f"format must be one of {', '.join(EXPORT_FORMATS)}", field="format")
    return value


def _scalar(v: Any) -> str | int | float | bool | None:
    if v is None or isinstance(v, str | int | float | bool):
        return v
    if isinstance(v, list):
        return ",".join(str(x) for x in v)
    return json.dumps(v, sort_keys=True)


def _attrs(**kw: Any) -> dict[str, Any]:
    return {k: s for k, v in kw.items() if (s := _scalar(v)) is not None}


def consumer_zones(snap: dict[str, Any]) -> dict[str, str]:
    """Service -> zone: where its proxies connected from, else the zone its contracts named."""
    zones: dict[str, str] = {}
    for c in snap.get("contracts", []):
        if c.get("consumer_zone"):
            zones.setdefault(c["consumer"], c["consumer_zone"])
    zones.update(snap.get("consumers", {}))
    return zones


def to_graph(snap: dict[str, Any]) -> nx.MultiDiGraph:
    g = nx.MultiDiGraph(version=snap["version"], at=snap["at"], cause=snap["cause"])
    for z in snap["zones"]:
        g.add_node(f"zone:{z['name']}", **_attrs(kind="zone", name=z["name"], region=z["region"]))
    for link in snap["links"]:
        g.add_edge(
            f"zone:{link['a']}",
            f"zone:{link['b']}",
            key="link",
            **_attrs(kind="link", latency_ms=link["latency_ms"]),
        )
    for p in snap["providers"]:
        pid = f"provider:{p['id']}"
        g.add_node(
            pid,
            **_attrs(
                kind="provider",
                name=p["id"],
                zone=p["zone"],
                region=p.get("region"),
                capabilities=p["capabilities"],
                capacity_rps=p["capacity_rps"],
                latency_p99_ms=p["latency_p99_ms"],
                cost_per_1k=p["cost_per_1k"],
                ttl_s=p.get("ttl_s"),
                registered_at=p.get("registered_at"),
                expires_at=p.get("expires_at"),
            ),
        )
        g.add_edge(pid, f"zone:{p['zone']}", key="in_zone", kind="in_zone")
    for service, zone in sorted(consumer_zones(snap).items()):
        cid = f"consumer:{service}"
        g.add_node(cid, **_attrs(kind="consumer", name=service, zone=zone))
        g.add_edge(cid, f"zone:{zone}", key="in_zone", kind="in_zone")
    for c in snap["contracts"]:
        alloc = c.get("allocation")
        if c["state"] not in _FLOWING or not alloc:
            continue
        cons = f"consumer:{c['consumer']}"
        if cons not in g:
            g.add_node(cons, **_attrs(kind="consumer", name=c["consumer"]))
        for s in [*alloc.get("shares", []), *alloc.get("failover", [])]:
            prov = f"provider:{s['provider_id']}"
            if prov not in g:  # a share on a provider already gone: still drawn, marked as such
                g.add_node(prov, **_attrs(kind="provider", name=s["provider_id"], zone=s["zone"], gone=True))
            g.add_edge(
                cons,
                prov,
                key=f"{c['id']}/{s['provider_id']}",
                **_attrs(
                    kind="flow",
                    contract=c["id"],
                    capability=c["capability"],
                    state=c["state"],
                    weight=s["weight"],
                    rps=s["rps"],
                    priority=s.get("priority", 0),
                    expected_p99_ms=s.get("expected_p99_ms"),
                ),
            )
    return g


def to_json(snap: dict[str, Any]) -> dict[str, Any]:
    """networkx node-link data (loadable with `nx.node_link_graph(data, edges="edges")`)."""
    return nx.node_link_data(to_graph(snap), edges="edges")


def to_graphml(snap: dict[str, Any]) -> str:
    buf = io.BytesIO()  # write_graphml, unlike generate_graphml, writes the XML declaration
    nx.write_graphml(to_graph(snap), buf, encoding="utf-8")
    return buf.getvalue().decode("utf-8")


def _q(s: Any) -> str:
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(snap: dict[str, Any]) -> str:
    """Zones are clusters holding their providers and consumers; flows are labelled with weights."""
    g = to_graph(snap)
    lines = [
        f"digraph {_q('meshctl v' + str(snap['version']))} {{",
        "  graph [rankdir=LR, fontname=Helvetica, compound=true,"
        f" label={_q('topology v' + str(snap['version']) + ': ' + str(snap['cause']))}];",
        "  node [fontname=Helvetica, fontsize=10];",
        "  edge [fontname=Helvetica, fontsize=9];",
    ]
    members: dict[str, list[str]] = {}
    for n, d in g.nodes(data=True):
        if d.get("kind") in ("provider", "consumer") and d.get("zone"):
            members.setdefault(d["zone"], []).append(n)
    for i, (n, d) in enumerate((n, d) for n, d in g.nodes(data=True) if d.get("kind") == "zone"):
        lines.append(f"  subgraph cluster_{i} {{")
        lines.append(f"    label={_q(d['name'] + ' (' + d['region'] + ')')}; style=rounded; color=gray50;")
        lines.append(f'    {_q(n)} [shape=point, width=0.05, label=""];')
        for m in sorted(members.get(d["name"], [])):
            md = g.nodes[m]
            if md["kind"] == "provider":
                label = f"{md['name']}\n{md.get('capabilities', '')}\n{md.get('capacity_rps', '?')} rps"
                shape = 'box, style="rounded,dashed"' if md.get("gone") else "box, style=rounded"
            else:
                label, shape = md["name"], "ellipse, style=filled, fillcolor=lightblue"
            lines.append(f"    {_q(m)} [shape={shape}, label={_q(label)}];")
        lines.append("  }")
    for n, d in g.nodes(data=True):
        if d.get("kind") in ("provider", "consumer") and not d.get("zone"):
            lines.append(f"  {_q(n)} [label={_q(d.get('name', n))}];")
    for u, v, d in g.edges(data=True):
        if d["kind"] == "link":
            latency = f"{d['latency_ms']:g} ms"
            lines.append(f"  {_q(u)} -> {_q(v)} [dir=none, style=dotted, color=gray60, label={_q(latency)}];")
        elif d["kind"] == "flow":
            style = ", style=dashed" if d.get("priority") else ""
            label = f"{d['contract']}\n{d['weight']}% · {d['rps']:g} rps"
            lines.append(f"  {_q(u)} -> {_q(v)} [label={_q(label)}, penwidth=2{style}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(snap: dict[str, Any], fmt: str) -> str | dict[str, Any]:
    fmt = parse_format(fmt)
    if fmt == "json":
        return to_json(snap)
    if fmt == "graphml":
        return to_graphml(snap)
    return to_dot(snap)
