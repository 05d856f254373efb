"""The Redis store keeps each history part once under its content address: an entry rebuilds
exactly the snapshot that was appended, and a change re-encodes only the items that changed."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from meshctl.store.redis_history import (
    ID_LEN,
    WHOLE_PART_MIN,
    Encoded,
    HistoryEncoder,
    KnownParts,
    dumps,
    part_id,
    rebuild,
    referenced,
    split_ids,
)

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
snapshots = st.dictionaries(st.text(max_size=8), values, max_size=6)


def _stored(enc: Encoded, store: dict[str, Any]) -> dict[str, str]:
    """What Redis would hold: the entry's fields, and the parts (parsed) in `store`."""
    for pid, text in enc.parts.items():
        assert pid == part_id(text) and len(pid) == ID_LEN
        store.setdefault(pid, json.loads(text))
    return {"h": enc.head, "k": enc.kinds}


@given(st.lists(snapshots, min_size=1, max_size=4))
def test_entries_rebuild_exactly_what_was_appended(snaps: list[dict[str, Any]]) -> None:
    encoder, parts = HistoryEncoder(), {}
    for snap in snaps:
        fields = _stored(encoder.encode(snap), parts)
        assert set(referenced(fields)) <= parts.keys()
        rebuilt = rebuild(0, fields, parts)
        assert rebuilt == json.loads(dumps(snap))
        assert dumps(rebuilt) == dumps(snap)  # same text, key order included


def test_the_store_version_replaces_the_snapshots_own() -> None:
    fields = _stored(HistoryEncoder().encode({"version": 3, "cause": "x", "zones": []}), parts := {})
    assert rebuild(41, fields, parts) == {"version": 41, "cause": "x", "zones": []}
    assert rebuild(0, fields, parts) == {"version": 3, "cause": "x", "zones": []}


def test_unchanged_items_keep_their_part_and_a_change_adds_one_part() -> None:
    encoder = HistoryEncoder()
    kept, old = {"id": "c1", "state": "active"}, {"id": "c2", "state": "active"}
    first = encoder.encode({"version": 1, "contracts": [kept, old]})
    new = {"id": "c2", "state": "revoked"}  # a changed contract is a new object
    second = encoder.encode({"version": 2, "contracts": [kept, new]})
    assert second.parts.keys() - first.parts.keys() == {part_id(dumps(new))}
    assert json.loads(second.head)["contracts"] == part_id(dumps(kept)) + part_id(dumps(new))
    # Only objects of the last snapshot stay cached: the cache is the size of the mesh.
    assert {id(kept), id(new)} == set(encoder._seen)
    # Equal content is one part whatever object (or replica) wrote it.
    third = HistoryEncoder().encode({"contracts": [dict(kept), dict(kept)]})
    assert split_ids(json.loads(third.head)["contracts"]) == [part_id(dumps(kept))] * 2


def test_a_large_map_is_one_part_and_small_values_stay_in_the_entry() -> None:
    consumers = {f"consumer-{i:04d}": "zone-1" for i in range(20)}
    detail = {"contract": "c1"}
    enc = HistoryEncoder().encode({"at": 1.5, "detail": detail, "consumers": consumers})
    head = json.loads(enc.head)
    assert len(dumps(consumers)) >= WHOLE_PART_MIN
    assert head == {"at": 1.5, "detail": detail, "consumers": part_id(dumps(consumers))}
    assert json.loads(enc.kinds) == {"consumers": "p"}
    assert enc.parts == {part_id(dumps(consumers)): dumps(consumers)}


def test_entries_in_the_old_whole_json_form_are_still_read() -> None:
    fields = {"s": dumps({"version": 1, "contracts": [{"id": "c1"}]}), "v": "7"}
    assert list(referenced(fields)) == []
    assert rebuild(7, fields, {}) == {"version": 7, "contracts": [{"id": "c1"}]}


def test_an_entry_whose_part_is_gone_rebuilds_to_none() -> None:
    parts: dict[str, Any] = {}
    fields = _stored(HistoryEncoder().encode({"zones": [{"name": "z1"}, {"name": "z2"}]}), parts)
    del parts[part_id(dumps({"name": "z2"}))]
    assert rebuild(1, fields, parts) is None


def test_known_parts_forget_the_least_recently_used_first() -> None:
    known = KnownParts(limit=3)
    known.add(["a", "b", "c"])
    known.add(["a"])  # used again: now the newest
    known.add(["d"])
    assert [p for p in "abcd" if p in known] == ["a", "c", "d"]
    known.discard(["c", "zz"])
    assert len(known) == 2 and "c" not in known
