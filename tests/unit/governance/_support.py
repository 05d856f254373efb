from __future__ import annotations

from pathlib import Path
from typing import Any

from meshctl.governance import PolicySet
from meshctl.model import ContractRequest, Endpoint, Provider, Sla

REPO = Path(__file__).resolve().parents[3]


def make_request(**overrides: Any) -> ContractRequest:
    data: dict[str, Any] = {
        "consumer": "fraud-detection",
        "capability": "graph-analysis",
        "sla": Sla(p99_latency_ms=50, rps=200),
        "max_cost_per_1k": 2.0,
        "labels": {},
    }
    data.update(overrides)
    return ContractRequest(**data)


def make_provider(pid: str = "p1", *, region: str = "eu-west", labels: dict[str, Any] | None = None,
                  **overrides: Any) -> Provider:
    data: dict[str, Any] = {
        "id": pid,
        "capabilities": ["graph-analysis"],
        "zone": f"{region}-1a",
        "region": region,
        "endpoints": [Endpoint(address="127.0.0.1", port=9000)],
        "labels": labels or {},
        "capacity_rps": 100.0,
        "latency_p99_ms": 5.0,
        "cost_per_1k": 1.0,
    }
    data.update(overrides)
    return Provider(**data)


def policies_from(*texts: str) -> PolicySet:
    return PolicySet.from_documents((f"p{i}.yaml", t) for i, t in enumerate(texts))
