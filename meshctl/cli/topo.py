"""`meshctl topology`: show (live or at an instant/version), history, diff, providers, export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from meshctl.cli.client import api, console, emit, styled, table, ts
from meshctl.cli.verbs import _since

topology = typer.Typer(help="The live topology and its history.", no_args_is_help=True)

When = Annotated[str | None, typer.Option(help="a past instant: epoch, ISO time, or 15m/2h/1d ago")]


def _flows(c: dict[str, Any]) -> str:
    a = c.get("allocation") or {}
    primary = [f"{s['provider_id']}:{s['weight']}%" for s in a.get("shares", [])]
    failover = [f"{s['provider_id']}(failover)" for s in a.get("failover", [])]
    return " ".join(primary + failover) or "-"


def _show(t: dict[str, Any]) -> None:
    console.print(f"[bold]topology version {t['version']}[/] at {ts(t['at'])} — cause: {t['cause']}")
    table("zones", ["zone", "region"], [[z["name"], z["region"]] for z in t["zones"]])
    table(
        "providers",
        ["id", "capabilities", "zone", "capacity rps", "p99 ms", "cost/1k", "registered", "lease expires"],
        [
            [
                p["id"],
                ",".join(p["capabilities"]),
                p["zone"],
                f"{p['capacity_rps']:g}",
                f"{p['latency_p99_ms']:g}",
                f"{p['cost_per_1k']:g}",
                ts(p.get("registered_at")),
                ts(p.get("expires_at")) if p.get("expires_at") else "static",
            ]
            for p in t["providers"]
        ],
    )
    if t.get("consumers"):
        table("consumers (connected proxies)", ["service", "zone"], sorted(t["consumers"].items()))
    table(
        "contract flows",
        ["contract", "consumer", "capability", "state", "rps", "p99 ms", "flows"],
        [
            [
                c["id"],
                c["consumer"],
                c["capability"],
                styled(c["state"]),
                f"{c['sla']['rps']:g}",
                f"{c['sla']['p99_latency_ms']:g}",
                _flows(c),
            ]
            for c in t["contracts"]
        ],
    )


@topology.command("show")
def show(
    ctx: typer.Context,
    at: When = None,
    version: Annotated[int | None, typer.Option(help="a history version")] = None,
) -> None:
    """The live topology, or the one in force at an instant (--at) or of a version (--version)."""
    emit(ctx, api(ctx).get("/v1/topology", at=_since(at), version=version), _show)


@topology.command("history")
def history(
    ctx: typer.Context,
    since: When = None,
    until: When = None,
) -> None:
    """Every recorded version: when, why, and how many providers and live contracts there were."""
    rows = api(ctx).get("/v1/topology/history", since=_since(since), until=_since(until))
    emit(
        ctx,
        rows,
        lambda r: table(
            "topology history",
            ["version", "at", "cause", "detail", "providers", "live contracts"],
            [
                [
                    h["version"],
                    ts(h["at"]),
                    h["cause"],
                    " ".join(f"{k}={v}" for k, v in (h.get("detail") or {}).items()),
                    h.get("providers", "-"),
                    h.get("contracts", "-"),
                ]
                for h in r
            ],
        ),
    )


def _share_text(s: dict[str, Any] | None) -> str:
    if s is None:
        return "-"
    return f"{s['weight']}% {s['rps']:g} rps" + (" (failover)" if s.get("priority") else "")


def _diff(d: dict[str, Any]) -> None:
    console.print(f"[bold]diff v{d['from']} ({ts(d['from_at'])}) → v{d['to']} ({ts(d['to_at'])})[/]")
    rows: list[list[Any]] = []
    for section in ("zones", "links", "providers", "consumers", "contracts"):
        part = d.get(section, {})
        for name in part.get("appeared", []):
            rows.append([section, "[green]+ appeared[/]", name, ""])
        for name in part.get("vanished", []):
            rows.append([section, "[red]- vanished[/]", name, ""])
        for ch in part.get("changed", []):
            what = []
            for key in ("state", "latency_ms", "zone", "region"):
                if key in ch:
                    what.append(f"{key} {ch[key]['from']} → {ch[key]['to']}")
            for field, v in (ch.get("fields") or {}).items():
                what.append(f"{field} {v['from']} → {v['to']}")
            if "sla" in ch:
                what.append("sla changed")
            for m in ch.get("moved", []):
                what.append(f"{m['provider_id']}: {_share_text(m['from'])} → {_share_text(m['to'])}")
            rows.append([section, "[yellow]~ changed[/]", ch["id"], "; ".join(what)])
    if rows:
        table("changes", ["kind", "change", "id", "what"], rows)
    else:
        console.print("no difference")
    table(
        "causes (versions in between)",
        ["version", "at", "cause", "detail"],
        [
            [c["version"], ts(c["at"]), c["cause"], " ".join(f"{k}={v}" for k, v in c["detail"].items())]
            for c in d.get("causes", [])
        ],
    )


@topology.command("diff")
def diff(
    ctx: typer.Context,
    from_version: Annotated[int, typer.Argument(help="older version")],
    to_version: Annotated[int, typer.Argument(help="newer version")],
) -> None:
    """What appeared, vanished and changed (allocations: which shares moved) and why."""
    emit(ctx, api(ctx).get("/v1/topology/diff", **{"from": from_version, "to": to_version}), _diff)


@topology.command("providers")
def providers(ctx: typer.Context) -> None:
    """Every provider in the retained history, also those gone: first/last seen, when it left."""
    rows = api(ctx).get("/v1/topology/providers")
    emit(
        ctx,
        rows,
        lambda r: table(
            "providers seen",
            ["id", "zone", "capabilities", "lease ttl", "first seen", "last seen", "gone", "why"],
            [
                [
                    p["id"],
                    p["zone"],
                    ",".join(p["capabilities"]),
                    f"{p['ttl_s']:g}s" if p.get("ttl_s") else "static",
                    ts(p["first_seen"]),
                    ts(p["last_seen"]),
                    ts(p["gone_at"]) if p["gone_at"] else "[green]present[/]",
                    p.get("gone_cause") or "",
                ]
                for p in r
            ],
        ),
    )


@topology.command("export")
def export(
    ctx: typer.Context,
    format: Annotated[str, typer.Option("--format", "-f", help="json, graphml or dot")] = "json",
    version: Annotated[int | None, typer.Option(help="a history version (default: live)")] = None,
    at: When = None,
    out: Annotated[str | None, typer.Option(help="write to FILE instead of stdout")] = None,
) -> None:
    """The topology as a graph file: JSON node-link, GraphML, or Graphviz DOT (`| dot -Tsvg`)."""
    data = api(ctx).get("/v1/topology/export", format=format, version=version, at=_since(at))
    text = data if isinstance(data, str) else json.dumps(data, indent=2, sort_keys=True) + "\n"
    if out:
        Path(out).write_text(text)
        emit(ctx, {"wrote": out, "format": format}, lambda _: console.print(f"wrote {out} ({format})"))
    else:
        typer.echo(text, nl=False)
