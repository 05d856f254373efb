"""MeshState.residual: what the solver sees as free capacity, per provider."""

from __future__ import annotations

from contracts_helpers import spec

from meshctl.contracts.state import MeshState
from meshctl.model import Provider, Zone


def _state() -> MeshState:
    st = MeshState()
    st.graph.set_zone(Zone(name="z1", region="r"))
    for pid, cap in (("a", 100.0), ("b", 50.0), ("idle", 70.0)):
        st.graph.set_provider(Provider(**spec(pid, "z1", capacity=cap).model_dump(), region="r"))
    return st


def test_residual_counts_what_other_contracts_hold() -> None:
    st = _state()
    st.reservations = {"a": {"c1": 30.0, "c2": 20.0}, "b": {"c1": 50.0}, "gone": {"c3": 5.0}}
    res = st.residual()
    assert res["a"] == 50.0 and res["b"] == 0.0
    assert res["idle"] == 70.0  # nobody holds it: all of it is free
    assert res.get("gone", -1.0) == -1.0  # not in the graph: not a provider at all
    assert sorted(res) == ["a", "b"]  # iteration lists the providers someone holds capacity on
    assert dict(st.residual(exclude="c1")) == {"a": 80.0, "b": 50.0}


def test_residual_never_goes_negative_and_follows_the_live_state() -> None:
    st = _state()
    st.reservations = {"b": {"c1": 80.0}}  # more than b has now (its capacity was lowered)
    res = st.residual()
    assert res["b"] == 0.0
    st.reservations["b"]["c1"] = 10.0
    assert res["b"] == 40.0  # a view, not a copy taken when it was asked for
