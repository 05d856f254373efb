"""Topology files (YAML): parse, validate, apply to a graph.

Every problem becomes one `ValidationFailed` whose ``field`` is the dotted path into the file
("links.2.latency_ms") and whose message names the file, so an operator can go straight to the line
that is wrong. A file is checked whole before anything is applied: a bad file changes nothing.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from meshctl.errors import ValidationFailed
from meshctl.model import TopologyFile
from meshctl.topology.graph import CapabilityGraph


def _path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc)


def parse_topology(text: str, *, source: str = "<string>") -> TopologyFile:
    """Parse and validate topology YAML; ``source`` names the file in error messages."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ValidationFailed(
            f"{where}: not valid YAML: {exc}", field=None, details={"file": source}
        ) from exc
    if not isinstance(raw, dict):
        raise ValidationFailed(f"{source}: expected a mapping with 'zones'", details={"file": source})
    try:
        tf = TopologyFile.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = errors[0]
        field = _path(first["loc"])
        raise ValidationFailed(
            f"{source}: {field}: {first['msg']}",
            field=field,
            details={
                "file": source,
                "errors": [{"field": _path(e["loc"]), "message": e["msg"]} for e in errors],
            },
        ) from exc
    _check_references(tf, source)
    return tf


def _check_references(tf: TopologyFile, source: str) -> None:
    seen: set[str] = set()
    for i, zone in enumerate(tf.zones):
        if zone.name in seen:
            raise _bad(source, f"zones.{i}.name", f"duplicate zone {zone.name}")
        seen.add(zone.name)
    links: set[tuple[str, str]] = set()
    for i, link in enumerate(tf.links):
        for end in ("a", "b"):
            if getattr(link, end) not in seen:
                raise _bad(source, f"links.{i}.{end}", f"unknown zone {getattr(link, end)}")
        if link.a == link.b:
            raise _bad(source, f"links.{i}.b", "a link joins two different zones")
        if link.key in links:
            raise _bad(source, f"links.{i}", f"duplicate link {link.a} <-> {link.b}")
        links.add(link.key)


def _bad(source: str, field: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{source}: {field}: {message}", field=field, details={"file": source})


def load_topology(path: str | Path) -> TopologyFile:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationFailed(
            f"{p}: cannot read topology file: {exc.strerror}", details={"file": str(p)}
        ) from exc
    return parse_topology(text, source=str(p))


def apply_topology(graph: CapabilityGraph, tf: TopologyFile) -> None:
    """Upsert the file's zones and links (and intra-zone latency) into ``graph``.

    Zones and links the file does not mention are left alone: the file seeds the network, later REST
    changes refine it.
    """
    graph.set_intra_zone_latency(tf.intra_zone_latency_ms)
    for zone in tf.zones:
        graph.set_zone(zone)
    for link in tf.links:
        graph.set_link(link)
