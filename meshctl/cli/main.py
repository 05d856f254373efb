"""Root of the `meshctl` command."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from meshctl.cli import serve as serve_cmds
from meshctl.cli import verbs
from meshctl.cli.client import Settings
from meshctl.cli.topo import topology

app = typer.Typer(
    help="meshctl — a service-mesh control plane where traffic follows negotiated SLA contracts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(
    ctx: typer.Context,
    api: Annotated[
        str, typer.Option(envvar="MESHCTL_API", help="REST API base URL")
    ] = "http://127.0.0.1:8080",
    token: Annotated[str | None, typer.Option(envvar="MESHCTL_TOKEN", help="bearer token")] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="table (people) or json (scripts)")] = "table",
) -> None:
    if output not in ("table", "json"):
        raise typer.BadParameter("--output must be table or json")
    ctx.obj = Settings(api=api, token=token or os.environ.get("MESHCTL_TOKEN"), output=output)


@app.command()
def demo(
    keep: Annotated[bool, typer.Option(help="keep running after the story (Ctrl-C to stop)")] = False,
    fast: Annotated[bool, typer.Option(help="shorter pauses")] = True,
) -> None:
    """The 2:17 AM story: an agent negotiates a route; real Envoy carries it; a provider vanishes."""
    from meshctl.demo.story import run_demo

    raise typer.Exit(run_demo(keep=keep, fast=fast))


app.command()(serve_cmds.serve)
app.command()(serve_cmds.bootstrap)
app.command()(verbs.explain)
app.add_typer(verbs.providers, name="providers")
app.add_typer(verbs.contracts, name="contracts")
app.add_typer(verbs.proxies, name="proxies")
app.add_typer(topology, name="topology")
app.add_typer(verbs.audit, name="audit")
app.add_typer(verbs.policy, name="policy")
