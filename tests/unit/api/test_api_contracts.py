"""/v1/contracts over HTTP semantics: status codes per outcome, verbs, filters, error bodies."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from api_support import Api

from meshctl.errors import StoreUnavailable

pytestmark = pytest.mark.usefixtures("providers")


def body(rps: float = 50, **over: Any) -> dict[str, Any]:
    b: dict[str, Any] = {
        "consumer": "fraud-detection",
        "consumer_zone": "eu-west-1a",
        "capability": "graph-analysis",
        "sla": {"p99_latency_ms": 40, "rps": rps},
        "duration_s": 600,
    }
    b.update(over)
    return b


async def test_status_code_follows_the_outcome(agent: httpx.AsyncClient) -> None:
    admitted = await agent.post("/v1/contracts", json=body(50))
    assert admitted.status_code == 201 and admitted.json()["outcome"] == "admitted"
    pending = await agent.post("/v1/contracts", json=body(60, max_cost_per_1k=100.0))
    assert pending.status_code == 202 and pending.json()["outcome"] == "pending_approval"
    counter = await agent.post("/v1/contracts", json=body(500))
    assert counter.status_code == 200 and counter.json()["outcome"] == "counter_offer"
    rejected = await agent.post("/v1/contracts", json=body(10, capability="teleport"))
    assert rejected.status_code == 200 and rejected.json()["outcome"] == "rejected"
    dry = await agent.post("/v1/contracts", json=body(10), params={"dry_run": "true"})
    assert dry.status_code == 200 and dry.json()["outcome"] == "admitted" and dry.json()["dry_run"]


async def test_renew_revoke_and_delete(agent: httpx.AsyncClient, api: Api) -> None:
    cid = (await agent.post("/v1/contracts", json=body(10, duration_s=60))).json()["contract"]["id"]
    r = await agent.post(f"/v1/contracts/{cid}/renew", json={"duration_s": 3600})
    assert r.status_code == 200
    assert r.json()["expires_at"] == pytest.approx(api.plane.clock() + 3600, abs=5)
    r = await agent.post(f"/v1/contracts/{cid}/renew", json={"duration_s": -1})
    assert r.status_code == 422 and r.json()["error"]["field"] == "duration_s"
    r = await agent.post(f"/v1/contracts/{cid}/renew", json={"duration_s": 10**8})
    assert r.status_code == 422 and r.json()["error"]["details"] == {"policies": ["deny-unbounded-duration"]}
    r = await agent.post(f"/v1/contracts/{cid}/renew")  # no body: the requested duration again
    assert r.status_code == 200
    r = await agent.delete(f"/v1/contracts/{cid}")
    assert r.status_code == 200 and r.json()["state"] == "revoked"
    r = await agent.post(f"/v1/contracts/{cid}/renew")
    assert r.status_code == 409 and r.json()["error"] == {
        "code": "conflict",
        "message": "contract is revoked, only active or degraded contracts renew",
        "field": "state",
    }


async def test_approve_and_reject_need_a_reason(
    agent: httpx.AsyncClient, operator: httpx.AsyncClient
) -> None:
    one = (await agent.post("/v1/contracts", json=body(60, max_cost_per_1k=100.0))).json()["contract"]["id"]
    two = (await agent.post("/v1/contracts", json=body(30, max_cost_per_1k=200.0))).json()["contract"]["id"]
    for payload, field in (({}, "reason"), ({"reason": ""}, "reason"), (None, "body")):
        r = await operator.post(f"/v1/contracts/{one}/approve", json=payload)
        assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text
    r = await operator.post(f"/v1/contracts/{one}/approve", json={"reason": "budget ok'd by finance"})
    assert r.status_code == 200 and r.json()["state"] == "active"
    r = await operator.post(f"/v1/contracts/{two}/reject", json={"reason": "no"})
    assert r.status_code == 200 and r.json()["state"] == "rejected"
    r = await operator.post(f"/v1/contracts/{two}/approve", json={"reason": "changed my mind"})
    assert r.status_code == 409


async def test_list_filters(
    agent: httpx.AsyncClient, agent_b: httpx.AsyncClient, operator: httpx.AsyncClient
) -> None:
    a = (await agent.post("/v1/contracts", json=body(10))).json()["contract"]["id"]
    b = (await agent_b.post("/v1/contracts", json=body(10))).json()["contract"]["id"]
    r = (await agent_b.post("/v1/contracts", json=body(10, capability="teleport"))).json()["contract"]["id"]

    async def ids(client: httpx.AsyncClient, **params: str) -> list[str]:
        resp = await client.get("/v1/contracts", params=params)
        assert resp.status_code == 200, resp.text
        return [c["id"] for c in resp.json()]

    assert await ids(operator) == [a, b, r]
    assert await ids(operator, owner="agent-b") == [b, r]
    assert await ids(operator, state="active") == [a, b]
    assert await ids(operator, capability="teleport") == [r]
    assert await ids(agent_b, state="rejected") == [r]
    assert await ids(agent, owner="agent-b") == []  # an agent's view is its own, whatever it asks
    bad = await operator.get("/v1/contracts", params={"state": "sleeping"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "query.state"


async def test_error_bodies_for_unknown_routes_and_methods(operator: httpx.AsyncClient) -> None:
    r = await operator.get("/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = await operator.put("/v1/contracts")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    r = await operator.post(
        "/v1/contracts", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_failed"


async def test_store_outage_answers_503_with_retry_after(
    agent: httpx.AsyncClient, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down(*_: object, **__: object) -> None:
        raise StoreUnavailable("redis is not answering", retry_after_s=3)

    monkeypatch.setattr(api.plane.store, "commit_contract", down)
    r = await agent.post("/v1/contracts", json=body(10))
    assert r.status_code == 503
    assert r.headers["retry-after"] == "3"
    assert r.json()["error"]["code"] == "store_unavailable"
    assert api.plane.state.contracts == {} and api.plane.state.reservations == {}


async def test_health_and_readiness_without_xds(api: Api) -> None:
    async with api.client(None) as anon:
        assert (await anon.get("/healthz")).json() == {"status": "ok"}
        r = await anon.get("/readyz")
        assert r.status_code == 503 and r.json()["ready"] is False


async def test_openapi_documents_the_contract_answers(api: Api) -> None:
    async with api.client(None) as anon:
        spec = (await anon.get("/openapi.json")).json()
    post = spec["paths"]["/v1/contracts"]["post"]
    assert {"200", "201", "202", "422"} <= set(post["responses"])
    params = {p["name"] for p in post["parameters"]}
    assert {"dry_run", "wait", "timeout_s"} <= params


async def test_retry_with_idempotency_key_after_a_503_does_not_reserve_twice(
    agent: httpx.AsyncClient, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The store fails after the contract is committed (on the audit write): the agent sees a 503
    # and retries. Same key: the stored contract is returned, not a second reservation.
    real_append = api.plane.store.append_audit

    async def audit_down(entry: dict[str, Any]) -> dict[str, Any]:
        raise StoreUnavailable("redis went away mid-request", retry_after_s=1)

    monkeypatch.setattr(api.plane.store, "append_audit", audit_down)
    key = {"Idempotency-Key": "incident-0217-graph"}
    first = await agent.post("/v1/contracts", json=body(40), headers=key)
    assert first.status_code == 503
    monkeypatch.setattr(api.plane.store, "append_audit", real_append)
    again = await agent.post("/v1/contracts", json=body(40), headers=key)
    assert again.status_code == 201, again.text
    stored = [c for c in api.plane.state.contracts.values()]
    assert len(stored) == 1 and again.json()["proposal_id"] == stored[0].id
    assert sum(sum(h.values()) for h in api.plane.state.reservations.values()) == 40
    # The same key for a different proposal is a conflict, and changes nothing.
    other = await agent.post("/v1/contracts", json=body(41), headers=key)
    assert other.status_code == 409 and other.json()["error"]["field"] == "Idempotency-Key"
    assert len(api.plane.state.contracts) == 1
    # A new key is a new proposal.
    fresh = await agent.post("/v1/contracts", json=body(40), headers={"Idempotency-Key": "other"})
    assert fresh.status_code == 201 and fresh.json()["proposal_id"] != stored[0].id
