"""Operator and agent verbs over the REST API: providers, contracts, explain, proxies, audit, policy."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.progress import Progress, SpinnerColumn, TextColumn

from meshctl.cli.client import api, console, emit, styled, table, ts

providers = typer.Typer(help="Capability providers (advertise, heartbeat, deregister).", no_args_is_help=True)
contracts = typer.Typer(
    help="SLA contracts (propose, list, get, renew, revoke, approve, reject).", no_args_is_help=True
)
proxies = typer.Typer(help="Connected proxies: sync status and configuration.", no_args_is_help=True)
audit = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
policy = typer.Typer(help="Policies as code.", no_args_is_help=True)


def _load(path: str) -> Any:
    text = Path(path).read_text() if path != "-" else typer.get_text_stream("stdin").read()
    return yaml.safe_load(text)


# -- providers ----------------------------------------------------------------------------------------
def _providers_table(rows: list[dict[str, Any]]) -> None:
    table(
        "providers",
        ["id", "capabilities", "zone", "capacity rps", "p99 ms", "cost/1k", "lease expires", "endpoints"],
        [
            [
                p["id"],
                ",".join(p["capabilities"]),
                p["zone"],
                f"{p['capacity_rps']:g}",
                f"{p['latency_p99_ms']:g}",
                f"{p['cost_per_1k']:g}",
                ts(p.get("expires_at")) if p.get("expires_at") else "static",
                " ".join(f"{e['address']}:{e['port']}" for e in p["endpoints"]),
            ]
            for p in rows
        ],
    )


@providers.command("list")
def providers_list(ctx: typer.Context, capability: str | None = None) -> None:
    emit(ctx, api(ctx).get("/v1/providers", capability=capability), _providers_table)


@providers.command("get")
def providers_get(ctx: typer.Context, provider_id: str) -> None:
    emit(ctx, api(ctx).get(f"/v1/providers/{provider_id}"), lambda p: _providers_table([p]))


@providers.command("register")
def providers_register(
    ctx: typer.Context, file: Annotated[str, typer.Argument(help="provider YAML/JSON file, or - for stdin")]
) -> None:
    """Advertise (or update) a provider from a file."""
    emit(ctx, api(ctx).post("/v1/providers", _load(file)), lambda p: _providers_table([p]))


@providers.command("heartbeat")
def providers_heartbeat(ctx: typer.Context, provider_id: str) -> None:
    emit(ctx, api(ctx).post(f"/v1/providers/{provider_id}/heartbeat"), lambda p: _providers_table([p]))


@providers.command("remove")
def providers_remove(ctx: typer.Context, provider_id: str) -> None:
    api(ctx).delete(f"/v1/providers/{provider_id}")
    emit(ctx, {"removed": provider_id}, lambda d: console.print(f"provider {provider_id} deregistered"))


# -- contracts ----------------------------------------------------------------------------------------
def _alloc_text(c: dict[str, Any]) -> str:
    a = c.get("allocation")
    if not a:
        return "-"
    return " ".join(f"{s['provider_id']}:{s['weight']}%" for s in a["shares"])


def _contracts_table(rows: list[dict[str, Any]]) -> None:
    table(
        "contracts",
        ["id", "owner", "consumer", "capability", "state", "rps", "p99 ms", "allocation", "expires"],
        [
            [
                c["id"],
                c["owner"],
                c["request"]["consumer"],
                c["request"]["capability"],
                styled(c["state"]),
                f"{c['request']['sla']['rps']:g}",
                f"{c['request']['sla']['p99_latency_ms']:g}",
                _alloc_text(c),
                ts(c["expires_at"]),
            ]
            for c in rows
        ],
    )


def _contract_detail(c: dict[str, Any]) -> None:
    _contracts_table([c])
    a = c.get("allocation")
    if a:
        table(
            f"allocation of {c['id']} (expected p99 {a['expected_p99_ms']:.1f} ms, {a['cost_per_1k']:.3f}/1k,"
            f" acked by {', '.join(a.get('acked_by') or []) or 'nobody yet'})",
            ["provider", "zone", "rps", "weight", "expected p99 ms", "cost/1k", "priority"],
            [
                [
                    s["provider_id"],
                    s["zone"],
                    f"{s['rps']:g}",
                    s["weight"],
                    f"{s['expected_p99_ms']:.1f}",
                    f"{s['cost_per_1k']:g}",
                    s["priority"],
                ]
                for s in [*a["shares"], *a.get("failover", [])]
            ],
        )
    for r in c.get("reasons", []):
        console.print(f"  reason: {r}")


def _decision(d: dict[str, Any]) -> None:
    console.print(f"outcome: {styled(d['outcome'])}" + ("  [dim](dry run)[/]" if d.get("dry_run") else ""))
    if d.get("contract"):
        _contract_detail(d["contract"])
    offer = d.get("counter_offer")
    if offer:
        sla = offer["sla"]
        console.print(
            f"counter-offer: {sla['rps']:g} rps at p99 {sla['p99_latency_ms']:g} ms"
            + (f", {offer['max_cost_per_1k']:g}/1k" if offer.get("max_cost_per_1k") is not None else "")
        )
        for b in offer.get("binding", []):
            best = f" (best {b['best']:g})" if b.get("best") is not None else ""
            console.print(f"  binding: [yellow]{b['constraint']}[/]: {b['reason']}{best}")
    for r in d.get("reasons", []) if not d.get("contract") else []:
        console.print(f"  reason: {r}")


@contracts.command("propose")
def contracts_propose(
    ctx: typer.Context,
    file: Annotated[str | None, typer.Argument(help="contract request YAML/JSON, or - for stdin")] = None,
    consumer: str | None = None,
    capability: str | None = None,
    rps: float | None = None,
    p99: Annotated[float | None, typer.Option("--p99", help="p99 latency budget, ms")] = None,
    zone: Annotated[str | None, typer.Option(help="consumer zone")] = None,
    max_cost: Annotated[float | None, typer.Option("--max-cost", help="bid per 1k requests")] = None,
    duration: Annotated[float | None, typer.Option(help="seconds")] = None,
    region: Annotated[list[str] | None, typer.Option(help="allowed region (repeatable)")] = None,
    label: Annotated[list[str] | None, typer.Option(help="KEY=VALUE contract label (repeatable)")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="what-if: nothing is reserved or pushed")
    ] = False,
    wait: Annotated[bool, typer.Option("--wait", help="answer once the consumer's proxies ACKed")] = False,
) -> None:
    """Propose a contract from a file or from flags."""
    body: dict[str, Any] = _load(file) if file else {}
    if consumer:
        body["consumer"] = consumer
    if capability:
        body["capability"] = capability
    sla = body.setdefault("sla", {})
    if rps is not None:
        sla["rps"] = rps
    if p99 is not None:
        sla["p99_latency_ms"] = p99
    if zone:
        body["consumer_zone"] = zone
    if max_cost is not None:
        body["max_cost_per_1k"] = max_cost
    if duration is not None:
        body["duration_s"] = duration
    if region:
        body.setdefault("constraints", {})["regions"] = region
    for kv in label or []:
        k, _, v = kv.partition("=")
        body.setdefault("labels", {})[k] = v
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), transient=True, console=console) as prog:
        prog.add_task("negotiating" + (" and waiting for proxies to ACK" if wait else ""), total=None)
        d = api(ctx).post("/v1/contracts", body, dry_run=str(dry_run).lower(), wait="acked" if wait else None)
    emit(ctx, d, _decision)


@contracts.command("list")
def contracts_list(ctx: typer.Context, state: str | None = None, capability: str | None = None) -> None:
    emit(ctx, api(ctx).get("/v1/contracts", state=state, capability=capability), _contracts_table)


@contracts.command("get")
def contracts_get(ctx: typer.Context, contract_id: str) -> None:
    emit(ctx, api(ctx).get(f"/v1/contracts/{contract_id}"), _contract_detail)


@contracts.command("renew")
def contracts_renew(ctx: typer.Context, contract_id: str, duration: float | None = None) -> None:
    body = {"duration_s": duration} if duration else {}
    emit(ctx, api(ctx).post(f"/v1/contracts/{contract_id}/renew", body), _contract_detail)


@contracts.command("revoke")
def contracts_revoke(ctx: typer.Context, contract_id: str) -> None:
    emit(ctx, api(ctx).post(f"/v1/contracts/{contract_id}/revoke"), _contract_detail)


@contracts.command("approve")
def contracts_approve(ctx: typer.Context, contract_id: str, reason: Annotated[str, typer.Option()]) -> None:
    emit(ctx, api(ctx).post(f"/v1/contracts/{contract_id}/approve", {"reason": reason}), _contract_detail)


@contracts.command("reject")
def contracts_reject(ctx: typer.Context, contract_id: str, reason: Annotated[str, typer.Option()]) -> None:
    emit(ctx, api(ctx).post(f"/v1/contracts/{contract_id}/reject", {"reason": reason}), _contract_detail)


def _explain(e: dict[str, Any]) -> None:
    c = e["contract"]
    console.rule(f"[bold]explain {c['id']}[/] — {styled(c['state'])}")
    r = e["request"]
    console.print(
        f"request: {r['consumer']} wants [bold]{r['capability']}[/] at {r['sla']['rps']:g} rps, "
        f"p99 ≤ {r['sla']['p99_latency_ms']:g} ms, bid {r.get('max_cost_per_1k')}, labels {r.get('labels') or {}}"
    )
    pol = e["policies"]
    console.print(f"policies (evaluated {pol['evaluated']}): decision [bold]{pol.get('decision')}[/]")
    for res in pol.get("results", []):
        if res["outcome"] != "not_applicable":
            console.print(f"  • {res['policy']} ({res['effect']}): {res['outcome']} — {res['message']}")
    table(
        "candidates",
        ["provider", "zone", "feasible", "dropped because", "expected p99", "residual rps", "cost/1k"],
        [
            [
                c_["provider"],
                c_["zone"],
                "yes" if c_["feasible"] else "[red]no[/]",
                c_["dropped_because"],
                f"{c_['expected_p99_ms']:.1f}" if c_["expected_p99_ms"] is not None else "-",
                f"{c_['residual_rps']:g}",
                f"{c_['cost_per_1k']:g}",
            ]
            for c_ in e["candidates"]
        ],
    )
    if e["allocation"]:
        _contract_detail(c)
    table(
        "envoy resources",
        ["type", "names"],
        [[t, ", ".join(n) or "-"] for t, n in e["resources"].items()],
    )
    table(
        "proxies",
        ["node", "zone", "acked", "detail"],
        [
            [
                p["node"],
                p["zone"],
                "[green]yes[/]" if p["acked"] else "[yellow]no[/]",
                "; ".join(
                    f"{t}: set {v['version_set']} acked {v['version_acked']}" for t, v in p["types"].items()
                ),
            ]
            for p in e["proxies"]
        ],
    )


@contracts.command("explain")
def contracts_explain(ctx: typer.Context, contract_id: str) -> None:
    emit(ctx, api(ctx).get(f"/v1/contracts/{contract_id}/explain"), _explain)


def explain(ctx: typer.Context, contract_id: str) -> None:
    """Why a contract's traffic goes where it goes."""
    contracts_explain(ctx, contract_id)


# -- proxies --------------------------------------------------------------------------------------------
def _proxies_table(rows: list[dict[str, Any]]) -> None:
    def cell(p: dict[str, Any], short: str) -> str:
        for t in p["types"].values():
            if t["type"] == short:
                if t.get("last_nack") and t["last_nack"]["version"] == t.get("version_sent"):
                    return "[red]NACKED[/]"
                return "[green]SYNCED[/]" if t["in_sync"] else "[yellow]STALE[/]"
        return "-"

    table(
        "proxies",
        ["node", "service", "zone", "stream", "sync", "CDS", "EDS", "LDS", "RDS", "connected since"],
        [
            [
                p["node"]["id"],
                p["node"]["cluster"],
                p["node"]["zone"],
                p["stream"],
                styled(p["sync"]),
                cell(p, "clusters"),
                cell(p, "endpoints"),
                cell(p, "listeners"),
                cell(p, "routes"),
                ts(p["connected_since"]),
            ]
            for p in rows
        ],
    )
    for p in rows:
        for t in p["types"].values():
            if t.get("last_nack"):
                console.print(
                    f"[red]{p['node']['id']} NACK[/] {t['type']} {t['last_nack']['version']}: {t['last_nack']['error']}"
                )


@proxies.command("status")
def proxies_status(ctx: typer.Context) -> None:
    """Sync status of every proxy (like istioctl proxy-status)."""
    emit(ctx, api(ctx).get("/v1/proxies"), _proxies_table)


@proxies.command("config")
def proxies_config(ctx: typer.Context, node_id: str) -> None:
    """The configuration one proxy was sent (always JSON: it is Envoy's own format)."""
    data = api(ctx).get(f"/v1/proxies/{node_id}/config")
    typer.echo(json.dumps(data, indent=2, sort_keys=True))


# -- audit -------------------------------------------------------------------------------------------------
def _audit_table(rows: list[dict[str, Any]]) -> None:
    table(
        "audit",
        ["seq", "at", "actor", "subject", "kind", "decision", "policies"],
        [
            [
                e["seq"],
                ts(e["at"]),
                e["actor"],
                e["subject"],
                e["kind"],
                e["decision"],
                ", ".join(
                    p["policy"]
                    for p in e.get("policies", [])
                    if p.get("outcome") not in ("not_applicable", None)
                ),
            ]
            for e in rows
        ],
    )


def _since(value: str | None) -> float | None:
    """Epoch seconds, ISO time, or a relative '15m' / '2h' / '1d'."""
    if value is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if value[-1:] in units and value[:-1].replace(".", "", 1).isdigit():
        return time.time() - float(value[:-1]) * units[value[-1]]
    try:
        return float(value)
    except ValueError:
        from datetime import datetime

        return datetime.fromisoformat(value).timestamp()


@audit.command("list")
def audit_list(
    ctx: typer.Context,
    contract: str | None = None,
    agent: str | None = None,
    policy_name: Annotated[str | None, typer.Option("--policy")] = None,
    since: Annotated[str | None, typer.Option(help="epoch, ISO time or 15m/2h/1d")] = None,
    until: str | None = None,
    kind: str | None = None,
) -> None:
    rows = api(ctx).get(
        "/v1/audit",
        contract=contract,
        agent=agent,
        policy=policy_name,
        since=_since(since),
        until=_since(until),
        kind=kind,
    )
    emit(ctx, rows, _audit_table)


@audit.command("verify")
def audit_verify(ctx: typer.Context) -> None:
    """Recompute the hash chain; exit 1 and name the first broken entry if it was tampered with."""
    r = api(ctx).get("/v1/audit/verify")
    emit(
        ctx,
        r,
        lambda v: console.print(
            f"[green]audit chain intact[/]: {v['checked']} entries"
            if v["ok"]
            else f"[red]audit chain broken at seq {v['first_broken_seq']}[/]: {v['reason']}"
        ),
    )
    if not r["ok"]:
        raise typer.Exit(1)


@audit.command("report")
def audit_report(
    ctx: typer.Context,
    since: Annotated[str, typer.Option(help="epoch, ISO time or 15m/2h/1d")],
    until: str | None = None,
    out: Annotated[str | None, typer.Option(help="write FILE.md and FILE.json instead of printing")] = None,
) -> None:
    """A compliance report: decisions per policy, approved exceptions and who approved them."""
    a = api(ctx)
    params = {"since": _since(since), "until": _since(until)}
    data = a.get("/v1/audit/report", **params)
    md = a.get("/v1/audit/report", format="markdown", **params)
    if out:
        Path(f"{out}.md").write_text(md)
        Path(f"{out}.json").write_text(json.dumps(data, indent=2, sort_keys=True))
        console.print(f"wrote {out}.md and {out}.json")
        return
    emit(ctx, data, lambda _: console.print(md))


# -- policy ------------------------------------------------------------------------------------------------
def _policies_table(d: dict[str, Any]) -> None:
    table(
        f"policies (digest {d['digest'][:12]})",
        ["name", "effect", "applies_to", "predicate", "source"],
        [
            [p["name"], p["effect"], p.get("applies_to"), p.get("predicate") or "-", p.get("source", "-")]
            for p in d["policies"]
        ],
    )


@policy.command("list")
def policy_list(ctx: typer.Context) -> None:
    emit(ctx, api(ctx).get("/v1/policies"), _policies_table)


@policy.command("test")
def policy_test(
    ctx: typer.Context,
    contract_file: Annotated[str, typer.Argument(help="sample contract YAML/JSON")],
    providers_file: Annotated[str | None, typer.Argument(help="sample providers YAML/JSON list")] = None,
) -> None:
    """Dry-run the policies in force against a sample contract (and providers)."""
    body = {"contract": _load(contract_file), "providers": _load(providers_file) if providers_file else []}
    emit(ctx, api(ctx).post("/v1/policies/test", body), lambda d: console.print_json(data=d))


@policy.command("reload")
def policy_reload(
    ctx: typer.Context,
    files: Annotated[
        list[str] | None, typer.Argument(help="policy files to upload (default: reload the server's dir)")
    ] = None,
) -> None:
    """Reload policies (operator). A bad file is refused with file:line; the policies in force stay."""
    body = (
        {"documents": [{"filename": Path(f).name, "content": Path(f).read_text()} for f in files]}
        if files
        else None
    )
    emit(ctx, api(ctx).post("/v1/policies/reload", body), _policies_table)
