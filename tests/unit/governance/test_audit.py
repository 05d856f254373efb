"""The audit chain: sealing, tamper detection, queries and the compliance report."""

from __future__ import annotations

import hashlib
import itertools
import json
from typing import Any

import pytest

from meshctl.errors import TamperedAudit, ValidationFailed
from meshctl.governance import GENESIS_HASH, new_entry, query, report, seal, verify

T0 = 1_700_000_000.0

ESCALATE = {"policy": "spend-escalation", "effect": "escalate", "applies": True, "outcome": "escalate",
            "message": "needs approval"}
DENY = {"policy": "deny-unbounded-duration", "effect": "deny", "applies": True, "outcome": "deny",
        "message": "too long"}
PII_NA = {"policy": "pii-eu-only", "effect": "require", "applies": False, "outcome": "not_applicable",
          "message": "eu"}
PII = {**PII_NA, "applies": True, "outcome": "require"}


def chain(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for e in raw:
        out.append(seal(e, out[-1] if out else None))
    return out


def sample_log() -> list[dict[str, Any]]:
    return chain([
        new_entry(actor="agent-fraud", subject="c-1", kind="proposal", decision="pending_approval",
                  policies=[ESCALATE, PII], details={"owner": "agent-fraud"}, at=T0),
        new_entry(actor="operator:alice", subject="c-1", kind="approval", decision="approved",
                  details={"reason": "quarter-end batch, budget signed off"}, at=T0 + 60),
        new_entry(actor="system", subject="c-1", kind="admission", decision="admitted",
                  policies=[PII], details={"owner": "agent-fraud"}, at=T0 + 61),
        new_entry(actor="agent-b", subject="c-2", kind="rejection", decision="rejected",
                  policies=[DENY, PII_NA], details={"owner": "agent-b"}, at=T0 + 120),
        new_entry(actor="system", subject="sidecar-7", kind="nack", decision="rejected config v12",
                  details={"error": "cluster 'x' has no endpoints", "contract_id": "c-1"}, at=T0 + 130),
        new_entry(actor="operator:bob", subject="spend-escalation", kind="policy_change", decision="updated",
                  at=T0 + 200),
        new_entry(actor="system", subject="c-1", kind="expiry", decision="expired", at=T0 + 4000),
    ])


def test_seal_chains_entries() -> None:
    log = sample_log()
    assert [e["seq"] for e in log] == list(range(1, 8))
    assert log[0]["prev_hash"] == GENESIS_HASH
    for prev, cur in itertools.pairwise(log):
        assert cur["prev_hash"] == prev["hash"]
    body = {k: v for k, v in log[2].items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert log[2]["hash"] == hashlib.sha256(canonical.encode()).hexdigest()
    assert verify(log).ok and verify(log).checked == 7


def test_seal_does_not_modify_its_input_and_normalises_to_json() -> None:
    raw = new_entry(actor="system", subject="c-9", kind="resolve", details={"moved": ("a", "b")}, at=T0)
    frozen = json.dumps(raw, default=str)
    sealed = seal(raw, None)
    assert json.dumps(raw, default=str) == frozen
    assert sealed["details"] == {"moved": ["a", "b"]}  # what a store reads back after JSON
    assert verify([json.loads(json.dumps(sealed))]).ok


def test_seal_keeps_unicode_and_hashes_it_as_utf8() -> None:
    e = seal(new_entry(actor="operator:zoë", subject="c-1", kind="approval",
                       details={"reason": "ok ✓"}, at=T0), None)
    stored = json.dumps(e, ensure_ascii=False)
    assert verify([json.loads(stored)]).ok


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"actor": "a", "subject": "s", "kind": "Not A Kind!", "at": T0}, "kind"),
        ({"actor": "a", "subject": "s", "kind": "", "at": T0}, "kind"),
        ({"actor": "", "subject": "s", "kind": "nack", "at": T0}, "actor"),
        ({"actor": "a", "kind": "nack", "at": T0}, "subject"),
        ({"actor": "a", "subject": "s", "kind": "nack", "at": T0, "colour": "red"}, "colour"),
        ({"actor": "a", "subject": "s", "kind": "nack", "at": T0, "details": {"x": {1, 2}}}, "details"),
        ({"actor": "a", "subject": "s", "kind": "nack", "at": float("nan")}, "at"),
    ],
)
def test_seal_rejects_bad_entries(entry: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        seal(entry, None)
    assert info.value.field == field


def stored_lines(log: list[dict[str, Any]]) -> list[str]:
    return [json.dumps(e, sort_keys=True) for e in log]


def test_one_byte_changed_in_a_stored_entry_names_that_seq() -> None:
    lines = stored_lines(sample_log())
    # An operator "fixes" the rejection reason in the stored JSON of entry 4.
    assert '"rejected"' in lines[3]
    lines[3] = lines[3].replace('"rejected"', '"rejectee"', 1)
    result = verify([json.loads(line) for line in lines])
    assert not result.ok
    assert result.first_broken_seq == 4
    assert result.checked == 3
    assert "content changed" in result.reason


def test_every_single_byte_change_in_a_value_is_detected() -> None:
    log = sample_log()
    line = json.dumps(log[1], sort_keys=True)
    # Flip every digit or letter inside the entry (keys too), one at a time.
    for i, ch in enumerate(line):
        if not ch.isalnum():
            continue
        other = ("1" if ch == "0" else "0") if ch.isdigit() else ("b" if ch == "a" else "a")
        flipped = line[:i] + other + line[i + 1:]
        try:
            tampered = json.loads(flipped)
        except ValueError:
            continue
        result = verify([log[0], tampered, *log[2:]])
        assert not result.ok, f"change at byte {i} not detected: {flipped}"
        assert result.first_broken_seq == 2, (i, result)


def test_removed_entry_is_detected() -> None:
    log = sample_log()
    result = verify(log[:2] + log[3:])
    assert not result.ok
    assert result.first_broken_seq == 3
    assert "seq gap" in result.reason and "3 missing" in result.reason


def test_removed_first_entry_is_detected() -> None:
    result = verify(sample_log()[1:])
    assert not result.ok and result.first_broken_seq == 1


def test_rewritten_entry_with_recomputed_hash_breaks_the_next_link() -> None:
    log = sample_log()
    forged = dict(log[3])
    forged["decision"] = "admitted"
    forged["hash"] = hashlib.sha256(
        json.dumps({k: v for k, v in forged.items() if k != "hash"}, sort_keys=True, separators=(",", ":"),
                   ensure_ascii=False).encode()
    ).hexdigest()
    result = verify([*log[:3], forged, *log[4:]])
    assert not result.ok and result.first_broken_seq == 5 and "link broken" in result.reason


def test_reordered_entries_are_detected() -> None:
    log = sample_log()
    result = verify([log[0], log[2], log[1], *log[3:]])
    assert not result.ok and result.first_broken_seq == 2


def test_verify_a_later_slice_from_a_trusted_entry() -> None:
    log = sample_log()
    assert verify(log[4:], prev=log[3]).ok
    assert not verify(log[4:], prev=log[2]).ok


def test_raise_if_broken() -> None:
    log = sample_log()
    verify(log).raise_if_broken()
    with pytest.raises(TamperedAudit) as info:
        verify(log[:1] + log[2:]).raise_if_broken()
    assert info.value.details["first_broken_seq"] == 2


def test_query_filters() -> None:
    log = sample_log()

    def seqs(**kw: Any) -> list[int]:
        return [e["seq"] for e in query(log, **kw)]

    assert seqs(contract="c-1") == [1, 2, 3, 5, 7]  # the NACK names c-1 in its details
    assert seqs(agent="operator:alice") == [2]
    assert seqs(agent="agent-fraud") == [1, 3]  # its own proposal and what the system did with it
    assert seqs(policy="spend-escalation") == [1, 6]  # shaped a decision, then was changed
    assert seqs(policy="pii-eu-only") == [1, 3]  # not_applicable on entry 4 does not count
    assert seqs(since=T0 + 61, until=T0 + 200) == [3, 4, 5]
    assert seqs(kind="nack") == [5]
    assert seqs(kind=["approval", "expiry"]) == [2, 7]
    assert seqs(contract="c-1", kind="admission", since=T0) == [3]
    assert seqs(contract="nope") == []


def test_report_content() -> None:
    log = sample_log()
    md, data = report(log, since=T0, until=T0 + 1000)
    assert data["entries"] == 6  # the expiry at T0+4000 is outside the window
    assert data["totals"] == {"admission": 1, "approval": 1, "nack": 1, "policy_change": 1, "proposal": 1,
                              "rejection": 1}
    assert data["policies"] == {
        "deny-unbounded-duration": {"decisions": 1, "outcomes": {"deny": 1}},
        "pii-eu-only": {"decisions": 2, "outcomes": {"require": 2}},
        "spend-escalation": {"decisions": 1, "outcomes": {"escalate": 1}},
    }
    assert data["exceptions"] == [{
        "seq": 2, "contract": "c-1", "approved_by": "operator:alice", "at": T0 + 60,
        "reason": "quarter-end batch, budget signed off", "escalated_by": ["spend-escalation"],
    }]
    assert [(d["contract"], d["policies"]) for d in data["denials"]] == [("c-2", ["deny-unbounded-duration"])]
    assert [n["node"] for n in data["nacks"]] == ["sidecar-7"]
    assert data["nacks"][0]["details"]["error"] == "cluster 'x' has no endpoints"
    assert data["verification"] == {"ok": True, "checked": 7, "first_broken_seq": None, "reason": ""}
    assert json.loads(json.dumps(data)) == data

    assert md.startswith("# Compliance report")
    assert "2023-11-14T22:13:20Z" in md  # T0
    assert "Audit chain: intact (7 entries verified)" in md
    assert (
        "| c-1 | operator:alice | 2023-11-14T22:14:20Z | quarter-end batch, budget signed off "
        "| spend-escalation | 2 |"
    ) in md
    assert "| spend-escalation | 1 | 0 | 1 | 0 | 0 | 0 |" in md
    assert "| c-2 | rejection | agent-b |" in md
    assert "sidecar-7" in md


def test_report_on_a_tampered_log_says_so() -> None:
    log = sample_log()
    log[1] = {**log[1], "details": {"reason": "nobody asked"}}
    md, data = report(log, since=T0)
    assert data["verification"]["ok"] is False
    assert data["verification"]["first_broken_seq"] == 2
    assert "BROKEN at seq 2" in md
    assert data["window"]["until"] is None and "→ now" in md


def test_report_on_an_empty_window() -> None:
    md, data = report(sample_log(), since=T0 + 10_000)
    assert data["entries"] == 0 and data["exceptions"] == [] and data["totals"] == {}
    assert "_none_" in md
