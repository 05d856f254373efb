"""Topology history: every change is a versioned snapshot of the whole mesh and its cause.

Snapshots are plain JSON dicts (the store keeps them as-is, oldest first). Everything here except
`snapshot()` is a pure function over such a list: the snapshot in force at an instant, the diff
of two versions (with the causes of the versions in between), and when each provider was first
and last seen. Ephemeral providers stay visible after they are gone because each snapshot carries
the providers alive at that moment with their lease times.

Retention is the store's (`history_limit`): these functions see only what it kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from meshctl.contracts.state import MeshState
from meshctl.errors import NotFound

Snapshot = dict[str, Any]

# A provider's lease deadline moves with every re-registration; as a "change" it is noise.
_PROVIDER_VOLATILE = frozenset({"expires_at"})


class DumpCache:
    """JSON dumps of domain objects, reused while the object is unchanged.

    Zones, links, providers and contracts are replaced, never mutated (pydantic `model_copy`), so
    an object's identity says it is unchanged. Without this every change re-dumps the whole mesh:
    ~11 ms per admission with 1,000 providers, most of an admission's cost.
    """

    def __init__(self) -> None:
        self._dumps: dict[int, tuple[object, Any]] = {}
        self._used: dict[int, tuple[object, Any]] = {}

    def get(self, obj: Any, make: Callable[[Any], Any]) -> Any:
        key = id(obj)
        hit = self._dumps.get(key)
        if hit is None or hit[0] is not obj:
            hit = (obj, make(obj))
        self._used[key] = hit
        return hit[1]

    def sweep(self) -> None:
        """Forget objects the last snapshot did not use (keeps the cache the size of the mesh)."""
        self._dumps, self._used = self._used, {}


def _json(model: Any) -> Any:
    return model.model_dump(mode="json")


def _contract_row(c: Any) -> dict[str, Any]:
    return {
        "id": c.id,
        "owner": c.owner,
        "consumer": c.request.consumer,
        # Where the consumer sits when no proxy of it has connected (yet).
        "consumer_zone": c.request.consumer_zone,
        "capability": c.request.capability,
        "state": str(c.state),
        "sla": c.request.sla.model_dump(mode="json"),
        "expires_at": c.expires_at,
        "allocation": c.allocation.model_dump(mode="json") if c.allocation else None,
    }


def snapshot(
    state: MeshState,
    *,
    version: int,
    at: float,
    cause: str,
    detail: dict[str, Any],
    cache: DumpCache | None = None,
) -> Snapshot:
    """The whole mesh now. Snapshots share unchanged parts with earlier ones: treat them as read-only."""
    g = state.graph
    dc = cache or DumpCache()
    snap = {
        "version": version,
        "at": at,
        "cause": cause,
        "detail": detail,
        "zones": [dc.get(z, _json) for z in sorted(g.zones(), key=lambda z: z.name)],
        "links": [dc.get(link, _json) for link in sorted(g.links(), key=lambda x: x.key)],
        "providers": [dc.get(p, _json) for p in sorted(g.providers(), key=lambda p: p.id)],
        "consumers": dict(sorted(g.consumers().items())),
        "contracts": [dc.get(c, _contract_row) for c in sorted(state.contracts.values(), key=lambda c: c.id)],
    }
    dc.sweep()
    return snap


def summary(snap: Snapshot) -> dict[str, Any]:
    """One line of the history list: what changed and how big the mesh was then."""
    contracts = snap.get("contracts", [])
    return {
        "version": snap["version"],
        "at": snap["at"],
        "cause": snap["cause"],
        "detail": snap.get("detail", {}),
        "providers": len(snap.get("providers", [])),
        "contracts": sum(1 for c in contracts if c.get("state") in ("active", "degraded")),
    }


def window(
    snaps: Iterable[Snapshot], since: float | None = None, until: float | None = None
) -> list[Snapshot]:
    """Snapshots taken in [since, until)."""
    return [s for s in snaps if (since is None or s["at"] >= since) and (until is None or s["at"] < until)]


def at_version(snaps: Sequence[Snapshot], version: int) -> Snapshot:
    # Last match wins: a replica restarted on an older store may repeat a version number, and
    # the newest snapshot with that number is the one the version now means.
    for s in reversed(snaps):
        if s["version"] == version:
            return s
    raise NotFound(f"topology version {version} is not in the retained history", field="version")


def at_instant(snaps: Sequence[Snapshot], at: float) -> Snapshot:
    """The snapshot in force at `at`: the last one taken at or before it."""
    found: Snapshot | None = None
    for s in snaps:
        if s["at"] <= at:
            found = s
        else:
            break
    if found is None:
        oldest = f" (oldest retained: {snaps[0]['at']:.3f})" if snaps else ""
        raise NotFound(f"no topology recorded at or before {at:.3f}{oldest}", field="at")
    return found


# -- diff ---------------------------------------------------------------------------------------------------
def _by(items: Iterable[dict[str, Any]], key: Callable[[dict[str, Any]], str]) -> dict[str, dict[str, Any]]:
    return {key(i): i for i in items}


def _link_key(link: dict[str, Any]) -> str:
    a, b = sorted((link["a"], link["b"]))
    return f"{a}|{b}"


def _field_changes(old: dict[str, Any], new: dict[str, Any], ignore: frozenset[str]) -> dict[str, Any]:
    return {
        k: {"from": old.get(k), "to": new.get(k)}
        for k in sorted(set(old) | set(new))
        if k not in ignore and old.get(k) != new.get(k)
    }


def _sections(
    old: dict[str, dict[str, Any]],
    new: dict[str, dict[str, Any]],
    changed: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any] | None],
) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {
        "appeared": sorted(new.keys() - old.keys()),
        "vanished": sorted(old.keys() - new.keys()),
        "changed": [],
    }
    for k in sorted(old.keys() & new.keys()):
        c = changed(old[k], new[k])
        if c:
            out["changed"].append({"id": k, **c})
    return out


def _shares(alloc: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    if not alloc:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for s in [*alloc.get("shares", []), *alloc.get("failover", [])]:
        out[s["provider_id"]] = {"weight": s["weight"], "rps": s["rps"], "priority": s.get("priority", 0)}
    return out


def _contract_change(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    if old.get("state") != new.get("state"):
        out["state"] = {"from": old.get("state"), "to": new.get("state")}
    if old.get("sla") != new.get("sla"):
        out["sla"] = {"from": old.get("sla"), "to": new.get("sla")}
    a, b = _shares(old.get("allocation")), _shares(new.get("allocation"))
    moved = [
        {"provider_id": pid, "from": a.get(pid), "to": b.get(pid)}
        for pid in sorted(a.keys() | b.keys())
        if a.get(pid) != b.get(pid)
    ]
    if moved:
        out["moved"] = moved
    return out or None


def diff(snaps: Sequence[Snapshot], from_version: int, to_version: int) -> dict[str, Any]:
    """What differs between two versions, and the causes of every version after `from` up to `to`.

    `changed` entries name what changed: a zone's region, a link's latency, a provider's fields
    (lease renewals excluded), a contract's state, SLA and the shares that moved (provider, weight
    and rps before/after; None where the provider held no share).
    """
    a, b = at_version(snaps, from_version), at_version(snaps, to_version)
    lo, hi = sorted((from_version, to_version))
    causes = [
        {"version": s["version"], "at": s["at"], "cause": s["cause"], "detail": s.get("detail", {})}
        for s in snaps
        if lo < s["version"] <= hi
    ]
    a_consumers, b_consumers = a.get("consumers", {}), b.get("consumers", {})
    return {
        "from": from_version,
        "to": to_version,
        "from_at": a["at"],
        "to_at": b["at"],
        "zones": _sections(
            _by(a["zones"], lambda z: z["name"]),
            _by(b["zones"], lambda z: z["name"]),
            lambda o, n: _field_changes(o, n, frozenset()) or None,
        ),
        "links": _sections(
            _by(a["links"], _link_key),
            _by(b["links"], _link_key),
            lambda o, n: (
                {"latency_ms": {"from": o["latency_ms"], "to": n["latency_ms"]}}
                if o["latency_ms"] != n["latency_ms"]
                else None
            ),
        ),
        "providers": _sections(
            _by(a["providers"], lambda p: p["id"]),
            _by(b["providers"], lambda p: p["id"]),
            lambda o, n: {"fields": f} if (f := _field_changes(o, n, _PROVIDER_VOLATILE)) else None,
        ),
        "consumers": _sections(
            {k: {"zone": v} for k, v in a_consumers.items()},
            {k: {"zone": v} for k, v in b_consumers.items()},
            lambda o, n: {"zone": {"from": o["zone"], "to": n["zone"]}} if o != n else None,
        ),
        "contracts": _sections(
            _by(a["contracts"], lambda c: c["id"]),
            _by(b["contracts"], lambda c: c["id"]),
            _contract_change,
        ),
        "causes": causes,
    }


# -- provider lifetimes ----------------------------------------------------------------------------------------
def provider_lifetimes(snaps: Sequence[Snapshot]) -> list[dict[str, Any]]:
    """Every provider the retained history saw: when it was first and last seen, and when it was
    found gone (the first snapshot without it after it had been seen; None while it is present).

    A provider that left and came back has one row per stay, so a flapping lease is visible.
    """
    rows: list[dict[str, Any]] = []
    open_rows: dict[str, dict[str, Any]] = {}
    for s in snaps:
        present = {p["id"]: p for p in s.get("providers", [])}
        for pid, p in present.items():
            row = open_rows.get(pid)
            if row is None:
                row = {
                    "id": pid,
                    "zone": p.get("zone"),
                    "capabilities": p.get("capabilities", []),
                    "ttl_s": p.get("ttl_s"),
                    "registered_at": p.get("registered_at"),
                    "first_seen": s["at"],
                    "first_version": s["version"],
                    "gone_at": None,
                    "gone_version": None,
                    "gone_cause": None,
                }
                open_rows[pid] = row
                rows.append(row)
            row["last_seen"] = s["at"]
            row["last_version"] = s["version"]
            row["lease_expires_at"] = p.get("expires_at")
        for pid in [pid for pid in open_rows if pid not in present]:
            row = open_rows.pop(pid)
            row.update(gone_at=s["at"], gone_version=s["version"], gone_cause=s["cause"])
    for row in rows:
        row["present"] = row["gone_at"] is None
    return rows
