"""`meshctl topology`: show, history, diff, export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from meshctl.cli.client import api, console, emit, styled, table, ts
from meshctl.cli.verbs import _since

topology = typer.Typer(help="The live topology and its history.", no_args_is_help=True)


def _show(t: dict[str, Any]) -> None:
    console.print(f"topology version {t['version']} at {ts(t['at'])} — cause: {t['cause']}")
    table("zones", ["zone", "region"], [[z["name"], z["region"]] for z in t["zones"]])
    table(
        "providers",
        ["id", "capabilities", "zone", "capacity", "registered", "lease expires"],
        [
            [
                p["id"],
                ",".join(p["capabilities"]),
                p["zone"],
                f"{p['capacity_rps']:g}",
                ts(p.get("registered_at")),
                ts(p.get("expires_at")) if p.get("expires_at") else "static",
            ]
            for p in t["providers"]
        ],
    )
    table(
        "contract flows",
        ["contract", "consumer", "capability", "state", "flows"],
        [
            [
                c["id"],
                c["consumer"],
                c["capability"],
                styled(c["state"]),
                " ".join(
                    f"{s['provider_id']}:{s['weight']}%" for s in (c["allocation"] or {}).get("shares", [])
                ),
            ]
            for c in t["contracts"]
        ],
    )


@topology.command("show")
def show(
    ctx: typer.Context,
    at: Annotated[str | None, typer.Option(help="a past instant: epoch, ISO, or 15m/2h ago")] = None,
) -> None:
    emit(ctx, api(ctx).get("/v1/topology", at=_since(at)), _show)


@topology.command("history")
def history(ctx: typer.Context, since: str | None = None, until: str | None = None) -> None:
    rows = api(ctx).get("/v1/topology/history", since=_since(since), until=_since(until))
    emit(
        ctx,
        rows,
        lambda r: table(
            "topology history",
            ["version", "at", "cause"],
            [[h["version"], ts(h["at"]), h["cause"]] for h in r],
        ),
    )


def _diff(d: dict[str, Any]) -> None:
    console.print(f"diff v{d.get('from')} → v{d.get('to')}")
    for section, items in d.items():
        if isinstance(items, dict):
            for change, things in items.items():
                if things:
                    console.print(f"  {section} {change}: {things}")
    for cause in d.get("causes", []):
        console.print(f"  cause: {cause}")


@topology.command("diff")
def diff(
    ctx: typer.Context,
    from_version: Annotated[int, typer.Argument()],
    to_version: Annotated[int, typer.Argument()],
) -> None:
    emit(ctx, api(ctx).get("/v1/topology/diff", **{"from": from_version, "to": to_version}), _diff)


@topology.command("export")
def export(
    ctx: typer.Context,
    format: Annotated[str, typer.Option(help="json, graphml or dot")] = "json",
    version: int | None = None,
    out: Annotated[str | None, typer.Option(help="write to FILE")] = None,
) -> None:
    data = api(ctx).get("/v1/topology/export", format=format, version=version)
    text = data if isinstance(data, str) else __import__("json").dumps(data, indent=2)
    if out:
        Path(out).write_text(text)
        console.print(f"wrote {out}")
    else:
        typer.echo(text)
