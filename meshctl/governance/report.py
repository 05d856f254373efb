"""Compliance report over the audit log: what happened in a window, and can the log be trusted.

Counting rule: every entry that carries policy results is one decision; a policy "shaped" it when
its outcome there is anything but not_applicable.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from meshctl.governance.audit import query, verify

_OUTCOMES = ("deny", "escalate", "require", "warn", "error")


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _policy_names(entry: Mapping[str, Any], outcomes: tuple[str, ...]) -> list[str]:
    return [str(r.get("policy")) for r in entry.get("policies") or [] if r.get("outcome") in outcomes]


def _escalated_by(entries: Sequence[Mapping[str, Any]], approval: Mapping[str, Any]) -> list[str]:
    """The policies that held the contract for approval: on the approval itself, else the latest
    earlier entry about the same contract that escalated."""
    own = _policy_names(approval, ("escalate",))
    if own:
        return own
    for e in reversed(entries):
        if e.get("seq", 0) >= approval.get("seq", 0) or e.get("subject") != approval.get("subject"):
            continue
        names = _policy_names(e, ("escalate",))
        if names:
            return names
    return []


def build_report(
    entries: Sequence[Mapping[str, Any]], since: float, until: float | None = None
) -> tuple[str, dict[str, Any]]:
    """`entries` is the whole log from seq 1; the report covers since <= at < until."""
    window = query(entries, since=since, until=until)
    # The whole log is verified, not just the window: a break before it voids what it reports.
    chain = verify(entries)

    totals = dict(sorted(Counter(str(e.get("kind")) for e in window).items()))
    policies: dict[str, dict[str, Any]] = {}
    for e in window:
        for r in e.get("policies") or []:
            outcome = r.get("outcome", "not_applicable")
            if outcome == "not_applicable":
                continue
            row = policies.setdefault(str(r.get("policy")), {"decisions": 0, "outcomes": {}})
            row["decisions"] += 1
            row["outcomes"][outcome] = row["outcomes"].get(outcome, 0) + 1
    policies = dict(sorted(policies.items()))

    exceptions = [
        {
            "seq": e.get("seq"),
            "contract": e.get("subject"),
            "approved_by": e.get("actor"),
            "at": e.get("at"),
            "reason": (e.get("details") or {}).get("reason", ""),
            "escalated_by": _escalated_by(entries, e),
        }
        for e in window
        if e.get("kind") == "approval"
    ]
    denials = [
        {
            "seq": e.get("seq"),
            "kind": e.get("kind"),
            "contract": e.get("subject"),
            "actor": e.get("actor"),
            "at": e.get("at"),
            "decision": e.get("decision", ""),
            "policies": _policy_names(e, ("deny", "error")),
            "reason": (e.get("details") or {}).get("reason", ""),
        }
        for e in window
        if e.get("kind") in ("rejection", "approval_rejected")
    ]
    nacks = [
        {
            "seq": e.get("seq"),
            "node": e.get("subject"),
            "at": e.get("at"),
            "decision": e.get("decision", ""),
            "details": dict(e.get("details") or {}),
        }
        for e in window
        if e.get("kind") == "nack"
    ]
    data: dict[str, Any] = {
        "window": {"since": since, "until": until, "since_iso": _iso(since), "until_iso": _iso(until)},
        "entries": len(window),
        "totals": totals,
        "policies": policies,
        "exceptions": exceptions,
        "denials": denials,
        "nacks": nacks,
        "verification": chain.to_dict(),
    }
    return _markdown(data), data


def _cell(value: Any) -> str:
    text = ", ".join(map(str, value)) if isinstance(value, list) else ("" if value is None else str(value))
    return text.replace("|", "\\|").replace("\n", " ") or "—"


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    if not rows:
        return ["_none_", ""]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return [*lines, ""]


def _markdown(data: Mapping[str, Any]) -> str:
    w = data["window"]
    v = data["verification"]
    if v["ok"]:
        chain = f"intact ({v['checked']} entries verified)"
    else:
        chain = (
            f"**BROKEN at seq {v['first_broken_seq']}**: {v['reason']} "
            f"({v['checked']} entries intact before it)"
        )
    out = [
        "# Compliance report",
        "",
        f"- Window: {w['since_iso']} → {w['until_iso'] or 'now'}",
        f"- Entries in window: {data['entries']}",
        f"- Audit chain: {chain}",
        "",
        "## Decisions by kind",
        "",
        *_table(("kind", "count"), list(data["totals"].items())),
        "## Policies",
        "",
        *_table(
            ("policy", "decisions shaped", *_OUTCOMES),
            [(name, row["decisions"], *(row["outcomes"].get(o, 0) for o in _OUTCOMES))
             for name, row in data["policies"].items()],
        ),
        "## Approved exceptions",
        "",
        *_table(
            ("contract", "approved by", "at", "reason", "escalated by", "seq"),
            [(x["contract"], x["approved_by"], _iso(x["at"]), x["reason"], x["escalated_by"], x["seq"])
             for x in data["exceptions"]],
        ),
        "## Denials",
        "",
        *_table(
            ("contract", "kind", "by", "at", "policies", "decision", "seq"),
            [(x["contract"], x["kind"], x["actor"], _iso(x["at"]), x["policies"], x["decision"], x["seq"])
             for x in data["denials"]],
        ),
        "## NACKs",
        "",
        *_table(
            ("node", "at", "decision", "seq"),
            [(x["node"], _iso(x["at"]), x["decision"], x["seq"]) for x in data["nacks"]],
        ),
    ]
    return "\n".join(out).rstrip() + "\n"
