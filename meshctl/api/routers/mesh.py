"""/v1/zones, /v1/links (operator writes) and /v1/providers (advertise with a lease, heartbeat, leave)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from meshctl.api.auth import Identity, identity, operator
from meshctl.api.routers.contracts import cp
from meshctl.controlplane import ControlPlane
from meshctl.errors import NotFound
from meshctl.model import Link, Provider, ProviderSpec, Zone

router = APIRouter(prefix="/v1", tags=["mesh"])
Plane = Annotated[ControlPlane, Depends(cp)]
Anyone = Annotated[Identity, Depends(identity)]
Operator = Annotated[Identity, Depends(operator)]


@router.get("/zones", response_model=list[Zone])
async def list_zones(plane: Plane, _: Anyone) -> list[Zone]:
    return sorted(plane.state.graph.zones(), key=lambda z: z.name)


@router.post("/zones", response_model=Zone, status_code=201)
async def put_zone(zone: Zone, plane: Plane, _: Operator) -> Zone:
    return await plane.put_zone(zone)


@router.delete("/zones/{name}", status_code=204)
async def delete_zone(name: str, plane: Plane, _: Operator) -> Response:
    await plane.delete_zone(name)
    return Response(status_code=204)


@router.get("/links", response_model=list[Link])
async def list_links(plane: Plane, _: Anyone) -> list[Link]:
    return sorted(plane.state.graph.links(), key=lambda x: x.key)


@router.post("/links", response_model=Link, status_code=201)
async def put_link(link: Link, plane: Plane, _: Operator) -> Link:
    return await plane.put_link(link)


@router.delete("/links/{a}/{b}", status_code=204)
async def delete_link(a: str, b: str, plane: Plane, _: Operator) -> Response:
    await plane.delete_link(a, b)
    return Response(status_code=204)


@router.get("/providers", response_model=list[Provider])
async def list_providers(plane: Plane, _: Anyone, capability: str | None = None) -> list[Provider]:
    ps = plane.state.graph.providers_for(capability) if capability else plane.state.graph.providers()
    return sorted(ps, key=lambda p: p.id)


@router.post("/providers", response_model=Provider, status_code=201)
async def put_provider(spec: ProviderSpec, plane: Plane, who: Anyone) -> Provider:
    """Advertise (or update) a provider. With `ttl_s`, heartbeats must renew the lease.

    The registering identity owns the provider: only it (or an operator) may update, heartbeat
    or remove it; another identity gets 409 on register and 404 on the rest."""
    return await plane.put_provider(spec, who.owner_filter)


@router.get("/providers/{provider_id}", response_model=Provider)
async def get_provider(provider_id: str, plane: Plane, _: Anyone) -> Provider:
    p = plane.state.graph.provider(provider_id)
    if p is None:
        raise NotFound(f"provider {provider_id!r} not found", field="provider_id")
    return p


@router.post("/providers/{provider_id}/heartbeat", response_model=Provider)
async def heartbeat(provider_id: str, plane: Plane, who: Anyone) -> Provider:
    return await plane.heartbeat(provider_id, who.owner_filter)


@router.delete("/providers/{provider_id}", status_code=204)
async def delete_provider(provider_id: str, plane: Plane, who: Anyone) -> Response:
    await plane.delete_provider(provider_id, who.owner_filter)
    return Response(status_code=204)
