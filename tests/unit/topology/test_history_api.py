"""/v1/topology over HTTP (in-process ASGI): ?at=, ?version=, /history, /diff, /providers, /export,
and who may open the stream."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator

import httpx
import networkx as nx
import pytest
from history_helpers import Story, ephemeral_story

from meshctl.api.app import create_app
from meshctl.api.auth import Identity, TokenTable

AGENT = {"Authorization": "Bearer agent-token"}


@pytest.fixture
async def story_api() -> AsyncIterator[tuple[Story, httpx.AsyncClient]]:
    s = await ephemeral_story()
    tokens = TokenTable({"agent-token": Identity("agent-1", "agent")})
    app = create_app(s.plane, tokens)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        yield s, client


async def test_topology_at_an_instant_and_by_version(story_api: tuple[Story, httpx.AsyncClient]) -> None:
    s, api = story_api
    during = (await api.get("/v1/topology", params={"at": 1005}, headers=AGENT)).json()
    assert during["version"] == s.versions["admitted"]
    assert [p["id"] for p in during["providers"]] == ["p-eph", "p-static"]

    by_version = (
        await api.get("/v1/topology", params={"version": s.versions["ephemeral"]}, headers=AGENT)
    ).json()
    assert by_version["cause"] == "provider registered" and by_version["contracts"] == []

    live = (await api.get("/v1/topology", headers=AGENT)).json()
    assert live["cause"] == "current" and [p["id"] for p in live["providers"]] == ["p-static"]

    too_early = await api.get("/v1/topology", params={"at": 10}, headers=AGENT)
    assert too_early.status_code == 404 and too_early.json()["error"]["field"] == "at"
    both = await api.get("/v1/topology", params={"at": 1005, "version": 2}, headers=AGENT)
    assert both.status_code == 422


async def test_history_list_window_and_counts(story_api: tuple[Story, httpx.AsyncClient]) -> None:
    s, api = story_api
    rows = (await api.get("/v1/topology/history", headers=AGENT)).json()
    assert [r["version"] for r in rows] == list(range(1, s.versions["resolved"] + 1))
    assert [(r["providers"], r["contracts"]) for r in rows][-3:] == [(2, 1), (1, 1), (1, 1)]
    windowed = (
        await api.get("/v1/topology/history", params={"since": 1002, "until": 1008}, headers=AGENT)
    ).json()
    assert [r["cause"] for r in windowed] == ["provider registered", "contract admitted"]


async def test_diff_endpoint(story_api: tuple[Story, httpx.AsyncClient]) -> None:
    s, api = story_api
    r = await api.get(
        "/v1/topology/diff",
        params={"from": s.versions["admitted"], "to": s.versions["resolved"]},
        headers=AGENT,
    )
    assert r.status_code == 200
    d = r.json()
    assert d["providers"]["vanished"] == ["p-eph"]
    assert d["contracts"]["changed"][0]["state"] == {"from": "active", "to": "degraded"}
    assert [c["cause"] for c in d["causes"]] == ["provider lease lapsed", "contract degraded"]
    missing = await api.get("/v1/topology/diff", params={"from": 1, "to": 404}, headers=AGENT)
    assert missing.status_code == 404


async def test_provider_lifetimes_endpoint(story_api: tuple[Story, httpx.AsyncClient]) -> None:
    _, api = story_api
    rows = {r["id"]: r for r in (await api.get("/v1/topology/providers", headers=AGENT)).json()}
    assert rows["p-eph"]["present"] is False and rows["p-eph"]["gone_at"] == 1008.0
    assert rows["p-static"]["present"] is True


async def test_export_formats(story_api: tuple[Story, httpx.AsyncClient]) -> None:
    s, api = story_api
    v = s.versions["admitted"]
    j = await api.get("/v1/topology/export", params={"format": "json", "version": v}, headers=AGENT)
    assert j.headers["content-type"].startswith("application/json")
    g = nx.node_link_graph(j.json(), edges="edges")
    assert {"provider:p-eph", "provider:p-static", "consumer:checkout"} <= set(g.nodes)

    gml = await api.get("/v1/topology/export", params={"format": "graphml", "at": 1009}, headers=AGENT)
    assert gml.headers["content-type"].startswith("application/xml")
    ET.fromstring(gml.text)  # well-formed XML
    assert "provider:p-eph" not in nx.parse_graphml(gml.text).nodes  # it had left by then

    dot = await api.get("/v1/topology/export", params={"format": "dot"}, headers=AGENT)
    assert dot.headers["content-type"].startswith("text/vnd.graphviz")
    assert dot.text.startswith("digraph")

    bad = await api.get("/v1/topology/export", params={"format": "png"}, headers=AGENT)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "format"


async def test_topology_needs_a_token(story_api: tuple[Story, httpx.AsyncClient]) -> None:
    _, api = story_api
    assert (await api.get("/v1/topology")).status_code == 401
    # The stream accepts ?token= (EventSource cannot send headers), but still a known one.
    r = await api.get("/v1/topology/stream", params={"token": "nope"})
    assert r.status_code == 401 and r.json()["error"]["field"] == "token"
    assert (await api.get("/v1/topology/stream")).status_code == 401
