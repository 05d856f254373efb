"""Translation per push on one proxy, with and without the memo, beside Snapshot.build of the same
resources (the floor: what every push pays anyway).

Each push replaces one contract (its next version), as an admission or a re-solve does.
Run: .venv/bin/python bench/translate_bench.py
"""

from __future__ import annotations

import statistics
import time

from meshctl.model import Allocation, Contract, ContractRequest, ContractState, Endpoint, Provider, Share, Sla
from meshctl.translate.memo import TranslationMemo
from meshctl.translate.node import NodeView, translate_node
from meshctl.xds.snapshot import Snapshot

NODE = NodeView("fe-1", "frontend", "eu-west-1a", "eu-west")
PUSHES = 30


def providers() -> dict[str, Provider]:
    return {
        f"p{i}": Provider(
            id=f"p{i}",
            capabilities=["graph-analysis"],
            zone=f"eu-west-1{'abc'[i % 3]}",
            region="eu-west",
            endpoints=[Endpoint(address="127.0.0.1", port=9000 + i)],
            capacity_rps=1e6,
            latency_p99_ms=10,
            cost_per_1k=0.1,
        )
        for i in range(6)
    }


def contract(i: int) -> Contract:
    shares = [
        Share(
            provider_id=f"p{(i + k) % 6}",
            zone="eu-west-1a",
            rps=50,
            weight=50,
            expected_p99_ms=12,
            cost_per_1k=0.1,
        )
        for k in range(2)
    ]
    failover = [
        Share(
            provider_id=f"p{(i + 2) % 6}",
            zone="eu-west-1b",
            rps=0,
            weight=0,
            expected_p99_ms=14,
            cost_per_1k=0.1,
            priority=1,
        )
    ]
    return Contract(
        id=f"c-{i:04d}", owner="agent", state=ContractState.ACTIVE, created_at=float(i), updated_at=float(i),
        expires_at=1e12,
        request=ContractRequest(consumer="frontend", capability="graph-analysis", sla=Sla(p99_latency_ms=40, rps=100)),
        allocation=Allocation(shares=shares, failover=failover, rps=100, expected_p99_ms=12, cost_per_1k=0.1),
    )  # fmt: skip


def ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:8.2f}"


def main() -> None:
    provs = providers()
    print(
        f"{'contracts on the proxy':>24} {'resources':>10} {'no memo ms':>11} {'memo ms':>9} {'floor: build ms':>16}"
    )
    for n in (10, 50, 150, 300):
        contracts = [contract(i) for i in range(n)]
        memo = TranslationMemo()
        translate_node(NODE, contracts, provs, memo)
        plain, memoed, floor = [], [], []
        for k in range(PUSHES):
            contracts[k % n] = contracts[k % n].model_copy()  # the next version of one contract
            t0 = time.perf_counter()
            res = translate_node(NODE, contracts, provs)
            t1 = time.perf_counter()
            translate_node(NODE, contracts, provs, memo)
            t2 = time.perf_counter()
            Snapshot.build(res)
            t3 = time.perf_counter()
            plain.append(t1 - t0)
            memoed.append(t2 - t1)
            floor.append(t3 - t2)
        print(f"{n:>24} {len(res):>10} {ms(plain):>11} {ms(memoed):>9} {ms(floor):>16}")
    print("medians over", PUSHES, "pushes; floor = Snapshot.build (copy + hash) of the same resources")


if __name__ == "__main__":
    main()
