"""A small grammar of require predicates over provider region and labels, each with a plain-Python
model that follows CEL's three-valued logic (an error is neither true nor false; `false && error`
is false, `true || error` is true). Policies fail closed: only a model result of True allows.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st


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


# Every atom of the grammar, drawn uniformly (one_of over strategies would favour a few).
ATOMS = [
    *(region_eq(r) for r in REGIONS),
    *(region_prefix(p) for p in ["eu", "us", "e", ""]),
    *(label_count(n) for n in range(3)),
    *(f(k, v) for f in (label_eq, label_contains, label_in_unguarded, label_index) for k in KEYS for v in VALUES),
    *(has_label(k) for k in KEYS),
]
atoms = st.sampled_from(ATOMS)


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
