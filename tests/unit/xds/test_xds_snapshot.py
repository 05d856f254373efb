from __future__ import annotations

import pytest
import xds_test_resources as R
from envoy.config.cluster.v3 import cluster_pb2
from google.protobuf import any_pb2, struct_pb2

from meshctl.errors import InconsistentSnapshot, ValidationFailed
from meshctl.xds import CLUSTER, ENDPOINT, LISTENER, ROUTE, Snapshot, resource_hash, resource_name
from meshctl.xds.resources import listener_route_names, route_cluster_names


def test_versions_are_content_hashes_independent_of_order() -> None:
    resources = R.mesh({"a": 1, "b": 3})
    one = Snapshot.build(resources)
    two = Snapshot.build(list(reversed(resources)))
    again = R.snapshot({"a": 1, "b": 3})  # rebuilt from fresh messages, as a restarted control plane would
    assert one.versions() == two.versions() == again.versions()
    assert one == again
    assert set(one.resources(CLUSTER)) == {"a", "b"}
    assert set(one.resources(ENDPOINT)) == {"a", "b"}
    assert one.resource_versions(CLUSTER)["a"] == resource_hash(R.cluster("a"))


def test_changing_one_resource_changes_only_its_type_and_hash() -> None:
    base = R.snapshot({"a": 1, "b": 3})
    changed = R.snapshot({"a": 1, "b": 4})  # only the route weights differ
    assert changed.version(ROUTE) != base.version(ROUTE)
    for t in (CLUSTER, ENDPOINT, LISTENER):
        assert changed.version(t) == base.version(t)
        assert changed.resource_versions(t) == base.resource_versions(t)


def test_hash_ignores_map_insertion_order() -> None:
    c1 = R.cluster("a")
    c2 = R.cluster("a")
    for key in ("x", "y"):
        c1.typed_extension_protocol_options[key].CopyFrom(any_pb2.Any(type_url=key))
    for key in ("y", "x"):
        c2.typed_extension_protocol_options[key].CopyFrom(any_pb2.Any(type_url=key))
    meta1, meta2 = struct_pb2.Struct(), struct_pb2.Struct()
    meta1.update({"k1": 1, "k2": 2})
    meta2.update({"k2": 2, "k1": 1})
    c1.metadata.filter_metadata["m"].CopyFrom(meta1)
    c2.metadata.filter_metadata["m"].CopyFrom(meta2)
    assert resource_hash(c1) == resource_hash(c2)
    assert len(resource_hash(c1)) == 16


def test_resource_names() -> None:
    assert resource_name(R.cla("svc-a")) == "svc-a"
    assert resource_name(R.cluster("c")) == "c"
    with pytest.raises(ValidationFailed):
        resource_name(cluster_pb2.Cluster())


def test_snapshot_is_immune_to_later_mutation_of_inputs() -> None:
    c = R.cluster("a")
    snap = Snapshot.build([c, R.cla("a")])
    before = snap.version(CLUSTER)
    c.connect_timeout.seconds = 99
    assert snap.version(CLUSTER) == before
    assert snap.resources(CLUSTER)["a"].connect_timeout.seconds == 0


def test_empty_type_has_a_constant_version() -> None:
    assert Snapshot.empty().version(ROUTE) == Snapshot.build([R.static_cluster("s")]).version(ROUTE)


def test_duplicate_names_rejected() -> None:
    with pytest.raises(InconsistentSnapshot, match="duplicate"):
        Snapshot.build([R.cluster("a"), R.cluster("a", connect_timeout_ms=1)])


def test_consistent_snapshot_passes() -> None:
    R.snapshot(["a", "b"]).consistent()
    # Non-EDS clusters need no ClusterLoadAssignment.
    Snapshot.build([R.static_cluster("s")]).consistent()
    # service_name, not the cluster name, is what EDS fetches.
    Snapshot.build([R.cluster("a", service_name="svc-a"), R.cla("svc-a")]).consistent()


def test_dangling_eds_reference_rejected() -> None:
    snap = Snapshot.build([R.cluster("a"), R.cluster("b", service_name="svc-b"), R.cla("a"), R.cla("b")])
    with pytest.raises(InconsistentSnapshot) as err:
        snap.consistent()
    assert err.value.details["missing_endpoints"] == ["svc-b"]
    assert err.value.code == "inconsistent_snapshot"


def test_dangling_rds_reference_rejected() -> None:
    snap = Snapshot.build([R.listener("l1", "r1"), R.api_listener("l2", "r2"), R.route("r1", ["a"])])
    with pytest.raises(InconsistentSnapshot, match="r2") as err:
        snap.consistent()
    assert err.value.details["missing_routes"] == ["r2"]


def test_reference_helpers() -> None:
    assert listener_route_names(R.listener("l", "rc")) == {"rc"}
    assert listener_route_names(R.api_listener("l", "grpc-rc")) == {"grpc-rc"}
    assert route_cluster_names(R.route("r", {"a": 1, "b": 2})) == {"a", "b"}
    assert route_cluster_names(R.route("r", ["only"])) == {"only"}


def test_changes_since_matches_a_full_comparison() -> None:
    old = Snapshot.build([R.static_cluster(f"c{i}") for i in range(2000)])
    new_resources = [R.static_cluster(f"c{i}", port=10 if i % 500 == 0 else 9) for i in range(1, 2000)]
    new = Snapshot.build([*new_resources, R.static_cluster("extra")])
    quick = new.changes_since(old, CLUSTER)
    assert quick is not None
    changed, removed = quick
    old_v, new_v = old.resource_versions(CLUSTER), new.resource_versions(CLUSTER)
    assert sorted(changed) == sorted(n for n, h in new_v.items() if old_v.get(n) != h)
    assert sorted(removed) == ["c0"]
    # Small types are not bucketed: callers fall back to comparing directly.
    assert R.snapshot(["a"]).changes_since(R.snapshot(["b"]), CLUSTER) is None
