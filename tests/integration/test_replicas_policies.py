"""Two control planes on one Redis: a policy upload on one is enforced by the other, and a
provider's new endpoint reaches the other replica's graph (that proxies' config follows from the
graph is covered by tests/integration/test_replicas.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import RedisServer, wait_for

from meshctl.controlplane import ControlPlane
from meshctl.governance.policy import PolicySet
from meshctl.model import ContractRequest, Endpoint, ProviderSpec, Sla
from meshctl.store.redis import RedisStore
from meshctl.topology.loader import load_topology

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]

DENY_BIG = """
name: deny-big
description: nothing above 100 rps during the freeze
effect: deny
applies_to: contract.sla.rps > 100.0
message: change freeze
"""


async def test_policy_upload_and_provider_change_reach_the_other_replica(redis_server: RedisServer) -> None:
    topology = load_topology(REPO / "deploy" / "topology.yaml")
    planes = []
    for name in ("a", "b"):
        store = await RedisStore.connect(redis_server.url, origin=name, prefix="pol")
        plane = ControlPlane(
            store, policies=PolicySet.load(REPO / "policies"), topology=topology, tick_s=3600
        )
        await plane.start(serve_xds=False)
        planes.append(plane)
    a, b = planes
    try:
        await a.reload_policies("operator:alice", [("freeze.yaml", DENY_BIG)])
        await wait_for(lambda: b.policy_set.names == ["deny-big"], 5, "replica b to enforce the upload")
        big = ContractRequest(
            consumer="svc", consumer_zone="eu-west-1a", capability="x", sla=Sla(p99_latency_ms=50, rps=500)
        )
        verdict = b.policy_set.evaluate(big, owner="agent", consumer_zone="eu-west-1a")
        assert [h.name for h in verdict.denied] == ["deny-big"]

        spec = ProviderSpec(
            id="p1", capabilities=["x"], zone="eu-west-1a", endpoints=[Endpoint(address="127.0.0.1", port=9001)],
            capacity_rps=100, latency_p99_ms=5, cost_per_1k=0.1,
        )  # fmt: skip
        await a.put_provider(spec)
        await wait_for(lambda: b.state.graph.provider("p1") is not None, 5, "replica b to see the provider")
        moved = spec.model_copy(update={"endpoints": [Endpoint(address="127.0.0.1", port=9002)]})
        await a.put_provider(moved)
        await wait_for(
            lambda: (p := b.state.graph.provider("p1")) is not None and p.endpoints[0].port == 9002,
            5, "replica b to see the new endpoint",
        )  # fmt: skip
    finally:
        for plane in planes:
            await plane.stop()
            await plane.store.close()
