"""/v1/topology: the live topology, its history (point in time, diff, provider lifetimes), exports,
and a server-sent event stream of changes.

Authentication is the usual bearer header everywhere. The stream alone also accepts the token
as `?token=`: browsers' EventSource cannot send headers, and the web view (`/ui/?token=...`) passes
on the token it was opened with. The API server does not log request URLs (uvicorn's access log
is off), so the token does not land in logs there; a reverse proxy in front should not log it
either.
"""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from meshctl.api.auth import Identity, identity
from meshctl.api.routers.contracts import cp
from meshctl.controlplane import ControlPlane
from meshctl.errors import Unauthorized, ValidationFailed
from meshctl.topology import export, history

router = APIRouter(prefix="/v1/topology", tags=["topology"])
Plane = Annotated[ControlPlane, Depends(cp)]
Anyone = Annotated[Identity, Depends(identity)]

# Reading the whole history copies every retained snapshot; a slider dragged over the web view
# asks many times a second. Reuse the last read while this replica recorded nothing new, and at
# most this long, so versions other replicas recorded still show up promptly.
_HISTORY_REUSE_S = 1.0
_history_cache: weakref.WeakKeyDictionary[ControlPlane, tuple[int, float, list[dict[str, Any]]]] = (
    weakref.WeakKeyDictionary()
)


async def retained(plane: ControlPlane) -> list[dict[str, Any]]:
    """The retained history, oldest first (read-only: callers must not mutate it)."""
    now = time.monotonic()
    hit = _history_cache.get(plane)
    if hit is not None and hit[0] == plane.history_version and now - hit[1] < _HISTORY_REUSE_S:
        return hit[2]
    snaps = sorted(await plane.store.list_history(), key=lambda s: (s["at"], s["version"]))
    _history_cache[plane] = (plane.history_version, now, snaps)
    return snaps


def visible(snap: dict[str, Any], who: Identity) -> dict[str, Any]:
    """What `who` may see of a snapshot: operators everything; an agent the mesh and only its own
    contracts (another agent's contract is a 404 everywhere else, so it is absent here)."""
    if who.is_operator:
        return snap
    return {**snap, "contracts": [c for c in snap.get("contracts", []) if c.get("owner") == who.name]}


async def retained_for(plane: ControlPlane, who: Identity) -> list[dict[str, Any]]:
    snaps = await retained(plane)
    return snaps if who.is_operator else [visible(s, who) for s in snaps]


def current(plane: ControlPlane) -> dict[str, Any]:
    return history.snapshot(
        plane.state, version=plane.history_version, at=plane.clock(), cause="current", detail={}
    )


async def _pick(plane: ControlPlane, version: int | None, at: float | None, who: Identity) -> dict[str, Any]:
    if version is not None and at is not None:
        raise ValidationFailed("give either version or at, not both", field="at")
    if version is not None:
        return visible(history.at_version(await retained(plane), version), who)
    if at is not None:
        return visible(history.at_instant(await retained(plane), at), who)
    return visible(current(plane), who)


@router.get("")
async def get_topology(
    plane: Plane,
    who: Anyone,
    at: Annotated[float | None, Query(description="epoch seconds: the snapshot in force then")] = None,
    version: Annotated[int | None, Query(description="a history version")] = None,
) -> dict[str, Any]:
    """The live topology, or the recorded one at an instant (`at`) or of a version (`version`)."""
    return await _pick(plane, version, at, who)


@router.get("/history")
async def list_history(
    plane: Plane, who: Anyone, since: float | None = None, until: float | None = None
) -> list[dict[str, Any]]:
    """Versions recorded in [since, until): version, time, cause, providers and live contracts then."""
    return [history.summary(s) for s in history.window(await retained_for(plane, who), since, until)]


@router.get("/diff")
async def diff(
    plane: Plane,
    who: Anyone,
    from_version: Annotated[int, Query(alias="from")],
    to_version: Annotated[int, Query(alias="to")],
) -> dict[str, Any]:
    """What appeared, vanished and changed between two versions, with the causes in between."""
    return history.diff(await retained_for(plane, who), from_version, to_version)


@router.get("/providers")
async def provider_lifetimes(plane: Plane, _: Anyone) -> list[dict[str, Any]]:
    """Every provider the retained history saw (also those gone): first/last seen, when it left."""
    return history.provider_lifetimes(await retained(plane))


@router.get(
    "/export",
    responses={
        200: {
            "content": {
                "application/json": {},
                "application/xml": {},
                "text/vnd.graphviz": {},
            },
            "description": "JSON node-link, GraphML or Graphviz DOT",
        }
    },
)
async def export_topology(
    plane: Plane,
    who: Anyone,
    format: Annotated[str, Query(description="json, graphml or dot")] = "json",
    version: int | None = None,
    at: float | None = None,
) -> Response:
    """The live topology (or a version / an instant) as a graph file."""
    fmt = export.parse_format(format)
    body = export.render(await _pick(plane, version, at, who), fmt)
    if isinstance(body, dict):
        return JSONResponse(body)
    return Response(body, media_type=export.MEDIA_TYPES[fmt])


def stream_identity(request: Request, token: str | None = None) -> Identity:
    """The bearer header, or `?token=` (EventSource cannot set headers)."""
    if request.headers.get("authorization"):
        return identity(request)
    if not token:
        raise Unauthorized(
            "a bearer token is required (Authorization header, or ?token= for event streams)",
            field="authorization",
        )
    who = request.app.state.tokens.identify(token)
    if who is None:
        raise Unauthorized("unknown or revoked token", field="token")
    assert isinstance(who, Identity)
    return who


@router.get("/stream")
async def stream(
    plane: Plane, request: Request, who: Annotated[Identity, Depends(stream_identity)]
) -> StreamingResponse:
    """Server-sent events: one `topology` event per change (the full versioned snapshot), the
    current topology first. Auth: bearer header or `?token=`."""
    queue = plane.listen_history()

    async def events() -> AsyncIterator[str]:
        try:
            yield f"event: topology\ndata: {json.dumps(visible(current(plane), who))}\n\n"
            while not await request.is_disconnected():
                try:
                    snap = await asyncio.wait_for(queue.get(), 15)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield f"event: topology\ndata: {json.dumps(visible(snap, who))}\n\n"
        finally:
            plane.unlisten_history(queue)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
