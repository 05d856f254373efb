"""The embedded store: everything in this process's memory, nothing survives a restart.

It is the default for `meshctl serve` and the reference behaviour the Redis backend must match
(tests/integration/store_contract.py runs the same suite against both). The pure helpers at the
top (reservation validation, the capacity rule, audit sealing lookup) are shared with the Redis
backend so the two cannot disagree on what "oversubscribed" means.

Every write method publishes its own ChangeEvent (kind/op/key, the object's JSON as `data`) in the
same atomic step as the write, so a follower can never miss a stored change; `publish()` is for
changes the store does not hold itself (policies).
"""

from __future__ import annotations

import asyncio
import bisect
import copy
import dataclasses
import math
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from meshctl.errors import CapacityConflict, MeshError, ValidationFailed
from meshctl.model import Contract, Link, Provider, Zone
from meshctl.store.base import ChangeEvent

Sealer = Callable[[dict[str, Any], dict[str, Any] | None], dict[str, Any]]

# Float sums of rps shares (e.g. 33.333... x 3) must not turn an exact fit into a conflict.
CAPACITY_TOLERANCE = 1e-6
# Lua cannot parse "inf"; a capacity this large is unbounded for any real mesh.
_MAX_CAPACITY = 1e300


def link_key(a: str, b: str) -> str:
    """The id of an undirected link, as used in change events ("a|b", a <= b)."""
    return f"{a}|{b}" if a <= b else f"{b}|{a}"


def default_sealer() -> Sealer:
    """`meshctl.governance.audit.seal`, imported late: governance depends on nothing in store."""
    try:
        from meshctl.governance.audit import seal
    except ImportError as exc:  # a packaging error, not a runtime condition
        raise MeshError("audit sealing unavailable: meshctl.governance.audit is missing") from exc
    return seal


def normalise_reservation(
    contract_id: str, reservation: Mapping[str, float], capacity: Mapping[str, float]
) -> list[tuple[str, float, float]]:
    """(provider, rps, capacity) for every provider the contract will hold capacity on.

    Zero shares are dropped (holding nothing is not a reservation). A provider without a known
    capacity gets 0: it has left the mesh, so any positive share on it is a lost race.
    """
    out: list[tuple[str, float, float]] = []
    for provider, raw in sorted(reservation.items()):
        rps = float(raw)
        if not math.isfinite(rps) or rps < 0:
            raise ValidationFailed(
                f"contract {contract_id}: reservation on {provider} must be a finite rps >= 0, got {raw!r}",
                field=f"reservation.{provider}",
            )
        if rps == 0:
            continue
        cap = float(capacity.get(provider, 0.0))
        if math.isnan(cap):
            raise ValidationFailed(f"capacity of {provider} is NaN", field=f"capacity.{provider}")
        out.append((provider, rps, min(cap, _MAX_CAPACITY)))
    return out


def exceeds_capacity(held_by_others: float, own_now: float, requested: float, capacity: float) -> bool:
    """The one admission rule: others' holdings + this request must fit the capacity.

    A contract that does not grow its share on a provider is always allowed, so shrinking or
    re-committing stays possible after an operator lowers a provider's capacity below what is held.
    """
    if requested <= own_now:
        return False
    return held_by_others + requested > capacity + CAPACITY_TOLERANCE


def capacity_conflict(
    contract_id: str, provider: str, held_by_others: float, requested: float, capacity: float
) -> CapacityConflict:
    free = max(capacity - held_by_others, 0.0)
    return CapacityConflict(
        f"provider {provider} has {free:.6g} rps free of {capacity:.6g}; "
        f"contract {contract_id} asks {requested:.6g}",
        details={
            "provider": provider,
            "contract": contract_id,
            "held": held_by_others,
            "requested": requested,
            "capacity": capacity,
        },
    )


class QueueFollower:
    """A `follow()` iterator fed by the store: registered when created, not on first `anext`,
    so events published between `follow()` and the first read are not lost."""

    def __init__(self, store: MemoryStore) -> None:
        self._queue: asyncio.Queue[ChangeEvent | None] = asyncio.Queue()
        self._store = weakref.ref(store)
        self._done = False
        store._followers.add(self)

    def _offer(self, event: ChangeEvent | None) -> None:
        self._queue.put_nowait(event)

    def __aiter__(self) -> QueueFollower:
        return self

    async def __anext__(self) -> ChangeEvent:
        if self._done:
            raise StopAsyncIteration
        event = await self._queue.get()
        if event is None:
            self._done = True
            raise StopAsyncIteration
        return event

    async def aclose(self) -> None:
        self._done = True
        store = self._store()
        if store is not None:
            store._followers.discard(self)


class MemoryStore:
    """The `Store` protocol over dicts; one asyncio.Lock serialises the atomic operations."""

    def __init__(self, origin: str = "", *, history_limit: int = 10_000, seal: Sealer | None = None) -> None:
        self.origin = origin
        self._seal = seal
        self._zones: dict[str, Zone] = {}
        self._links: dict[str, Link] = {}
        self._providers: dict[str, Provider] = {}
        self._contracts: dict[str, Contract] = {}
        self._resv: dict[str, dict[str, float]] = {}  # provider -> contract -> rps
        self._resv_of: dict[str, set[str]] = {}  # contract -> providers it holds capacity on
        self._audit: list[dict[str, Any]] = []
        # Snapshots are kept as given, not copied: they share unchanged parts with each other
        # (topology.history.DumpCache) and are read-only by contract. Copying would cost O(mesh)
        # per change.
        self._history: deque[dict[str, Any]] = deque(maxlen=history_limit)
        self._history_version = 0
        self._lock = asyncio.Lock()
        # Weak: a follower its owner dropped without aclose() must not keep collecting events.
        self._followers: weakref.WeakSet[QueueFollower] = weakref.WeakSet()
        self._seq = 0

    # -- change feed -----------------------------------------------------------
    def _emit(self, event: ChangeEvent) -> None:
        self._seq += 1
        stamped = dataclasses.replace(event, origin=event.origin or self.origin, seq=str(self._seq))
        for follower in list(self._followers):
            follower._offer(stamped)

    def _changed(self, kind: str, op: str, key: str, data: dict[str, Any] | None = None) -> None:
        self._emit(ChangeEvent(kind=kind, op=op, key=key, data=data or {}))

    async def publish(self, event: ChangeEvent) -> None:
        self._emit(dataclasses.replace(event, data=copy.deepcopy(event.data)))

    def follow(self) -> QueueFollower:
        return QueueFollower(self)

    # -- network topology --------------------------------------------------------
    async def put_zone(self, zone: Zone) -> None:
        self._zones[zone.name] = zone.model_copy(deep=True)
        self._changed("zone", "put", zone.name, zone.model_dump(mode="json"))

    async def delete_zone(self, name: str) -> None:
        if self._zones.pop(name, None) is not None:
            self._changed("zone", "delete", name)

    async def list_zones(self) -> list[Zone]:
        return [self._zones[k].model_copy(deep=True) for k in sorted(self._zones)]

    async def put_link(self, link: Link) -> None:
        key = link_key(link.a, link.b)
        self._links[key] = link.model_copy(deep=True)
        self._changed("link", "put", key, link.model_dump(mode="json"))

    async def delete_link(self, a: str, b: str) -> None:
        key = link_key(a, b)
        if self._links.pop(key, None) is not None:
            self._changed("link", "delete", key)

    async def list_links(self) -> list[Link]:
        return [self._links[k].model_copy(deep=True) for k in sorted(self._links)]

    # -- providers -------------------------------------------------------------------
    async def put_provider(self, provider: Provider) -> None:
        self._providers[provider.id] = provider.model_copy(deep=True)
        self._changed("provider", "put", provider.id, provider.model_dump(mode="json"))

    async def get_provider(self, provider_id: str) -> Provider | None:
        found = self._providers.get(provider_id)
        return found.model_copy(deep=True) if found is not None else None

    async def delete_provider(self, provider_id: str) -> None:
        if self._providers.pop(provider_id, None) is not None:
            self._changed("provider", "delete", provider_id)

    async def list_providers(self) -> list[Provider]:
        return [self._providers[k].model_copy(deep=True) for k in sorted(self._providers)]

    # -- contracts and reservations -------------------------------------------------------
    async def get_contract(self, contract_id: str) -> Contract | None:
        found = self._contracts.get(contract_id)
        return found.model_copy(deep=True) if found is not None else None

    async def list_contracts(self) -> list[Contract]:
        return [self._contracts[k].model_copy(deep=True) for k in sorted(self._contracts)]

    async def commit_contract(
        self, contract: Contract, reservation: Mapping[str, float], capacity: Mapping[str, float]
    ) -> None:
        cid = contract.id
        wanted = normalise_reservation(cid, reservation, capacity)
        async with self._lock:
            for provider, rps, cap in wanted:
                holders = self._resv.get(provider, {})
                own = holders.get(cid, 0.0)
                others = sum(v for k, v in holders.items() if k != cid)
                if exceeds_capacity(others, own, rps, cap):
                    raise capacity_conflict(cid, provider, others, rps, cap)
            for provider in self._resv_of.pop(cid, set()):
                holders = self._resv.get(provider, {})
                holders.pop(cid, None)
                if not holders:
                    self._resv.pop(provider, None)
            if wanted:
                self._resv_of[cid] = {p for p, _, _ in wanted}
            for provider, rps, _ in wanted:
                self._resv.setdefault(provider, {})[cid] = rps
            self._contracts[cid] = contract.model_copy(deep=True)
            self._changed("contract", "put", cid, contract.model_dump(mode="json"))

    async def reservations(self) -> dict[str, dict[str, float]]:
        return {p: dict(holders) for p, holders in sorted(self._resv.items())}

    # -- audit log ------------------------------------------------------------------------------
    async def append_audit(self, entry: dict[str, Any]) -> dict[str, Any]:
        seal = self._seal or default_sealer()
        async with self._lock:
            prev = self._audit[-1] if self._audit else None
            sealed = seal(copy.deepcopy(entry), copy.deepcopy(prev))
            self._audit.append(copy.deepcopy(sealed))
        return sealed

    async def list_audit(self, since_seq: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        start = bisect.bisect_right(self._audit, since_seq, key=lambda e: int(e["seq"]))
        stop = len(self._audit) if limit is None else start + max(limit, 0)
        return copy.deepcopy(self._audit[start:stop])

    # -- topology history --------------------------------------------------------------------
    async def append_history(self, snapshot: dict[str, Any]) -> int:
        self._history_version += 1
        # A shallow copy: the version is the store's, and the caller's dict stays untouched.
        self._history.append({**snapshot, "version": self._history_version})
        return self._history_version

    async def list_history(self) -> list[dict[str, Any]]:
        return list(self._history)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        for follower in list(self._followers):
            follower._offer(None)
        self._followers.clear()
