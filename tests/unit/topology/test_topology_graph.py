"""The capability graph: what operators and the solver read back after changes."""

from __future__ import annotations

import json

import pytest
from topo_helpers import LINKS, ZONES, graph, provider

from meshctl.errors import Conflict, ValidationFailed
from meshctl.model import Link, Zone
from meshctl.topology import CapabilityGraph


def test_zone_latency_is_shortest_path_over_links() -> None:
    g = graph({"a": "r", "b": "r", "c": "r"}, {("a", "b"): 5, ("b", "c"): 5, ("a", "c"): 30}, intra=0.7)
    assert g.zone_latency("a", "c") == 10  # via b beats the direct 30 ms link
    assert g.zone_latency("c", "a") == 10  # links are undirected
    assert g.zone_latency("b", "b") == 0.7


def test_zone_latency_none_when_unknown_or_unreachable() -> None:
    g = graph({"a": "r", "b": "r", "island": "r"}, {("a", "b"): 5})
    assert g.zone_latency("a", "island") is None
    assert g.zone_latency("a", "nowhere") is None
    assert g.zone_latency("nowhere", "a") is None


def test_latency_follows_link_changes() -> None:
    g = graph(ZONES, LINKS)
    assert g.zone_latency("a1", "b1") == 82
    g.set_link(Link(a="b1", b="a1", latency_ms=70))  # same link written the other way round
    assert g.zone_latency("a1", "b1") == 70
    assert len(g.links()) == 3
    assert g.remove_link("a1", "b1")
    assert g.zone_latency("a1", "b1") == 82
    g.remove_link("a2", "b1")
    assert g.zone_latency("a1", "b1") is None
    g.set_intra_zone_latency(0.2)
    assert g.zone_latency("a1", "a1") == 0.2


def test_provider_churn_keeps_latency_cache() -> None:
    g = graph(ZONES, LINKS)
    assert g.zone_latency("a1", "b1") == 82
    row = g.latency_row("a1")
    g.set_provider(provider("p1", "b1"))
    g.remove_provider("p1")
    g.set_consumer("checkout", "a2")
    assert g.latency_row("a1") is row  # only zone/link changes invalidate paths
    g.set_zone(Zone(name="c1", region="us"))
    assert g.latency_row("a1") is not row


def test_provider_in_unknown_zone_is_rejected() -> None:
    g = graph(ZONES, LINKS)
    with pytest.raises(ValidationFailed) as exc:
        g.set_provider(provider("p1", "mars-1a"))
    assert exc.value.field == "zone"
    assert g.provider("p1") is None
    with pytest.raises(ValidationFailed) as exc:
        g.set_consumer("checkout", "mars-1a")
    assert exc.value.field == "zone"
    with pytest.raises(ValidationFailed) as exc:
        g.set_link(Link(a="a1", b="mars-1a", latency_ms=1))
    assert exc.value.field == "b"


def test_capability_index_follows_updates_and_removals() -> None:
    g = graph(ZONES, LINKS, provider("p1", "a1", capabilities=["infer", "embed"]), provider("p2", "a2"))
    assert {p.id for p in g.providers_for("infer")} == {"p1", "p2"}
    assert [p.id for p in g.providers_for("embed")] == ["p1"]
    g.set_provider(provider("p1", "a1", capabilities=["embed"]))  # p1 stops offering infer
    assert [p.id for p in g.providers_for("infer")] == ["p2"]
    g.remove_provider("p1")
    assert g.providers_for("embed") == []
    assert g.capabilities() == ["infer"]
    assert g.providers_for("nothing") == []


def test_provider_region_comes_from_its_zone() -> None:
    g = graph(ZONES, LINKS)
    stored = g.set_provider(provider("p1", "b1"))
    assert stored.region == "us"
    g.set_zone(Zone(name="b1", region="us-east"))
    p = g.provider("p1")
    assert p is not None and p.region == "us-east"
    assert g.region_of("b1") == "us-east"
    assert g.region_of("nowhere") is None


def test_moving_provider_and_consumer_between_zones() -> None:
    g = graph(ZONES, LINKS, provider("p1", "a1"))
    g.set_consumer("checkout", "a1")
    g.set_provider(provider("p1", "b1"))
    g.set_consumer("checkout", "a2")
    assert g.consumer_zone("checkout") == "a2"
    data = g.node_link()
    edges = {(e["source"], e["target"]) for e in data["links"]}
    assert ("provider:p1", "zone:b1") in edges or ("zone:b1", "provider:p1") in edges
    assert not any("provider:p1" in e and "zone:a1" in e for e in edges)
    assert g.remove_consumer("checkout")
    assert g.consumer_zone("checkout") is None
    assert not g.remove_consumer("checkout")


def test_version_bumps_on_every_change_only() -> None:
    g = CapabilityGraph()
    seen = [g.version]

    def bumped() -> bool:
        changed = g.version != seen[-1]
        seen.append(g.version)
        return changed

    g.set_zone(Zone(name="a", region="r"))
    assert bumped()
    g.set_zone(Zone(name="a", region="r"))
    assert not bumped()  # identical write: nothing changed, nothing to re-solve
    g.set_zone(Zone(name="b", region="r"))
    g.set_link(Link(a="a", b="b", latency_ms=3))
    assert bumped()
    g.set_provider(provider("p", "a"))
    assert bumped()
    g.set_provider(provider("p", "a", rps=50))
    assert bumped()
    g.set_consumer("svc", "b")
    assert bumped()
    assert g.remove_provider("p")
    assert bumped()
    assert not g.remove_provider("p")
    assert not bumped()


def test_zone_with_providers_cannot_be_removed_consumers_are_detached() -> None:
    g = graph(ZONES, LINKS, provider("p1", "b1"))
    g.set_consumer("checkout", "b1")
    with pytest.raises(Conflict) as exc:
        g.remove_zone("b1")
    assert "p1" in exc.value.message
    assert g.zone("b1") is not None and g.consumer_zone("checkout") == "b1"  # refused: nothing changed
    g.remove_provider("p1")
    assert g.remove_zone("b1")
    assert g.consumer_zone("checkout") is None
    assert g.zone("b1") is None
    assert all("b1" not in (ln.a, ln.b) for ln in g.links())
    assert g.zone_latency("a1", "b1") is None
    assert not g.remove_zone("b1")


def test_node_link_is_json_with_every_kind_of_node() -> None:
    g = graph(ZONES, LINKS, provider("p1", "a1", labels={"compliance": ["gdpr"]}))
    g.set_consumer("checkout", "a2")
    data = json.loads(json.dumps(g.node_link()))
    kinds = {n["id"]: n["kind"] for n in data["nodes"]}
    assert kinds == {
        "zone:a1": "zone",
        "zone:a2": "zone",
        "zone:b1": "zone",
        "provider:p1": "provider",
        "consumer:checkout": "consumer",
    }
    link = next(
        e
        for e in data["links"]
        if e["kind"] == "link" and {e["source"], e["target"]} == {"zone:a1", "zone:a2"}
    )
    assert link["latency_ms"] == 2.0
    p1 = next(n for n in data["nodes"] if n["id"] == "provider:p1")
    assert p1["labels"] == {"compliance": ["gdpr"]} and p1["capacity_rps"] == 100
    assert data["graph"]["version"] == g.version
