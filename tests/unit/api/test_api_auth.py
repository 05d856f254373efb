"""Tokens and roles: where they come from, and what an agent may read."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from meshctl.api.auth import Identity, TokenTable
from meshctl.errors import ValidationFailed


def test_tokens_from_the_environment() -> None:
    table = TokenTable.parse_env(" t1=agent:fraud-detector , t2=operator:alice ,")
    assert table.identify("t1") == Identity("fraud-detector", "agent")
    assert table.identify("t2") == Identity("alice", "operator")
    assert table.identify("t3") is None
    assert table.identify("t1 ") is None  # no trimming inside the comparison: exact tokens only


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("t1=agent:a,t2=admin:b", "MESHCTL_TOKENS.1"),
        ("=agent:a", "MESHCTL_TOKENS.0"),
        ("t1=agent:", "MESHCTL_TOKENS.0"),
    ],
)
def test_malformed_environment_tokens_name_the_entry(text: str, field: str) -> None:
    with pytest.raises(ValidationFailed) as exc:
        TokenTable.parse_env(text)
    assert exc.value.field == field


def test_token_file_and_environment_merge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "tokens.yaml"
    f.write_text("tokens:\n  file-tok: {role: operator, name: bob}\n  shared: {role: agent, name: old}\n")
    monkeypatch.setenv("MESHCTL_TOKENS", "shared=agent:new")
    table = TokenTable.from_config(str(f))
    assert table.identify("file-tok") == Identity("bob", "operator")
    assert table.identify("shared") == Identity("new", "agent")  # the environment wins
    f.write_text("tokens:\n  x: {role: root, name: eve}\n")
    with pytest.raises(ValidationFailed):
        TokenTable.load_file(f)


@pytest.mark.usefixtures("providers")
async def test_an_agent_reads_only_its_own_audit_trail(
    agent: httpx.AsyncClient, agent_b: httpx.AsyncClient, operator: httpx.AsyncClient
) -> None:
    body = {
        "consumer": "fraud-detection",
        "consumer_zone": "eu-west-1a",
        "capability": "graph-analysis",
        "sla": {"p99_latency_ms": 40, "rps": 10},
    }
    cid = (await agent.post("/v1/contracts", json=body)).json()["contract"]["id"]
    mine = (await agent.get("/v1/audit")).json()
    assert any(e["subject"] == cid and e["kind"] == "admission" for e in mine)
    assert all(e["actor"] == "agent-a" or (e.get("details") or {}).get("owner") == "agent-a" for e in mine)
    theirs = (await agent_b.get("/v1/audit")).json()
    assert all(e["subject"] != cid for e in theirs)
    # Asking for the other agent's contract or actor by name does not widen the view.
    assert (await agent_b.get("/v1/audit", params={"contract": cid})).json() == []
    assert (await agent_b.get("/v1/audit", params={"agent": "agent-a"})).json() == theirs
    everything = (await operator.get("/v1/audit", params={"contract": cid})).json()
    # One decision, one entry.
    assert [e["kind"] for e in everything] == ["admission"]
