"""Topology files: the shipped example loads; broken files say where they are broken."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshctl.errors import ValidationFailed
from meshctl.model import Link, Zone
from meshctl.topology import CapabilityGraph, apply_topology, load_topology, parse_topology

EXAMPLE = Path(__file__).resolve().parents[3] / "deploy" / "topology.yaml"


def test_shipped_example_is_a_realistic_three_region_network() -> None:
    tf = load_topology(EXAMPLE)
    regions: dict[str, list[str]] = {}
    for z in tf.zones:
        regions.setdefault(z.region, []).append(z.name)
    assert set(regions) == {"eu-west", "eu-central", "us-east"}
    assert all(2 <= len(zs) <= 3 for zs in regions.values())
    region = {z.name: z.region for z in tf.zones}
    for link in tf.links:
        ra, rb = region[link.a], region[link.b]
        if ra == rb:
            assert 1 <= link.latency_ms <= 3, link
        elif ra.startswith("eu") and rb.startswith("eu"):
            assert 10 <= link.latency_ms <= 25, link
        else:
            assert 70 <= link.latency_ms <= 95, link
    g = CapabilityGraph()
    apply_topology(g, tf)
    names = [z.name for z in tf.zones]
    assert all(g.zone_latency(a, b) is not None for a in names for b in names)


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "topo.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            "zones: [{name: a, region: r}, {name: b, region: r}]\n"
            "links: [{a: a, b: b, latency_ms: 1}, {a: a, b: b, latency_ms: 2}, {a: b, b: a, latency_ms: -4}]\n",
            "links.2.latency_ms",
        ),
        ("zones: [{name: a, region: r}]\nlinks: [{a: a, b: z, latency_ms: 1}]\n", "links.0.b"),
        ("zones: [{name: a, region: r}, {name: a, region: s}]\n", "zones.1.name"),
        ("zones: [{name: a}]\n", "zones.0.region"),
        ("zones: [{name: a, region: r, colour: blue}]\n", "zones.0.colour"),
        ("zones: [{name: a, region: r}]\nlinks: [{a: a, b: a, latency_ms: 1}]\n", "links.0.b"),
        (
            "zones: [{name: a, region: r}, {name: b, region: r}]\n"
            "links: [{a: a, b: b, latency_ms: 1}, {a: b, b: a, latency_ms: 2}]\n",
            "links.1",
        ),
        ("zones: [{name: a, region: r}]\nintra_zone_latency_ms: -1\n", "intra_zone_latency_ms"),
    ],
)
def test_errors_name_the_field_path_and_the_file(tmp_path: Path, body: str, field: str) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(ValidationFailed) as exc:
        load_topology(path)
    assert exc.value.field == field
    assert str(path) in exc.value.message
    assert exc.value.details["file"] == str(path)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "zones:\n  - {name: a, region: r}\n  - {name: b, region: [\n")
    with pytest.raises(ValidationFailed) as exc:
        load_topology(path)
    assert f"{path}:" in exc.value.message


def test_missing_file_and_wrong_shape(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed, match="cannot read"):
        load_topology(tmp_path / "absent.yaml")
    with pytest.raises(ValidationFailed, match="mapping"):
        parse_topology("- just a list\n", source="list.yaml")


def test_apply_upserts_and_keeps_what_the_file_does_not_mention() -> None:
    g = CapabilityGraph()
    g.set_zone(Zone(name="old", region="r"))
    apply_topology(g, parse_topology("zones: [{name: old, region: r}, {name: a, region: r}]\n"))
    g.set_link(Link(a="old", b="a", latency_ms=4))
    tf = parse_topology(
        "zones: [{name: a, region: r2}, {name: b, region: r2}]\n"
        "links: [{a: a, b: b, latency_ms: 3}]\nintra_zone_latency_ms: 0.25\n"
    )
    apply_topology(g, tf)
    assert {z.name for z in g.zones()} == {"old", "a", "b"}
    assert g.region_of("a") == "r2"
    assert g.zone_latency("old", "b") == 7
    assert g.zone_latency("b", "b") == 0.25
