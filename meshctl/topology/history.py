"""Topology history: every change is a versioned snapshot of the whole mesh and its cause.

Snapshots are plain JSON dicts (the store keeps them as-is). Ephemeral providers stay visible in
history after they are gone because each snapshot carries the providers alive at that moment with
their lease times.
"""

from __future__ import annotations

from typing import Any

from meshctl.contracts.state import MeshState


def snapshot(
    state: MeshState, *, version: int, at: float, cause: str, detail: dict[str, Any]
) -> dict[str, Any]:
    g = state.graph
    return {
        "version": version,
        "at": at,
        "cause": cause,
        "detail": detail,
        "zones": [z.model_dump(mode="json") for z in sorted(g.zones(), key=lambda z: z.name)],
        "links": [link.model_dump(mode="json") for link in sorted(g.links(), key=lambda x: x.key)],
        "providers": [p.model_dump(mode="json") for p in sorted(g.providers(), key=lambda p: p.id)],
        "consumers": dict(sorted(g.consumers().items())),
        "contracts": [
            {
                "id": c.id,
                "owner": c.owner,
                "consumer": c.request.consumer,
                "capability": c.request.capability,
                "state": str(c.state),
                "sla": c.request.sla.model_dump(mode="json"),
                "allocation": c.allocation.model_dump(mode="json") if c.allocation else None,
            }
            for c in sorted(state.contracts.values(), key=lambda c: c.id)
        ],
    }
