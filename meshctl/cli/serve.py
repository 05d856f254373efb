"""`meshctl serve` and `meshctl bootstrap`: run a control plane; print a sidecar's Envoy bootstrap."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from rich.console import Console

from meshctl.api.app import create_app
from meshctl.api.auth import Identity, TokenTable
from meshctl.bootstrap import AdsMode, bootstrap_yaml
from meshctl.controlplane import ControlPlane
from meshctl.errors import MeshError
from meshctl.governance.policy import PolicySet
from meshctl.store.base import Store
from meshctl.topology.loader import load_topology
from meshctl.tracing import setup_tracing, shutdown_tracing

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_POLICIES = REPO_ROOT / "policies"
err = Console(stderr=True)


def split_hostport(value: str, field: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    try:
        return host.strip("[]") or "127.0.0.1", int(port)
    except ValueError:
        raise typer.BadParameter(f"{field} must be HOST:PORT, got {value!r}") from None


async def open_store(url: str, origin: str, history_limit: int = 10_000) -> Store:
    if url == "memory":
        from meshctl.store.memory import MemoryStore

        return MemoryStore(origin=origin, history_limit=history_limit)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from meshctl.store.redis import RedisStore

        return await RedisStore.connect(url, origin=origin, history_limit=history_limit)
    raise typer.BadParameter(f"--store must be 'memory' or a redis:// URL, got {url!r}")


async def run_server(
    *,
    store_url: str,
    api: str,
    xds: str,
    topology: str | None,
    policies: str | None,
    tokens_file: str | None,
    origin: str | None = None,
    history_limit: int = 10_000,
) -> None:
    api_host, api_port = split_hostport(api, "--api")
    xds_host, xds_port = split_hostport(xds, "--xds")
    tf = load_topology(topology) if topology else None
    policy_dir = (
        policies if policies is not None else (str(DEFAULT_POLICIES) if DEFAULT_POLICIES.is_dir() else None)
    )
    policy_set = PolicySet.load(policy_dir) if policy_dir else PolicySet()
    tokens = TokenTable.from_config(tokens_file)
    if len(tokens) == 0:
        token = TokenTable.generate()
        tokens.add(token, Identity(name="admin", role="operator"))
        err.print(f"[yellow]no tokens configured[/]: operator token for this run: [bold]{token}[/]")
        err.print(f"  export MESHCTL_TOKEN={token}")
    plane_origin = origin or f"{api_host}:{api_port}"
    store = await open_store(store_url, plane_origin, history_limit)
    plane = ControlPlane(
        store, policies=policy_set, policies_dir=policy_dir, topology=tf, origin=plane_origin
    )
    app = create_app(plane, tokens, manage=True, xds_host=xds_host, xds_port=xds_port)
    config = uvicorn.Config(app, host=api_host, port=api_port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    # uvicorn installs its own handlers in serve(); ours stay as a fallback for the lifespan phase.
    err.print(
        f"meshctl serving: api http://{api_host}:{api_port} (docs /docs, ui /ui) · xds {xds_host}:{xds_port} · "
        f"store {store_url} · {len(policy_set)} policies"
    )
    try:
        await server.serve()
    finally:
        await store.close()


def serve(
    store: Annotated[str, typer.Option(help="memory, or redis://HOST:PORT/DB")] = "memory",
    api: Annotated[str, typer.Option(help="REST API listen address")] = "127.0.0.1:8080",
    xds: Annotated[str, typer.Option(help="xDS (ADS gRPC) listen address")] = "127.0.0.1:18000",
    topology: Annotated[str | None, typer.Option(help="topology YAML (zones, regions, links)")] = None,
    policies: Annotated[
        str | None, typer.Option(help="policy directory (default: the repo's policies/)")
    ] = None,
    tokens: Annotated[str | None, typer.Option(help="tokens YAML; also MESHCTL_TOKENS")] = None,
    origin: Annotated[str | None, typer.Option(help="replica name (default: the API address)")] = None,
    history_limit: Annotated[
        int, typer.Option("--history-limit", min=1, help="topology history versions kept (oldest dropped)")
    ] = 10_000,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the control plane: REST API, xDS server and lifecycle keeper. SIGTERM stops it cleanly."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    tracer_provider = None
    try:
        tracer_provider = setup_tracing("meshctl")
        asyncio.run(
            run_server(
                store_url=store,
                api=api,
                xds=xds,
                topology=topology,
                policies=policies,
                tokens_file=tokens,
                origin=origin,
                history_limit=history_limit,
            )
        )
    except MeshError as e:
        err.print(f"[red]error[/] {e.code}: {e.message}" + (f" ({e.field})" if e.field else ""))
        raise typer.Exit(2) from None
    finally:
        shutdown_tracing(tracer_provider)


def bootstrap(
    node_id: Annotated[str, typer.Option("--node-id", help="Envoy node.id (unique per proxy)")],
    service: Annotated[str, typer.Option(help="the service this sidecar fronts (node.cluster)")],
    zone: Annotated[str, typer.Option(help="the proxy's zone (node.locality.zone)")],
    region: Annotated[str, typer.Option(help="the proxy's region")] = "",
    xds: Annotated[str, typer.Option(help="control plane xDS address")] = "127.0.0.1:18000",
    admin_port: Annotated[int, typer.Option("--admin-port")] = 15000,
    ads: Annotated[str, typer.Option(help="sotw or delta")] = "sotw",
    listener_port: Annotated[int, typer.Option("--listener-port")] = 15001,
) -> None:
    """Print an Envoy bootstrap (YAML) that connects to meshctl over ADS."""
    host, port = split_hostport(xds, "--xds")
    if ads not in ("sotw", "delta"):
        raise typer.BadParameter("--ads must be sotw or delta")
    mode: AdsMode = "delta" if ads == "delta" else "sotw"
    try:
        text = bootstrap_yaml(
            node_id,
            service,
            zone,
            region=region,
            xds_host=host,
            xds_port=port,
            admin_port=admin_port,
            ads=mode,
            listener_port=listener_port,
        )
    except MeshError as e:
        err.print(f"[red]error[/] {e.code}: {e.message} ({e.field})")
        raise typer.Exit(2) from None
    typer.echo(text, nl=False)
