"""/healthz (process alive), /readyz (serving xDS with state loaded), /metrics (Prometheus)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST

from meshctl.api.routers.contracts import cp
from meshctl.controlplane import ControlPlane

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(plane: Annotated[ControlPlane, Depends(cp)], response: Response) -> dict[str, Any]:
    ready = plane.xds_port is not None
    response.status_code = 200 if ready else 503
    return {"ready": ready, "xds_port": plane.xds_port, "origin": plane.origin}


@router.get("/metrics")
async def metrics(plane: Annotated[ControlPlane, Depends(cp)]) -> Response:
    return Response(plane.metrics.render(), media_type=CONTENT_TYPE_LATEST)
