"""Property: `Verdict.allows` agrees with a plain-Python reading of the same require predicates.

Predicates come from a small grammar over region and labels; the Python model follows CEL's
three-valued logic (an error is neither true nor false; `false && error` is false, `true || error`
is true) and fail-closed policy semantics (an error excludes the provider). Providers reuse ids
with different content, so a cache keyed on identity instead of content would disagree; and carry
labels no predicate names, so a cache keyed on too little of the content would disagree too.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshctl.governance import PolicySet

from ._grammar import ATOMS, KEYS, REGIONS, VALUES, Labels, Pred, predicates
from ._support import make_provider, make_request

label_values = st.one_of(
    st.sampled_from(VALUES),
    st.lists(st.sampled_from(VALUES), max_size=3, unique=True),
)
providers = st.lists(
    st.tuples(
        st.sampled_from(["p1", "p2", "p3"]),  # few ids: the same id comes back with other content
        st.sampled_from(REGIONS),
        # "idx" is read only by predicates that use the whole label map.
        st.dictionaries(st.sampled_from([*KEYS, "idx"]), label_values, max_size=3),
    ),
    min_size=1,
    max_size=6,
)

PII_ONLY = '"data_class" in contract.labels && contract.labels.data_class == "pii"'


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    preds=st.lists(st.tuples(predicates, st.booleans()), min_size=1, max_size=3),
    pii=st.booleans(),
    provs=providers,
)
def test_allows_agrees_with_python(preds: list[tuple[Pred, bool]], pii: bool,
                                   provs: list[tuple[str, str, Labels]]) -> None:
    docs = []
    for i, (pred, only_pii) in enumerate(preds):
        applies = f"applies_to: {json.dumps(PII_ONLY)}\n" if only_pii else ""
        docs.append((f"{i}.yaml", f"name: r{i}\neffect: require\n{applies}predicate: {json.dumps(pred.cel)}\n"))
    ps = PolicySet.from_documents(docs)
    verdict = ps.evaluate(make_request(labels={"data_class": "pii"} if pii else {}), owner="a",
                          consumer_zone="z")

    def expected(region: str, labels: Labels) -> str | None:
        for i, (pred, only_pii) in enumerate(preds):
            if only_pii and not pii:
                continue
            if pred.model(region, labels) is not True:  # false or error: fail closed
                return f"r{i}"
        return None

    for _round in range(2):  # the second round is served from the cache
        for pid, region, labels in provs:
            provider = make_provider(pid, region=region or "x", labels=labels)
            provider = provider.model_copy(update={"region": region})
            assert verdict.allows(provider) == expected(region, labels), (pid, region, labels)


_SHAPES: list[Any] = [None, "gold", "gdpr", ["gdpr"], ["pci", "gold"], []]
LABEL_SETS = [
    {k: v for k, v in (("tier", t), ("compliance", c), ("idx", "x" if (i + j) % 2 else ["x"])) if v is not None}
    for i, t in enumerate(_SHAPES)
    for j, c in enumerate(_SHAPES)
]


@pytest.mark.parametrize("atom", ATOMS, ids=lambda a: a.cel)
def test_every_atom_against_every_label_shape(atom: Pred) -> None:
    # One provider id seen with every label shape in turn: each answer must come from its own content.
    ps = PolicySet.from_documents([("a.yaml", f"name: r\neffect: require\npredicate: {json.dumps(atom.cel)}\n")])
    verdict = ps.evaluate(make_request(), owner="a", consumer_zone="z")
    for _round in range(2):
        for labels in LABEL_SETS:
            provider = make_provider("p1", region="eu-west", labels=labels)
            want = None if atom.model("eu-west", labels) is True else "r"
            assert verdict.allows(provider) == want, labels
