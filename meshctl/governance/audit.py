"""The hash-chained audit log: sealing, verification, queries.

An entry is a JSON dict::

    {seq, at, actor, subject, kind, decision, policies, details, prev_hash, hash}

- ``actor``: an agent id, ``"operator:<name>"`` or ``"system"``;
- ``subject``: a contract id, policy name or node id;
- ``policies``: the policy result dicts (``Verdict.results``) of the decision, if any;
- ``hash`` = sha256 of the canonical JSON (sorted keys, no spaces, UTF-8) of every other field,
  ``prev_hash`` = the previous entry's hash (64 zeros for the first), so changing, removing or
  reordering any stored entry breaks the chain from that entry on.

The store appends under its lock with `seal(entry, tail)`; nothing here does I/O. Verification
cannot see a truncated tail on its own: compare the last hash with one kept elsewhere for that.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from meshctl.errors import TamperedAudit, ValidationFailed

GENESIS_HASH = "0" * 64

# The kinds the control plane writes. Others are accepted if they look like one (a new event type
# should not fail the operation it records), but these are the ones reports know about.
KINDS = frozenset(
    {
        "proposal", "admission", "counter_offer", "rejection", "approval", "approval_rejected",
        "resolve", "expiry", "revoke", "renew", "policy_change", "nack", "degraded",
        # provider lifecycle: the graph changes every decision above is made against
        "provider_registered", "provider_updated", "provider_deregistered", "lease_lapsed",
    }
)

_KIND = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_CONTENT = ("at", "actor", "subject", "kind", "decision", "policies", "details")
FIELDS = ("seq", *_CONTENT, "prev_hash", "hash")


def canonical_json(entry: Mapping[str, Any]) -> str:
    """The bytes the hash covers: every field but `hash`, canonically serialised."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def entry_hash(entry: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(entry).encode("utf-8")).hexdigest()


def new_entry(
    *,
    actor: str,
    subject: str,
    kind: str,
    decision: str = "",
    policies: Iterable[Mapping[str, Any]] = (),
    details: Mapping[str, Any] | None = None,
    at: float | None = None,
) -> dict[str, Any]:
    """An unsealed entry, ready for `Store.append_audit`."""
    entry: dict[str, Any] = {
        "at": time.time() if at is None else float(at),
        "actor": actor,
        "subject": subject,
        "kind": kind,
        "decision": decision,
        "policies": [dict(p) for p in policies],
        "details": dict(details or {}),
    }
    _check_content(entry)
    return entry


def seal(entry: Mapping[str, Any], prev: Mapping[str, Any] | None) -> dict[str, Any]:
    """A new, sealed entry chained after `prev` (None for the first). `entry` is not modified.

    Raises ValidationFailed for a malformed kind, a missing actor/subject, unknown fields or values
    JSON cannot carry. The result has been through JSON once, so what a store writes and reads
    back hashes exactly as sealed.
    """
    unknown = sorted(set(entry) - set(FIELDS))
    if unknown:
        raise ValidationFailed(f"unknown audit entry field(s): {', '.join(unknown)}", field=unknown[0])
    body: dict[str, Any] = {
        "seq": int(prev["seq"]) + 1 if prev is not None else 1,
        "at": time.time() if entry.get("at") is None else entry["at"],
        "actor": entry.get("actor"),
        "subject": entry.get("subject"),
        "kind": entry.get("kind"),
        "decision": entry.get("decision") or "",
        "policies": list(entry.get("policies") or []),
        "details": dict(entry.get("details") or {}),
        "prev_hash": str(prev["hash"]) if prev is not None else GENESIS_HASH,
    }
    _check_content(body)
    try:
        body = json.loads(canonical_json(body))
    except (TypeError, ValueError) as e:
        raise ValidationFailed(f"audit entry is not JSON-serialisable: {e}", field="details") from None
    body["hash"] = entry_hash(body)
    return body


def _check_content(entry: Mapping[str, Any]) -> None:
    for name in ("actor", "subject"):
        if not isinstance(entry.get(name), str) or not entry[name]:
            raise ValidationFailed(f"audit entry needs a non-empty {name}", field=name)
    kind = entry.get("kind")
    if not isinstance(kind, str) or not _KIND.match(kind):
        raise ValidationFailed(
            f"invalid audit kind {kind!r} (lower_snake_case, e.g. {', '.join(sorted(KINDS)[:4])}, ...)",
            field="kind",
        )
    at = entry.get("at")
    if not isinstance(at, int | float) or isinstance(at, bool) or not math.isfinite(at):
        raise ValidationFailed("audit entry `at` must be epoch seconds", field="at")


# -- verification -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int  # entries verified intact before the first break (all of them when ok)
    first_broken_seq: int | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def raise_if_broken(self) -> None:
        if not self.ok:
            raise TamperedAudit(
                f"audit chain broken at seq {self.first_broken_seq}: {self.reason}",
                field=f"seq:{self.first_broken_seq}",
                details=self.to_dict(),
            )


def verify(entries: Sequence[Mapping[str, Any]], *, prev: Mapping[str, Any] | None = None) -> VerifyResult:
    """Recompute the chain and name the first broken entry.

    `entries` must start at seq 1, or right after `prev` (an entry already verified) when checking
    a later slice of the log.
    """
    expected_seq = int(prev["seq"]) + 1 if prev is not None else 1
    expected_prev = str(prev["hash"]) if prev is not None else GENESIS_HASH
    for checked, entry in enumerate(entries):
        broken = _check_entry(entry, expected_seq, expected_prev)
        if broken is not None:
            return VerifyResult(False, checked, broken[0], broken[1])
        expected_seq += 1
        expected_prev = entry["hash"]
    return VerifyResult(True, len(entries))


def _check_entry(entry: Any, seq: int, prev_hash: str) -> tuple[int, str] | None:
    if not isinstance(entry, Mapping):
        return seq, f"entry at seq {seq} is not a JSON object"
    missing = [f for f in FIELDS if f not in entry]
    if missing:
        return seq, f"entry at seq {seq} is malformed: missing {', '.join(missing)}"
    try:
        intact = entry_hash(entry) == entry["hash"]
    except (TypeError, ValueError):
        intact = False
    if entry["seq"] != seq:
        if not intact:
            return seq, f"content changed: the entry stored at seq {seq} does not match its hash"
        if isinstance(entry["seq"], int) and entry["seq"] > seq:
            missing_range = str(seq) if entry["seq"] == seq + 1 else f"{seq}..{entry['seq'] - 1}"
            return seq, f"seq gap: entry {missing_range} missing (next stored entry is {entry['seq']})"
        return seq, f"seq out of order: expected {seq}, found {entry['seq']!r}"
    if not intact:
        return seq, f"content changed: entry {seq} does not match its hash"
    if entry["prev_hash"] != prev_hash:
        return seq, f"link broken: entry {seq}'s prev_hash is not the hash of entry {seq - 1}"
    return None


# -- queries ------------------------------------------------------------------------------------------


def query(
    entries: Iterable[Mapping[str, Any]],
    contract: str | None = None,
    agent: str | None = None,
    policy: str | None = None,
    since: float | None = None,
    until: float | None = None,
    kind: str | Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """Entries matching every given filter, in log order.

    contract: the subject (or details.contract_id); agent: the actor (or details.owner — what
    happened to an agent's contracts); policy: the subject of a policy_change, or a decision the
    policy shaped (outcome other than not_applicable); since/until: since <= at < until;
    kind: one kind or several.
    """
    kinds = {kind} if isinstance(kind, str) else (set(kind) if kind is not None else None)
    out = []
    for e in entries:
        details = e.get("details") or {}
        if contract is not None and e.get("subject") != contract and details.get("contract_id") != contract:
            continue
        if agent is not None and e.get("actor") != agent and details.get("owner") != agent:
            continue
        if policy is not None and e.get("subject") != policy and not shaped_by(e, policy):
            continue
        at = e.get("at", 0.0)
        if since is not None and at < since:
            continue
        if until is not None and at >= until:
            continue
        if kinds is not None and e.get("kind") not in kinds:
            continue
        out.append(dict(e))
    return out


def shaped_by(entry: Mapping[str, Any], policy: str) -> bool:
    return any(
        r.get("policy") == policy and r.get("outcome", "not_applicable") != "not_applicable"
        for r in entry.get("policies") or []
    )


def report(
    entries: Sequence[Mapping[str, Any]], since: float, until: float | None = None
) -> tuple[str, dict[str, Any]]:
    """A compliance report for since <= at < until: (Markdown, JSON-able dict)."""
    from meshctl.governance.report import build_report

    return build_report(entries, since, until)
