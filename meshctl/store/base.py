"""The Store protocol: everything the control plane keeps, and the atomic operations on it.

A method returning normally means the change is stored (on Redis with AOF: durable). Backends raise
`StoreUnavailable` when they cannot reach their storage, `CapacityConflict` when an atomic
reservation would oversubscribe a provider, and never anything else on purpose.

Every write publishes its own `ChangeEvent` (the object's JSON as `data`) in the same atomic step
as the write, so a follower never misses a stored change; `publish()` is for changes the store does
not hold (policies). `follow()` may replay another replica's event from the last few ms before the
call: appliers must be idempotent.

Objects go in and out as the pydantic models of `meshctl.model`; audit entries and history
snapshots are plain JSON-able dicts (their shape belongs to governance and topology).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from meshctl.model import Contract, Link, Provider, Zone


@dataclass(frozen=True)
class ChangeEvent:
    """One entry of the change feed every replica follows.

    kind: "zone", "link", "provider", "contract", "policy"; op: "put" or "delete";
    key: the object's id ("a|b" for links); origin: the replica that wrote it (so a replica can
    skip its own events); seq: the backend's position ("1700000000000-0" on Redis streams).
    """

    kind: str
    op: str
    key: str
    origin: str = ""
    seq: str = ""
    data: dict[str, Any] = field(default_factory=dict)


class Store(Protocol):
    # -- network topology -------------------------------------------------
    async def put_zone(self, zone: Zone) -> None: ...
    async def delete_zone(self, name: str) -> None: ...
    async def list_zones(self) -> list[Zone]: ...
    async def put_link(self, link: Link) -> None: ...
    async def delete_link(self, a: str, b: str) -> None: ...
    async def list_links(self) -> list[Link]: ...

    # -- providers (leases are fields of Provider; expiry is decided by the control plane) --
    async def put_provider(self, provider: Provider) -> None: ...
    async def get_provider(self, provider_id: str) -> Provider | None: ...
    async def delete_provider(self, provider_id: str) -> None: ...
    async def list_providers(self) -> list[Provider]: ...

    # -- contracts and reservations ----------------------------------------
    async def get_contract(self, contract_id: str) -> Contract | None: ...
    async def list_contracts(self) -> list[Contract]: ...

    async def commit_contract(
        self,
        contract: Contract,
        reservation: Mapping[str, float],
        capacity: Mapping[str, float],
    ) -> None:
        """Atomically store `contract` and replace its reservation with `reservation`.

        `reservation` maps provider id -> rps this contract holds ({} releases everything);
        `capacity` maps the same provider ids -> capacity_rps. Raises `CapacityConflict` (and stores
        nothing) if, counting every other contract's reservation, any provider would exceed its
        capacity. This is the only way reservations change, so no interleaving of replicas can
        oversubscribe a provider.
        """
        ...

    async def reservations(self) -> dict[str, dict[str, float]]:
        """provider id -> {contract id -> rps held}."""
        ...

    # -- audit log (append-only; the chain hash is computed by governance.audit) --
    async def append_audit(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Append atomically after the current tail; returns the stored entry with its `seq` and
        `prev_hash`/`hash` filled in by `governance.audit.seal` under the store's lock, so two
        replicas can never fork the chain."""
        ...

    async def list_audit(self, since_seq: int = 0, limit: int | None = None) -> list[dict[str, Any]]: ...

    # -- topology history --------------------------------------------------
    async def append_history(self, snapshot: dict[str, Any]) -> int:
        """Append and return the snapshot's version, which the store hands out: one increasing
        sequence shared by every replica, replacing the snapshot's own "version" when read."""
        ...

    async def list_history(self) -> list[dict[str, Any]]: ...

    # -- change feed ---------------------------------------------------------
    async def publish(self, event: ChangeEvent) -> None: ...
    def follow(self) -> AsyncIterator[ChangeEvent]:
        """Events published after the call, from every replica (including this one)."""
        ...

    async def ping(self) -> None:
        """Return when the storage answers, raise `StoreUnavailable` when it does not (reads may
        answer from last-known state during an outage, so they cannot tell)."""
        ...

    async def close(self) -> None: ...
