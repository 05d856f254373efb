"""/v1/contracts: propose (dry_run, wait=acked), list, get, renew, revoke, approve, reject, explain."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import BaseModel, Field

from meshctl.api.auth import Identity, identity, operator
from meshctl.contracts.explain import explain
from meshctl.controlplane import ControlPlane
from meshctl.model import Contract, ContractRequest, ContractState, Decision, ProposalOutcome

router = APIRouter(prefix="/v1/contracts", tags=["contracts"])

_STATUS = {
    ProposalOutcome.ADMITTED: 201,
    ProposalOutcome.PENDING_APPROVAL: 202,
    ProposalOutcome.COUNTER_OFFER: 200,
    ProposalOutcome.REJECTED: 200,
}


def cp(request: Request) -> ControlPlane:
    plane: ControlPlane = request.app.state.cp
    return plane


class RenewBody(BaseModel):
    duration_s: float | None = Field(default=None, gt=0)


class ReasonBody(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)


@router.post("", response_model=Decision, responses={201: {"model": Decision}, 202: {"model": Decision}})
async def propose(
    body: ContractRequest,
    response: Response,
    plane: Annotated[ControlPlane, Depends(cp)],
    who: Annotated[Identity, Depends(identity)],
    dry_run: bool = False,
    wait: Annotated[
        Literal["acked"] | None, Query(description="acked: answer once the proxies ACKed")
    ] = None,
    timeout_s: Annotated[float, Query(gt=0, le=60)] = 5.0,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=200,
            description="retrying with the same key returns the stored decision instead of proposing again",
        ),
    ] = None,
) -> Decision:
    """Propose a contract. 201 admitted, 202 pending approval, 200 counter-offer or rejected."""
    decision = await plane.negotiator.propose(
        who.name,
        body,
        dry_run=dry_run,
        wait_acked=wait == "acked",
        ack_timeout_s=timeout_s,
        idempotency_key=idempotency_key,
    )
    response.status_code = 200 if dry_run else _STATUS[decision.outcome]
    return decision


@router.get("", response_model=list[Contract])
async def list_contracts(
    plane: Annotated[ControlPlane, Depends(cp)],
    who: Annotated[Identity, Depends(identity)],
    state: ContractState | None = None,
    capability: str | None = None,
    owner: str | None = None,
) -> list[Contract]:
    mine = who.owner_filter
    out = []
    for c in sorted(plane.state.contracts.values(), key=lambda c: c.created_at):
        if mine is not None and c.owner != mine:
            continue
        if state is not None and c.state is not state:
            continue
        if capability is not None and c.request.capability != capability:
            continue
        if owner is not None and c.owner != owner:
            continue
        out.append(c)
    return out


@router.get("/{contract_id}", response_model=Contract)
async def get_contract(
    contract_id: str, plane: Annotated[ControlPlane, Depends(cp)], who: Annotated[Identity, Depends(identity)]
) -> Contract:
    return await plane.negotiator.with_acks(plane.lifecycle.get(contract_id, who.owner_filter))


@router.post("/{contract_id}/renew", response_model=Contract)
async def renew(
    contract_id: str,
    plane: Annotated[ControlPlane, Depends(cp)],
    who: Annotated[Identity, Depends(identity)],
    body: RenewBody | None = None,
) -> Contract:
    return await plane.lifecycle.renew(contract_id, who.owner_filter, body.duration_s if body else None)


@router.post("/{contract_id}/revoke", response_model=Contract)
async def revoke(
    contract_id: str, plane: Annotated[ControlPlane, Depends(cp)], who: Annotated[Identity, Depends(identity)]
) -> Contract:
    return await plane.lifecycle.revoke(contract_id, who.owner_filter, who.actor)


@router.delete("/{contract_id}", response_model=Contract)
async def delete_contract(
    contract_id: str, plane: Annotated[ControlPlane, Depends(cp)], who: Annotated[Identity, Depends(identity)]
) -> Contract:
    """Same as revoke (DELETE for clients that think in resources)."""
    return await plane.lifecycle.revoke(contract_id, who.owner_filter, who.actor)


@router.post("/{contract_id}/approve", response_model=Contract)
async def approve(
    contract_id: str,
    body: ReasonBody,
    plane: Annotated[ControlPlane, Depends(cp)],
    who: Annotated[Identity, Depends(operator)],
) -> Contract:
    return await plane.lifecycle.approve(contract_id, who.actor, body.reason)


@router.post("/{contract_id}/reject", response_model=Contract)
async def reject(
    contract_id: str,
    body: ReasonBody,
    plane: Annotated[ControlPlane, Depends(cp)],
    who: Annotated[Identity, Depends(operator)],
) -> Contract:
    return await plane.lifecycle.reject(contract_id, who.actor, body.reason)


@router.get("/{contract_id}/explain")
async def explain_contract(
    contract_id: str, plane: Annotated[ControlPlane, Depends(cp)], who: Annotated[Identity, Depends(identity)]
) -> dict[str, Any]:
    return explain(plane.negotiator, plane.lifecycle.get(contract_id, who.owner_filter))
