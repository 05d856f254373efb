"""The agent's and operator's REST answers: counter-offers, rejections, validation, 404s and roles."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from _mesh import CAPABILITY, Mesh

ZONE = "eu-west-1a"


@pytest.fixture
async def two_providers(mesh: Mesh) -> Mesh:
    await mesh.provider("ga-a", ZONE, capacity=100, p99=10, cost=0.10)
    await mesh.provider("ga-b", "eu-west-1b", capacity=100, p99=12, cost=0.20)
    return mesh


def _body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "consumer": "fraud-detection",
        "consumer_zone": ZONE,
        "capability": CAPABILITY,
        "sla": {"p99_latency_ms": 40, "rps": 50},
        "duration_s": 600,
    }
    body.update(over)
    return body


async def _everything(mesh: Mesh) -> dict[str, Any]:
    """What an operator can list: must not change when a request is refused."""
    op = mesh.operator
    out: dict[str, Any] = {}
    for path in ("/v1/contracts", "/v1/providers", "/v1/zones", "/v1/links", "/v1/audit"):
        r = await op.get(path)
        assert r.status_code == 200, r.text
        out[path] = r.json()
    out["held"] = await mesh.stored_held()
    out["history"] = len((await op.get("/v1/topology/history")).json())
    return out


def _binding(decision: dict[str, Any]) -> dict[str, float | None]:
    return {b["constraint"]: b["best"] for b in decision["counter_offer"]["binding"]}


async def test_infeasible_requests_get_counter_offers_naming_what_binds(two_providers: Mesh) -> None:
    mesh = two_providers
    before = await _everything(mesh)

    too_fast = (await mesh.propose(_body(sla={"p99_latency_ms": 5, "rps": 50}))).json()
    assert too_fast["outcome"] == "counter_offer"
    assert _binding(too_fast)["sla.p99_latency_ms"] == pytest.approx(10.5)  # ga-a: 0.5 ms path + 10 ms
    assert too_fast["counter_offer"]["sla"] == {"p99_latency_ms": 10.5, "rps": 50.0, "availability": None}

    too_much = (await mesh.propose(_body(sla={"p99_latency_ms": 40, "rps": 500}))).json()
    assert too_much["outcome"] == "counter_offer"
    assert _binding(too_much)["sla.rps"] == pytest.approx(200.0)
    assert too_much["counter_offer"]["allocation"]["rps"] == pytest.approx(200.0)

    too_cheap = (await mesh.propose(_body(max_cost_per_1k=0.01))).json()
    assert too_cheap["outcome"] == "counter_offer"
    assert _binding(too_cheap)["max_cost_per_1k"] == pytest.approx(0.10)

    # Nothing at all can serve these: rejected, with the field or the policy that decided it.
    unknown = (await mesh.propose(_body(capability="quantum-annealing"))).json()
    assert unknown["outcome"] == "rejected"
    assert any(r.startswith("capability:") for r in unknown["reasons"]), unknown["reasons"]
    endless = (await mesh.propose(_body(duration_s=10**8))).json()
    assert endless["outcome"] == "rejected"
    assert any("policy:deny-unbounded-duration" in r for r in endless["reasons"]), endless["reasons"]

    after = await _everything(mesh)
    assert after["held"] == before["held"] == {}
    # Counter-offers store nothing; rejections are recorded as rejected contracts, holding nothing.
    states = {c["state"] for c in after["/v1/contracts"]}
    assert states == {"rejected"} and len(after["/v1/contracts"]) == 2


@pytest.mark.parametrize(
    ("body", "params", "field"),
    [
        (_body(sla={"p99_latency_ms": 40, "rps": -5}), {}, "sla.rps"),
        (_body(sla={"rps": 5}), {}, "sla.p99_latency_ms"),
        ({k: v for k, v in _body().items() if k != "capability"}, {}, "capability"),
        (_body(constraints={"zones": ["eu-west-1a", "atlantis-1a"]}), {}, "constraints.zones.1"),
        (_body(constraints={"regions": ["moon"]}), {}, "constraints.regions.0"),
        (_body(consumer_zone="atlantis-1a"), {}, "consumer_zone"),
        (_body(sla={"p99_latency_ms": 40, "rps": 5, "availability": 1.5}), {}, "sla.availability"),
        (_body(consumer="has spaces"), {}, "consumer"),
        (_body(surprise=True), {}, "surprise"),
        ({k: v for k, v in _body().items() if k != "consumer_zone"}, {}, "consumer_zone"),  # no proxy
        (_body(), {"wait": "soon"}, "query.wait"),
        (_body(), {"timeout_s": 0}, "query.timeout_s"),
    ],
)
async def test_invalid_proposals_get_422_with_the_field_and_change_nothing(
    two_providers: Mesh, body: dict[str, Any], params: dict[str, Any], field: str
) -> None:
    mesh = two_providers
    before = await _everything(mesh)
    r = await mesh.propose(body, **params)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "validation_failed"
    assert err["field"] == field, err
    assert await _everything(mesh) == before


async def test_invalid_provider_and_link_bodies_change_nothing(two_providers: Mesh) -> None:
    mesh = two_providers
    before = await _everything(mesh)
    bad_provider = {
        "id": "ga-x",
        "capabilities": [CAPABILITY],
        "zone": ZONE,
        "endpoints": [{"address": "127.0.0.1", "port": 70000}],
        "capacity_rps": 10,
        "latency_p99_ms": 1,
        "cost_per_1k": 1,
    }
    r = await mesh.agent.post("/v1/providers", json=bad_provider)
    assert r.status_code == 422 and r.json()["error"]["field"] == "endpoints.0.port", r.text
    r = await mesh.agent.post("/v1/providers", json={**bad_provider, "endpoints": [], "zone": "nowhere"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "endpoints", r.text
    r = await mesh.agent.post(
        "/v1/providers",
        json={**bad_provider, "endpoints": [{"address": "127.0.0.1", "port": 8080}], "zone": "nowhere"},
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "zone", r.text
    r = await mesh.operator.post("/v1/links", json={"a": ZONE, "b": "nowhere", "latency_ms": 3})
    assert r.status_code == 422 and r.json()["error"]["field"] == "b", r.text
    r = await mesh.operator.post("/v1/links", json={"a": ZONE, "b": "eu-west-1b", "latency_ms": -1})
    assert r.status_code == 422 and r.json()["error"]["field"] == "latency_ms", r.text
    assert await _everything(mesh) == before


async def test_unknown_ids_are_404(two_providers: Mesh) -> None:
    mesh = two_providers
    for method, path, who in [
        ("GET", "/v1/contracts/c-000000000000", mesh.agent),
        ("GET", "/v1/contracts/c-000000000000/explain", mesh.agent),
        ("POST", "/v1/contracts/c-000000000000/renew", mesh.agent),
        ("POST", "/v1/contracts/c-000000000000/revoke", mesh.agent),
        ("DELETE", "/v1/contracts/c-000000000000", mesh.operator),
        ("GET", "/v1/providers/ga-nope", mesh.agent),
        ("POST", "/v1/providers/ga-nope/heartbeat", mesh.agent),
        ("DELETE", "/v1/providers/ga-nope", mesh.agent),
        ("GET", "/v1/proxies/node-nope/config", mesh.operator),
        ("DELETE", "/v1/zones/atlantis-1a", mesh.operator),
    ]:
        r = await who.request(method, path)
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["error"]["code"] == "not_found", (method, path, r.text)
    for verb in ("approve", "reject"):
        r = await mesh.operator.post(f"/v1/contracts/c-000000000000/{verb}", json={"reason": "x"})
        assert r.status_code == 404, r.text


async def test_an_agent_never_sees_another_agents_contract(two_providers: Mesh) -> None:
    mesh = two_providers
    r = await mesh.propose(_body())
    assert r.status_code == 201, r.text
    cid = r.json()["contract"]["id"]

    b = mesh.agent_b
    for method, path in [
        ("GET", f"/v1/contracts/{cid}"),
        ("GET", f"/v1/contracts/{cid}/explain"),
        ("POST", f"/v1/contracts/{cid}/renew"),
        ("POST", f"/v1/contracts/{cid}/revoke"),
        ("DELETE", f"/v1/contracts/{cid}"),
    ]:
        resp = await b.request(method, path)
        # Indistinguishable from an id that does not exist.
        assert resp.status_code == 404, (method, path, resp.text)
        assert resp.json()["error"]["message"] == f"contract {cid!r} not found"
    assert (await b.get("/v1/contracts")).json() == []
    assert cid not in {c["id"] for c in (await b.get("/v1/contracts", params={"owner": "agent-a"})).json()}
    assert all(e.get("subject") != cid for e in (await b.get("/v1/audit")).json())

    mine = (await mesh.agent.get(f"/v1/contracts/{cid}")).json()
    assert mine["state"] == "active"  # agent-b's attempts changed nothing
    assert [c["id"] for c in (await mesh.agent.get("/v1/contracts")).json()] == [cid]
    assert [c["id"] for c in (await mesh.operator.get("/v1/contracts")).json()] == [cid]


async def test_operator_only_endpoints_and_missing_tokens(two_providers: Mesh) -> None:
    mesh = two_providers
    r = await mesh.propose(_body(sla={"p99_latency_ms": 40, "rps": 100}, max_cost_per_1k=None))
    cid = r.json()["contract"]["id"]
    zone = {"name": "eu-north-1a", "region": "eu-north"}
    link = {"a": "eu-west-1a", "b": "eu-west-1b", "latency_ms": 9}
    operator_only = [
        ("POST", "/v1/zones", zone),
        ("DELETE", "/v1/zones/eu-west-1c", None),
        ("POST", "/v1/links", link),
        ("DELETE", "/v1/links/eu-west-1a/eu-west-1b", None),
        ("POST", f"/v1/contracts/{cid}/approve", {"reason": "looks fine"}),
        ("POST", f"/v1/contracts/{cid}/reject", {"reason": "no"}),
        ("GET", "/v1/proxies", None),
        ("GET", "/v1/audit/verify", None),
        ("POST", "/v1/policies/reload", None),
    ]
    before = await _everything(mesh)
    for method, path, body in operator_only:
        resp = await mesh.agent.request(method, path, json=body)
        assert resp.status_code == 403, (method, path, resp.text)
        assert resp.json()["error"]["code"] == "forbidden"
    assert await _everything(mesh) == before

    anonymous = httpx.AsyncClient(base_url=mesh.base_url)
    forged = httpx.AsyncClient(base_url=mesh.base_url, headers={"Authorization": "Bearer not-a-token"})
    try:
        for client in (anonymous, forged):
            for method, path, body in [
                *operator_only,
                ("GET", "/v1/contracts", None),
                ("POST", "/v1/contracts", _body()),
                ("GET", "/v1/providers", None),
            ]:
                resp = await client.request(method, path, json=body)
                assert resp.status_code == 401, (method, path, resp.text)
                assert resp.headers["www-authenticate"] == "Bearer"
                assert resp.json()["error"]["code"] == "unauthorized"
    finally:
        await anonymous.aclose()
        await forged.aclose()
    assert await _everything(mesh) == before

    # The operator may do what the agent may not.
    assert (await mesh.operator.post("/v1/zones", json=zone)).status_code == 201
    assert (await mesh.operator.post("/v1/links", json=link)).status_code == 201
    assert (await mesh.client(None).get("/healthz")).status_code == 200
