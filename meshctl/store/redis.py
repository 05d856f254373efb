"""The durable, shared store on Redis (redis-py asyncio); many control-plane replicas use one prefix.

Atomicity: each write is one Lua script that changes the object and XADDs its change event, so the
feed never misses nor invents a change; `commit_contract` checks and replaces reservations in the
same script (see redis_scripts.py for the key layout). The audit chain is appended with WATCH/MULTI
on `{p}:audit:tail`, and each entry's stream id is "<seq>-0", so a forked chain would also be refused
by Redis itself (stream ids only grow).

Failures: every Redis or socket error becomes `StoreUnavailable`. Reads then answer from the last
state this process read or wrote successfully (stale but coherent; `available` tells which), and
raise only when nothing is known yet. Timeouts are ~1 s so an outage is seen quickly; redis-py
reconnects on its own once Redis is back, and one immediate retry covers a pooled connection that
died with the old server.

Durability: a returned write is acknowledged by Redis. With `appendonly yes` + `appendfsync always`
Redis fsyncs the AOF before it answers, so an acknowledged commit survives `kill -9` of Redis (and
of the machine, as far as the disk honours fsync). With `appendfsync everysec` up to ~1 s of
acknowledged writes may be lost on a crash; without AOF, everything since the last RDB save.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import math
import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError, WatchError

from meshctl.errors import StoreUnavailable
from meshctl.model import Contract, Link, Provider, Zone
from meshctl.store.base import ChangeEvent
from meshctl.store.memory import (
    CAPACITY_TOLERANCE,
    Sealer,
    capacity_conflict,
    default_sealer,
    link_key,
    normalise_reservation,
)
from meshctl.store.redis_feed import StreamFollower, encode_event
from meshctl.store.redis_history import HistoryEncoder, KnownParts, rebuild, referenced, split_ids
from meshctl.store.redis_scripts import APPEND_HISTORY, COMMIT_CONTRACT, RESERVATIONS, WRITE

CHANGES_MAXLEN = 100_000
SOCKET_TIMEOUT_S = 1.0
POOL_SIZE = 64
POOL_WAIT_S = 5.0
_AUDIT_ATTEMPTS = 500
_AUDIT_CACHE = 32
_HISTORY_ATTEMPTS = 3
_PARTS_CHUNK = 5_000


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _referenced(entries: list[tuple[int, dict[str, str]]]) -> set[str]:
    return {pid for _v, fields in entries for pid in referenced(fields)}


def _cached(ids: set[str], cache: dict[str, Any]) -> dict[str, Any]:
    return {pid: cache[pid] for pid in ids if pid in cache}


def _replace_holdings(
    resv: dict[str, dict[str, float]], contract_id: str, holdings: Mapping[str, float]
) -> dict[str, dict[str, float]]:
    """`resv` (provider -> contract -> rps) with `contract_id` holding exactly `holdings`."""
    out: dict[str, dict[str, float]] = {}
    for provider, holders in resv.items():
        kept = {c: r for c, r in holders.items() if c != contract_id}
        if kept:
            out[provider] = kept
    for provider, rps in holdings.items():
        out.setdefault(provider, {})[contract_id] = rps
    return dict(sorted(out.items()))


class RedisStore:
    """The `Store` protocol on Redis. Build it with `await RedisStore.connect(url, origin=...)`."""

    def __init__(
        self,
        client: Redis,
        *,
        origin: str,
        prefix: str = "meshctl",
        history_limit: int = 10_000,
        seal: Sealer | None = None,
    ) -> None:
        self.origin = origin
        self.prefix = prefix
        self.history_limit = history_limit
        # Any: redis-py's stubs type replies as bytes | str whatever decode_responses says.
        self._r: Any = client
        self._seal = seal
        self._closed = False
        self._available = True
        # WATCH keeps replicas from forking the chain; this lock keeps one replica's own appends
        # from retrying against each other (O(n^2) round trips under a burst).
        self._audit_lock = asyncio.Lock()
        # Last known state, served by reads while Redis is unreachable.
        self._known: dict[str, dict[str, str]] = {k: {} for k in ("zones", "links", "providers", "contracts")}
        self._complete: set[str] = set()
        self._known_resv: dict[str, dict[str, float]] | None = None
        self._known_audit: OrderedDict[tuple[int, int | None], list[dict[str, Any]]] = OrderedDict()
        # (version, stream entry fields): rebuilt from `_parts` when an outage makes it the answer.
        self._known_history: list[tuple[int, dict[str, str]]] | None = None
        self._history_encoder = HistoryEncoder()
        self._known_parts = KnownParts()
        # Parsed history parts of the last history read and own appends since, shared by the
        # snapshots that reference them (read-only, as MemoryStore's are).
        self._parts: dict[str, Any] = {}
        self._appends_since_read = 0
        # Server clock minus ours (ms) and its uncertainty, to place follow()'s start without I/O.
        self._clock_offset_ms = 0.0
        self._clock_margin_ms = 5
        # Newest change-event id this replica wrote: follow() starts after it, so a replica never
        # replays its own earlier writes whatever the clock margin.
        self._last_event_id = (0, 0)

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        origin: str,
        prefix: str = "meshctl",
        history_limit: int = 10_000,
        seal: Sealer | None = None,
    ) -> RedisStore:
        """Connect and check Redis answers; raises StoreUnavailable when it does not."""
        # Blocking pool: a burst larger than the pool waits for a connection instead of failing
        # with "Too many connections" as the default pool does.
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=POOL_SIZE,
            timeout=POOL_WAIT_S,
            decode_responses=True,
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=SOCKET_TIMEOUT_S,
            health_check_interval=1,
            retry=Retry(NoBackoff(), 1),
        )
        client = Redis.from_pool(pool)
        store = cls(client, origin=origin, prefix=prefix, history_limit=history_limit, seal=seal)
        try:
            await store._sync_clock()
        except StoreUnavailable:
            await client.aclose()
            raise
        return store

    @property
    def available(self) -> bool:
        """False since the last call that could not reach Redis, until one succeeds again."""
        return self._available

    def _wrote_event(self, event_id: str | None) -> None:
        if event_id:
            ms, _, seq = event_id.partition("-")
            self._last_event_id = max(self._last_event_id, (int(ms), int(seq or 0)))

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    @contextlib.asynccontextmanager
    async def _guard(self, what: str) -> AsyncIterator[None]:
        try:
            yield
        except ResponseError as exc:
            raise StoreUnavailable(f"redis refused {what}: {exc}") from exc
        except (RedisError, OSError) as exc:
            self._available = False
            raise StoreUnavailable(f"redis unreachable during {what}: {exc}") from exc
        self._available = True

    async def _sync_clock(self) -> None:
        async with self._guard("connect"):
            before = time.time()
            seconds, micros = await self._r.time()
            after = time.time()
        self._clock_offset_ms = seconds * 1000 + micros / 1000 - (before + after) * 500
        self._clock_margin_ms = math.ceil((after - before) * 500) + 2

    # -- generic hash reads/writes with the last-known fallback ----------------------
    async def _read_all(self, kind: str) -> dict[str, str]:
        try:
            async with self._guard(f"list {kind}"):
                raw: dict[str, str] = await self._r.hgetall(self._key(kind))
        except StoreUnavailable:
            if kind in self._complete:
                return dict(self._known[kind])
            raise
        self._known[kind] = dict(raw)
        self._complete.add(kind)
        return raw

    async def _read_one(self, kind: str, field: str) -> str | None:
        try:
            async with self._guard(f"get {kind}"):
                raw: str | None = await self._r.hget(self._key(kind), field)
        except StoreUnavailable:
            if field in self._known[kind]:
                return self._known[kind][field]
            if kind in self._complete:
                return None
            raise
        if raw is None:
            self._known[kind].pop(field, None)
        else:
            self._known[kind][field] = raw
        return raw

    async def _write(self, kind: str, event_kind: str, op: str, field: str, value: str = "{}") -> None:
        async with self._guard(f"{op} {event_kind}"):
            event_id = await WRITE(
                self._r,
                [self._key(kind), self._key("changes")],
                [op, field, value, CHANGES_MAXLEN, event_kind, self.origin],
            )
        self._wrote_event(event_id)
        if op == "put":
            self._known[kind][field] = value
        else:
            self._known[kind].pop(field, None)

    # -- network topology --------------------------------------------------------
    async def put_zone(self, zone: Zone) -> None:
        await self._write("zones", "zone", "put", zone.name, zone.model_dump_json())

    async def delete_zone(self, name: str) -> None:
        await self._write("zones", "zone", "delete", name)

    async def list_zones(self) -> list[Zone]:
        raw = await self._read_all("zones")
        return [Zone.model_validate_json(raw[k]) for k in sorted(raw)]

    async def put_link(self, link: Link) -> None:
        await self._write("links", "link", "put", link_key(link.a, link.b), link.model_dump_json())

    async def delete_link(self, a: str, b: str) -> None:
        await self._write("links", "link", "delete", link_key(a, b))

    async def list_links(self) -> list[Link]:
        raw = await self._read_all("links")
        return [Link.model_validate_json(raw[k]) for k in sorted(raw)]

    # -- providers -------------------------------------------------------------------
    async def put_provider(self, provider: Provider) -> None:
        await self._write("providers", "provider", "put", provider.id, provider.model_dump_json())

    async def get_provider(self, provider_id: str) -> Provider | None:
        raw = await self._read_one("providers", provider_id)
        return Provider.model_validate_json(raw) if raw is not None else None

    async def delete_provider(self, provider_id: str) -> None:
        await self._write("providers", "provider", "delete", provider_id)

    async def list_providers(self) -> list[Provider]:
        raw = await self._read_all("providers")
        return [Provider.model_validate_json(raw[k]) for k in sorted(raw)]

    # -- contracts and reservations -------------------------------------------------------
    async def get_contract(self, contract_id: str) -> Contract | None:
        raw = await self._read_one("contracts", contract_id)
        return Contract.model_validate_json(raw) if raw is not None else None

    async def list_contracts(self) -> list[Contract]:
        raw = await self._read_all("contracts")
        return [Contract.model_validate_json(raw[k]) for k in sorted(raw)]

    async def commit_contract(
        self, contract: Contract, reservation: Mapping[str, float], capacity: Mapping[str, float]
    ) -> None:
        cid = contract.id
        wanted = normalise_reservation(cid, reservation, capacity)
        body = contract.model_dump_json()
        args: list[str | int | float] = [
            self._key("resv") + ":",
            cid,
            body,
            CHANGES_MAXLEN,
            self.origin,
            repr(CAPACITY_TOLERANCE),
            len(wanted),
        ]
        for provider, rps, cap in wanted:
            args += [provider, repr(rps), repr(cap)]
        keys = [
            self._key("contracts"),
            self._key("changes"),
            self._key("resv_of", cid),
            self._key("resv_index"),
        ]
        async with self._guard("commit contract"):
            reply = await COMMIT_CONTRACT(self._r, keys, args)
        if reply[0] == "capacity":
            _, provider, held, requested, cap_s = reply
            raise capacity_conflict(cid, provider, float(held), float(requested), float(cap_s))
        self._wrote_event(reply[1])
        self._known["contracts"][cid] = body
        if self._known_resv is not None:
            self._known_resv = _replace_holdings(self._known_resv, cid, {p: rps for p, rps, _ in wanted})

    async def reservations(self) -> dict[str, dict[str, float]]:
        try:
            async with self._guard("read reservations"):
                flat = await RESERVATIONS(self._r, [self._key("resv_index")], [self._key("resv") + ":"])
        except StoreUnavailable:
            if self._known_resv is not None:
                return copy.deepcopy(self._known_resv)
            raise
        out: dict[str, dict[str, float]] = {}
        for i in range(0, len(flat), 2):
            pairs = flat[i + 1]
            if pairs:
                out[flat[i]] = {pairs[j]: float(pairs[j + 1]) for j in range(0, len(pairs), 2)}
        self._known_resv = dict(sorted(out.items()))
        return copy.deepcopy(self._known_resv)

    # -- audit log ------------------------------------------------------------------------------
    async def append_audit(self, entry: dict[str, Any]) -> dict[str, Any]:
        async with self._audit_lock:
            return await self._append_audit(entry)

    async def _append_audit(self, entry: dict[str, Any]) -> dict[str, Any]:
        seal = self._seal or default_sealer()
        tail_key, stream_key = self._key("audit", "tail"), self._key("audit")
        for attempt in range(_AUDIT_ATTEMPTS):
            async with self._guard("append audit"):
                try:
                    async with self._r.pipeline(transaction=True) as pipe:
                        await pipe.watch(tail_key)
                        raw = await pipe.get(tail_key)
                        prev = json.loads(raw) if raw else await self._audit_tail_from_stream(pipe)
                        sealed = seal(copy.deepcopy(entry), prev)
                        body = _dumps(sealed)
                        pipe.multi()
                        pipe.xadd(stream_key, {"entry": body}, id=f"{int(sealed['seq'])}-0")
                        pipe.set(tail_key, body)
                        await pipe.execute()
                    self._known_audit.clear()
                    return sealed
                except WatchError:
                    pass  # another writer sealed first: re-read the tail and seal after it
            await asyncio.sleep(random.uniform(0, 0.001 * min(attempt + 1, 20)))
        raise StoreUnavailable(f"audit log stayed contended for {_AUDIT_ATTEMPTS} attempts")

    async def _audit_tail_from_stream(self, pipe: Any) -> dict[str, Any] | None:
        # The tail key is a cache of the stream's last entry; rebuild it if it was lost.
        last = await pipe.xrevrange(self._key("audit"), count=1)
        return json.loads(last[0][1]["entry"]) if last else None

    async def list_audit(self, since_seq: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        cache_key = (since_seq, limit)
        if limit is not None and limit <= 0:
            return []
        try:
            async with self._guard("list audit"):
                rows = await self._r.xrange(self._key("audit"), min=f"{since_seq + 1}-0", count=limit)
        except StoreUnavailable:
            if cache_key in self._known_audit:
                return copy.deepcopy(self._known_audit[cache_key])
            raise
        entries = [json.loads(fields["entry"]) for _id, fields in rows]
        self._known_audit[cache_key] = entries
        self._known_audit.move_to_end(cache_key)
        while len(self._known_audit) > _AUDIT_CACHE:
            self._known_audit.popitem(last=False)
        return copy.deepcopy(entries)

    # -- topology history --------------------------------------------------------------------
    async def append_history(self, snapshot: dict[str, Any]) -> int:
        # Snapshots hold the whole mesh and come with every change: send only the parts this
        # process has not seen stored, and let the script say if one of those is gone after all.
        enc = self._history_encoder.encode(snapshot)
        keys = [self._key("history"), self._key("history", "version"), self._key("history", "parts")]
        for _ in range(_HISTORY_ATTEMPTS):
            known, new = [], []
            for pid, text in enc.parts.items():
                if pid in self._known_parts:
                    known.append(pid)
                else:
                    new += [pid, text]
            async with self._guard("append history"):
                reply = await APPEND_HISTORY(
                    self._r, keys, [enc.head, enc.kinds, self.history_limit, "".join(known), *new]
                )
            if not isinstance(reply, list):
                break
            self._known_parts.discard(split_ids(reply[1]))  # lost (flushed, restored from a backup)
        else:
            raise StoreUnavailable(f"history parts kept vanishing for {_HISTORY_ATTEMPTS} attempts")
        self._known_parts.add(enc.parts)
        version = int(reply)
        if self._known_history is not None:
            for pid, text in enc.parts.items():
                if pid not in self._parts:
                    self._parts[pid] = json.loads(text)
            self._known_history.append((version, {"h": enc.head, "k": enc.kinds}))
            del self._known_history[: -self.history_limit]
            self._appends_since_read += 1
            if self._appends_since_read >= max(self.history_limit, 1_000):
                # Forget parts only trimmed entries used, as a read would (amortised O(mesh)).
                self._parts = _cached(_referenced(self._known_history), self._parts)
                self._appends_since_read = 0
        return version

    async def list_history(self) -> list[dict[str, Any]]:
        # MAXLEN ~ trims in whole stream nodes; the newest history_limit are the history.
        try:
            async with self._guard("list history"):
                rows = await self._r.xrevrange(self._key("history"), count=max(self.history_limit, 1))
                entries = [(int(f.get("v") or 0), f) for _id, f in reversed(rows)]
                needed = _referenced(entries)
                parts = _cached(needed, self._parts)
                await self._fetch_parts(needed - parts.keys(), parts)
        except StoreUnavailable:
            if self._known_history is not None:
                return self._snapshots(self._known_history)
            raise
        self._known_history, self._parts, self._appends_since_read = entries, parts, 0
        return self._snapshots(entries)

    async def _fetch_parts(self, ids: set[str], into: dict[str, Any]) -> None:
        wanted = sorted(ids)
        chunks = [wanted[i : i + _PARTS_CHUNK] for i in range(0, len(wanted), _PARTS_CHUNK)]
        if not chunks:
            return
        async with self._r.pipeline(transaction=False) as pipe:
            for chunk in chunks:
                pipe.hmget(self._key("history", "parts"), chunk)
            replies = await pipe.execute()
        for chunk, texts in zip(chunks, replies, strict=True):
            for pid, text in zip(chunk, texts, strict=True):
                if text is not None:
                    into[pid] = json.loads(text)

    def _snapshots(self, entries: list[tuple[int, dict[str, str]]]) -> list[dict[str, Any]]:
        # An entry whose parts are gone (the parts hash deleted by hand) is left out rather than
        # failing the whole history; appends never reference a part the script did not find.
        snaps = (rebuild(v, f, self._parts) for v, f in entries)
        return [s for s in snaps if s is not None]

    # -- change feed ---------------------------------------------------------------------------
    async def publish(self, event: ChangeEvent) -> None:
        async with self._guard("publish"):
            fields = encode_event(event, self.origin)
            event_id = await self._r.xadd(
                self._key("changes"), fields, maxlen=CHANGES_MAXLEN, approximate=True
            )
        self._wrote_event(event_id)

    def follow(self) -> StreamFollower:
        """Events from now on. "$" would be resolved on the first read, losing whatever is published
        between the call and that read; the start is instead the server's clock now (offset measured
        at connect) a few ms early, or this replica's last own event if later: a follower may see
        another replica's event from the call's last few ms, never miss one after it."""
        now_ms = int(time.time() * 1000 + self._clock_offset_ms) - self._clock_margin_ms
        start = max((max(now_ms, 0), 0), self._last_event_id)
        return StreamFollower(self._r, self._key("changes"), f"{start[0]}-{start[1]}", lambda: self._closed)

    async def ping(self) -> None:
        async with self._guard("ping"):
            await self._r.ping()

    async def close(self) -> None:
        self._closed = True
        with contextlib.suppress(RedisError, OSError):
            await self._r.aclose()
