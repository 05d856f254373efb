"""The Redis store writes each history snapshot as exactly the JSON a plain dump would give, while
re-encoding only the list items that are new objects since the previous snapshot."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from meshctl.store.redis import _dumps, _PartsEncoder

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
snapshots = st.dictionaries(st.text(max_size=8), values, max_size=6)


@given(st.lists(snapshots, min_size=1, max_size=4))
def test_encoding_equals_a_plain_dump(snaps: list[dict[str, Any]]) -> None:
    encoder = _PartsEncoder()
    for snap in snaps:
        text = encoder.encode(snap)
        assert text == _dumps(snap)
        assert json.loads(text) == json.loads(_dumps(snap))


def test_unchanged_items_are_reused_and_replaced_ones_re_encoded() -> None:
    encoder = _PartsEncoder()
    kept, old = {"id": "c1", "state": "active"}, {"id": "c2", "state": "active"}
    encoder.encode({"version": 1, "contracts": [kept, old]})
    new = {"id": "c2", "state": "revoked"}  # a changed contract is a new object
    text = encoder.encode({"version": 2, "contracts": [kept, new]})
    assert json.loads(text)["contracts"] == [kept, new]
    # Only objects of the last snapshot stay cached: the cache is the size of the mesh.
    assert {id(kept), id(new)} == set(encoder._texts)
