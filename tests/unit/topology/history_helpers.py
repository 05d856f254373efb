"""A control plane on a fake clock that lives through a short story, for the history tests.

t=1000 topology loaded (eu-a, eu-b, one link)           v1
t=1001 static provider `p-static` (eu-a, 100 rps)        v2
t=1002 ephemeral provider `p-eph` (eu-b, 100 rps, ttl 5) v3   lease ends at 1007
t=1003 contract for 150 rps: split over both providers  v4
t=1008 the lease has lapsed: `p-eph` leaves              v5
        the contract is re-solved onto what is left     v6   (degraded: 100 of 150 rps)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from meshctl.controlplane import ControlPlane
from meshctl.governance.policy import PolicySet
from meshctl.model import ContractRequest, Endpoint, Link, ProviderSpec, Sla, TopologyFile, Zone
from meshctl.store.memory import MemoryStore


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Story:
    plane: ControlPlane
    clock: FakeClock
    contract_id: str = ""
    versions: dict[str, int] = field(default_factory=dict)


TOPOLOGY = TopologyFile(
    zones=[Zone(name="eu-a", region="eu"), Zone(name="eu-b", region="eu")],
    links=[Link(a="eu-a", b="eu-b", latency_ms=2.0)],
)


def spec(pid: str, zone: str, ttl_s: float | None = None, port: int = 9000) -> ProviderSpec:
    return ProviderSpec(
        id=pid,
        capabilities=["infer"],
        zone=zone,
        endpoints=[Endpoint(address="127.0.0.1", port=port)],
        capacity_rps=100,
        latency_p99_ms=5,
        cost_per_1k=1.0,
        ttl_s=ttl_s,
    )


def request(rps: float = 150, consumer: str = "checkout") -> ContractRequest:
    return ContractRequest(
        consumer=consumer,
        consumer_zone="eu-a",
        capability="infer",
        sla=Sla(p99_latency_ms=50, rps=rps),
        duration_s=3600,
    )


async def plane_on_fake_clock(history_limit: int = 10_000) -> tuple[ControlPlane, FakeClock]:
    clock = FakeClock()
    plane = ControlPlane(
        MemoryStore(history_limit=history_limit), policies=PolicySet(), topology=TOPOLOGY, clock=clock
    )
    await plane.load()
    await plane.apply_topology(TOPOLOGY)
    return plane, clock


async def ephemeral_story() -> Story:
    plane, clock = await plane_on_fake_clock()
    s = Story(plane, clock)
    s.versions["topology"] = plane.history_version
    clock.now = 1001.0
    await plane.put_provider(spec("p-static", "eu-a"))
    s.versions["static"] = plane.history_version
    clock.now = 1002.0
    await plane.put_provider(spec("p-eph", "eu-b", ttl_s=5, port=9001))
    s.versions["ephemeral"] = plane.history_version
    clock.now = 1003.0
    decision = await plane.negotiator.propose("agent-1", request())
    assert decision.contract is not None and decision.contract.state == "active", decision
    s.contract_id = decision.contract.id
    s.versions["admitted"] = plane.history_version
    clock.now = 1008.0
    assert await plane.lifecycle.lapse_leases() == ["p-eph"]
    s.versions["resolved"] = plane.history_version
    return s
