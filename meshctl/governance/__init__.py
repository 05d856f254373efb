"""Governance: CEL policies decide deny / escalate / warn / require per contract; every decision
lands in a hash-chained audit log.

    policies = load_policies("policies/")
    verdict = policies.evaluate(request, owner="agent-1", consumer_zone="eu-west-1a")
    verdict.decision                  # "deny" | "escalate" | "allow"
    solve(..., allowed=verdict.allows)  # provider -> name of the require policy it fails, or None
"""

from meshctl.governance.audit import (
    GENESIS_HASH,
    KINDS,
    VerifyResult,
    entry_hash,
    new_entry,
    query,
    report,
    seal,
    verify,
)
from meshctl.governance.loader import load_policies, parse_documents
from meshctl.governance.policy import Effect, Policy, PolicyHit, PolicySet, Verdict

__all__ = [
    "GENESIS_HASH",
    "KINDS",
    "Effect",
    "Policy",
    "PolicyHit",
    "PolicySet",
    "Verdict",
    "VerifyResult",
    "entry_hash",
    "load_policies",
    "new_entry",
    "parse_documents",
    "query",
    "report",
    "seal",
    "verify",
]
