"""How the Redis store keeps topology history: each part of a snapshot once, content-addressed.

A snapshot is the whole mesh, but a change replaces only a few of its parts. So every item of a
top-level list (a zone, link, provider or contract row), and every large top-level dict (the
consumers map), is a *part* stored once in the hash `{p}:history:parts` under its id: the first 96
bits of the SHA-256 of its JSON text, in URL-safe base64 (16 characters). A history entry keeps:

  h  the snapshot's JSON with each such value replaced by its part ids, concatenated in order
  k  JSON {key: "l" (a list of parts) | "p" (one part)} for the keys replaced
  v  the version handed out by the store

so a change costs its changed parts plus 16 bytes per item. Entries written before this encoding
carry the whole JSON in `s` and are still read.

The id hashes the exact text stored, so a part rebuilds the item exactly; 96 bits keep the odds
of two parts colliding below 1e-15 even after 10^7 distinct parts.

Everything here is pure; the I/O is in `redis.py` and the script in `redis_scripts.py`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

ID_LEN = 16
# A top-level dict at least this long (as JSON) is one part: the consumers map rarely changes and
# would otherwise be copied into every entry. Smaller ones (a change's `detail`) stay inline, since
# parts outlive the entries that are trimmed.
WHOLE_PART_MIN = 256
KNOWN_PARTS_MAX = 50_000


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def part_id(text: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()[:12]).decode()


def split_ids(ids: str) -> list[str]:
    return [ids[i : i + ID_LEN] for i in range(0, len(ids), ID_LEN)]


@dataclass(frozen=True)
class Encoded:
    """One snapshot as stored: the entry's `h` and `k` fields and every part it references."""

    head: str
    kinds: str
    parts: dict[str, str]  # part id -> JSON text


class HistoryEncoder:
    """Encodes snapshots, hashing only list items that are new objects since the previous one.

    Snapshots share their unchanged parts (`topology.history.DumpCache`: same object while the
    zone, link, provider or contract is unchanged) and are read-only, so an item's identity says
    its text, hence its id, is unchanged: a change costs the encoding of what changed.
    """

    def __init__(self) -> None:
        self._seen: dict[int, tuple[object, str, str]] = {}
        self._used: dict[int, tuple[object, str, str]] = {}

    def encode(self, snapshot: Mapping[Any, Any]) -> Encoded:
        head: dict[Any, Any] = {}
        kinds: dict[Any, str] = {}
        parts: dict[str, str] = {}
        for key, value in snapshot.items():
            if isinstance(value, list):
                head[key] = "".join(self._part(item, parts) for item in value)
                kinds[key] = "l"
            elif isinstance(value, dict) and len(text := dumps(value)) >= WHOLE_PART_MIN:
                pid = part_id(text)
                parts[pid] = text
                head[key] = pid
                kinds[key] = "p"
            else:
                head[key] = value
        self._seen, self._used = self._used, {}
        return Encoded(dumps(head), dumps(kinds), parts)

    def _part(self, item: object, parts: dict[str, str]) -> str:
        hit = self._seen.get(id(item))
        if hit is None or hit[0] is not item:
            text = dumps(item)
            hit = (item, text, part_id(text))
        self._used[id(item)] = hit
        parts[hit[2]] = hit[1]
        return hit[2]


class KnownParts:
    """Ids of parts this process saw stored, newest use last, at most `limit` of them.

    Only a hint to skip re-sending a part: the append script checks every id it is told is known
    and asks for the missing ones, so a forgotten id costs one resend and a wrong one a retry.
    """

    def __init__(self, limit: int = KNOWN_PARTS_MAX) -> None:
        self.limit = limit
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, pid: object) -> bool:
        return pid in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, ids: Iterable[str]) -> None:
        for pid in ids:
            self._ids[pid] = None
            self._ids.move_to_end(pid)
        while len(self._ids) > self.limit:
            self._ids.popitem(last=False)

    def discard(self, ids: Iterable[str]) -> None:
        for pid in ids:
            self._ids.pop(pid, None)


def referenced(fields: Mapping[str, str]) -> Iterator[str]:
    """Part ids a stored entry needs (none for an entry in the old whole-JSON form)."""
    if "s" in fields:
        return
    head = json.loads(fields["h"])
    for key, kind in json.loads(fields["k"]).items():
        yield from split_ids(head[key]) if kind == "l" else (head[key],)


def rebuild(version: int, fields: Mapping[str, str], parts: Mapping[str, Any]) -> dict[str, Any] | None:
    """The snapshot a stored entry holds, from parsed parts (shared, not copied: snapshots are
    read-only), with the store's `version`; None if a part it needs is not in `parts`."""
    if "s" in fields:
        snap: dict[str, Any] = json.loads(fields["s"])
    else:
        snap = json.loads(fields["h"])
        try:
            for key, kind in json.loads(fields["k"]).items():
                snap[key] = [parts[p] for p in split_ids(snap[key])] if kind == "l" else parts[snap[key]]
        except KeyError:
            return None
    if version:  # 0: written before versions were handed out by the store
        snap["version"] = version
    return snap
