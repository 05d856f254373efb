"""Property: `Verdict.allows` agrees with a plain-Python reading of the same require predicates.

Predicates come from a small grammar over region and labels; the Python model follows CEL's
three-valued logic (an error is neither true nor false; `false && error` is false, `true || error`
is true) and fail-closed policy semantics (an error excludes the provider). Providers reuse ids
with different content, so a cache keyed on identity instead of content would disagree; and carry
labels no predicate names, so a cache keyed on too little of the content would disagree too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshctl.governance import PolicySet

from ._support import make_provider, make_request


class _Err:
    def __repr__(self) -> str:
        return "ERR"


ERR = _Err()
Tri = Any  # True | False | ERR
Labels = dict[str, Any]


@dataclass(frozen=True)
class Pred:
    cel: str
    model: Callable[[str, Labels], Tri]


def _and(a: Tri, b: Tri) -> Tri:
    if a is False or b is False:
        return False
    return ERR if (a is ERR or b is ERR) else True


def _or(a: Tri, b: Tri) -> Tri:
    if a is True or b is True:
        return True
    return ERR if (a is ERR or b is ERR) else False


def _not(a: Tri) -> Tri:
    return ERR if a is ERR else (not a)


REGIONS = ["eu-west", "eu-central", "us-east", "ap-south", ""]
KEYS = ["tier", "compliance"]
VALUES = ["gold", "gdpr", "pci"]


def _q(s: str) -> str:
    return json.dumps(s)


def region_eq(r: str) -> Pred:
    return Pred(f"provider.region == {_q(r)}", lambda region, labels: region == r)


def region_prefix(p: str) -> Pred:
    return Pred(f"provider.region.startsWith({_q(p)})", lambda region, labels: region.startswith(p))


def has_label(k: str) -> Pred:
    return Pred(f"{_q(k)} in provider.labels", lambda region, labels: k in labels)


def label_eq(k: str, v: str) -> Pred:
    def model(region: str, labels: Labels) -> Tri:
        if k not in labels:
            return False
        return ERR if isinstance(labels[k], list) else labels[k] == v

    return Pred(f"{_q(k)} in provider.labels && provider.labels.{k} == {_q(v)}", model)


def label_contains(k: str, v: str) -> Pred:
    def model(region: str, labels: Labels) -> Tri:
        if k not in labels:
            return False
        val = labels[k]
        return v in val if isinstance(val, list) else val == v

    cel = (f"{_q(k)} in provider.labels && (type(provider.labels.{k}) == list"
           f" ? {_q(v)} in provider.labels.{k} : provider.labels.{k} == {_q(v)})")
    return Pred(cel, model)


def label_in_unguarded(k: str, v: str) -> Pred:
    def model(region: str, labels: Labels) -> Tri:
        if k not in labels or not isinstance(labels[k], list):
            return ERR  # missing key, or `in` on a string
        return v in labels[k]

    return Pred(f"{_q(v)} in provider.labels.{k}", model)


def label_count(n: int) -> Pred:
    return Pred(f"size(provider.labels) > {n}", lambda region, labels: len(labels) > n)


def label_index(k: str, v: str) -> Pred:
    def model(region: str, labels: Labels) -> Tri:
        if k not in labels or isinstance(labels[k], list):
            return ERR
        return labels[k] == v

    return Pred(f"provider.labels[{_q(k)}] == {_q(v)}", model)


atoms = st.one_of(
    st.integers(0, 2).map(label_count),
    st.builds(label_index, st.sampled_from(KEYS), st.sampled_from(VALUES)),
    st.sampled_from(REGIONS).map(region_eq),
    st.sampled_from(["eu", "us", "e", ""]).map(region_prefix),
    st.sampled_from(KEYS).map(has_label),
    st.builds(label_eq, st.sampled_from(KEYS), st.sampled_from(VALUES)),
    st.builds(label_contains, st.sampled_from(KEYS), st.sampled_from(VALUES)),
    st.builds(label_in_unguarded, st.sampled_from(KEYS), st.sampled_from(VALUES)),
)


def _combine(children: st.SearchStrategy[Pred]) -> st.SearchStrategy[Pred]:
    def and_(a: Pred, b: Pred) -> Pred:
        return Pred(f"({a.cel}) && ({b.cel})", lambda r, lb: _and(a.model(r, lb), b.model(r, lb)))

    def or_(a: Pred, b: Pred) -> Pred:
        return Pred(f"({a.cel}) || ({b.cel})", lambda r, lb: _or(a.model(r, lb), b.model(r, lb)))

    def not_(a: Pred) -> Pred:
        return Pred(f"!({a.cel})", lambda r, lb: _not(a.model(r, lb)))

    return st.one_of(st.builds(and_, children, children), st.builds(or_, children, children),
                     st.builds(not_, children))


predicates = st.recursive(atoms, _combine, max_leaves=4)

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


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
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
