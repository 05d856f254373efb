"""/v1/policies (list, test, reload) and /v1/audit (query, verify, report)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from meshctl.api.auth import Identity, identity, operator
from meshctl.api.routers.contracts import cp
from meshctl.controlplane import ControlPlane
from meshctl.governance import audit

router = APIRouter(prefix="/v1", tags=["governance"])
Plane = Annotated[ControlPlane, Depends(cp)]


class PolicyDocument(BaseModel):
    filename: str = Field(min_length=1)
    content: str


class ReloadBody(BaseModel):
    documents: list[PolicyDocument] | None = None


class PolicyTestBody(BaseModel):
    contract: dict[str, Any]
    providers: list[dict[str, Any]] = []


@router.get("/policies")
async def list_policies(plane: Plane, _: Annotated[Identity, Depends(identity)]) -> dict[str, Any]:
    return {"digest": plane.policy_set.digest, "policies": plane.policy_set.to_dicts()}


@router.post("/policies/reload")
async def reload_policies(
    plane: Plane, who: Annotated[Identity, Depends(operator)], body: ReloadBody | None = None
) -> dict[str, Any]:
    """Reload from the policy directory, or replace with the given documents. On error nothing changes."""
    docs = [(d.filename, d.content) for d in body.documents] if body and body.documents is not None else None
    new = await plane.reload_policies(who.actor, docs)
    return {"digest": new.digest, "policies": new.to_dicts()}


@router.post("/policies/test")
async def test_policies(
    body: PolicyTestBody, plane: Plane, _: Annotated[Identity, Depends(identity)]
) -> dict[str, Any]:
    return plane.policy_set.test(body.contract, body.providers)


@router.get("/audit")
async def list_audit(
    plane: Plane,
    who: Annotated[Identity, Depends(identity)],
    contract: str | None = None,
    agent: str | None = None,
    policy: str | None = None,
    kind: str | None = None,
    since: float | None = None,
    until: float | None = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
) -> list[dict[str, Any]]:
    entries = await plane.store.list_audit()
    if not who.is_operator:
        agent = who.name  # an agent reads only what concerns it
    found = audit.query(
        entries, contract=contract, agent=agent, policy=policy, since=since, until=until, kind=kind
    )
    return found[-limit:]


@router.get("/audit/verify")
async def verify_audit(plane: Plane, _: Annotated[Identity, Depends(operator)]) -> dict[str, Any]:
    return audit.verify(await plane.store.list_audit()).to_dict()


@router.get("/audit/report", response_model=None)
async def audit_report(
    plane: Plane,
    _: Annotated[Identity, Depends(operator)],
    since: float = 0.0,
    until: float | None = None,
    format: str = "json",
) -> Any:
    markdown, data = audit.report(await plane.store.list_audit(), since, until or time.time() + 1)
    if format == "markdown":
        return PlainTextResponse(markdown, media_type="text/markdown")
    return data
