"""/v1/topology: the live topology, its history, and a server-sent event stream of changes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from meshctl.api.auth import Identity, identity
from meshctl.api.routers.contracts import cp
from meshctl.controlplane import ControlPlane
from meshctl.topology import history

router = APIRouter(prefix="/v1/topology", tags=["topology"])
Plane = Annotated[ControlPlane, Depends(cp)]
Anyone = Annotated[Identity, Depends(identity)]


@router.get("")
async def current(plane: Plane, _: Anyone) -> dict[str, Any]:
    return history.snapshot(
        plane.state, version=plane.history_version, at=plane.clock(), cause="current", detail={}
    )


@router.get("/history")
async def list_history(
    plane: Plane, _: Anyone, since: float | None = None, until: float | None = None
) -> list[dict[str, Any]]:
    out = []
    for h in await plane.store.list_history():
        if since is not None and h["at"] < since:
            continue
        if until is not None and h["at"] >= until:
            continue
        out.append(
            {"version": h["version"], "at": h["at"], "cause": h["cause"], "detail": h.get("detail", {})}
        )
    return out


@router.get("/stream")
async def stream(plane: Plane, request: Request, _: Anyone) -> StreamingResponse:
    """Server-sent events: one `topology` event per change (the full versioned snapshot)."""
    queue = plane.listen_history()

    async def events() -> AsyncIterator[str]:
        try:
            first = history.snapshot(
                plane.state, version=plane.history_version, at=plane.clock(), cause="current", detail={}
            )
            yield f"event: topology\ndata: {json.dumps(first)}\n\n"
            while not await request.is_disconnected():
                try:
                    snap = await asyncio.wait_for(queue.get(), 15)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield f"event: topology\ndata: {json.dumps(snap)}\n\n"
        finally:
            plane.unlisten_history(queue)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
