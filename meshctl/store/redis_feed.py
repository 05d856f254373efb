"""The change feed on a Redis stream: event encoding and the `follow()` iterator."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from meshctl.store.base import ChangeEvent

log = logging.getLogger(__name__)

# Below the client's ~1 s socket timeout, so a blocking read is never mistaken for a dead socket.
BLOCK_MS = 500
_BACKOFF_MIN_S = 0.05
_BACKOFF_MAX_S = 1.0


def encode_event(event: ChangeEvent, origin: str) -> dict[str, str]:
    return {
        "kind": event.kind,
        "op": event.op,
        "key": event.key,
        "origin": event.origin or origin,
        "data": json.dumps(event.data, separators=(",", ":"), ensure_ascii=False),
    }


def decode_event(entry_id: str, fields: Mapping[str, str]) -> ChangeEvent:
    try:
        data: Any = json.loads(fields.get("data") or "{}")
    except ValueError:
        data = {}
    return ChangeEvent(
        kind=fields.get("kind", ""),
        op=fields.get("op", ""),
        key=fields.get("key", ""),
        origin=fields.get("origin", ""),
        seq=entry_id,
        data=data if isinstance(data, dict) else {},
    )


class StreamFollower:
    """XREAD BLOCK loop from a position fixed when the follower is created.

    Outages are waited out (backoff up to 1 s) and reading resumes after the last id delivered, so
    a Redis restart loses nothing the stream kept. Ends when `aclose()` is called or the store closes.
    """

    def __init__(self, client: Redis, stream: str, start_id: str, store_closed: Callable[[], bool]) -> None:
        self._client = client
        self._stream = stream
        self.last_id = start_id
        self._store_closed = store_closed
        self._buffer: deque[ChangeEvent] = deque()
        self._closed = False

    def __aiter__(self) -> StreamFollower:
        return self

    async def __anext__(self) -> ChangeEvent:
        backoff = _BACKOFF_MIN_S
        failing = False
        while not self._buffer:
            if self._closed or self._store_closed():
                raise StopAsyncIteration
            try:
                reply = await self._client.xread({self._stream: self.last_id}, count=256, block=BLOCK_MS)
            except (RedisError, OSError) as exc:
                if self._closed or self._store_closed():
                    raise StopAsyncIteration from None
                if not failing:
                    log.warning(
                        "change feed %s unreachable (%s); retrying from %s", self._stream, exc, self.last_id
                    )
                    failing = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
                continue
            if failing:
                log.info("change feed %s reachable again; resuming after %s", self._stream, self.last_id)
                failing = False
                backoff = _BACKOFF_MIN_S
            self._take(reply)
        return self._buffer.popleft()

    def _take(self, reply: Any) -> None:
        # RESP2 answers [[stream, entries]], RESP3 {stream: [entries]}.
        streams = reply.items() if isinstance(reply, dict) else (reply or [])
        for _name, entries in streams:
            for entry_id, fields in entries:
                self.last_id = entry_id
                self._buffer.append(decode_event(entry_id, fields))

    async def aclose(self) -> None:
        self._closed = True
