"""The FastAPI application: routers, auth, error mapping, OpenAPI at /docs."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from meshctl import __version__
from meshctl.api import errors
from meshctl.api.auth import TokenTable
from meshctl.api.routers import contracts, governance, health, mesh, proxies, topology
from meshctl.controlplane import ControlPlane

UI_DIR = Path(__file__).resolve().parent.parent / "ui"


def create_app(
    plane: ControlPlane,
    tokens: TokenTable,
    *,
    manage: bool = False,
    xds_host: str = "127.0.0.1",
    xds_port: int = 0,
) -> FastAPI:
    """`manage=True` starts and stops the control plane with the app (tests, `serve`)."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if manage:
            await plane.start(xds_host, xds_port)
        try:
            yield
        finally:
            if manage:
                await plane.stop()

    app = FastAPI(
        title="meshctl",
        version=__version__,
        description="Contract-based service-mesh control plane. Authenticate with `Authorization: Bearer TOKEN`.",
        lifespan=lifespan,
    )
    app.state.cp = plane
    app.state.tokens = tokens
    errors.install(app)
    for r in (
        contracts.router,
        mesh.router,
        proxies.router,
        governance.router,
        topology.router,
        health.router,
    ):
        app.include_router(r)
    if UI_DIR.is_dir():
        app.mount("/ui", StaticFiles(directory=UI_DIR, html=True), name="ui")

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/ui/")

    return app
