"""Golden files: the full resource set a node receives, per scenario.

Regenerate after an intended change with `MESHCTL_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/translate`
and review the diff of the golden files like code.
"""

from __future__ import annotations

import difflib
import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from translate_scenarios import contract, mesh_providers, share, weighted_contract

from meshctl.model import Contract, ContractState, Provider
from meshctl.translate import NodeView, check_consistent, to_json, translate_node

GOLDEN = Path(__file__).parent / "golden"


def _two_contracts_one_capability() -> list[Contract]:
    return [
        contract(
            "ct-new",
            capability="gpu-inference",
            p99=200,
            rps=40,
            created_at=1_700_000_200.0,
            shares=[share("p-gpu2", "eu-west-1b", 40, 100, 150)],
        ),
        contract(
            "ct-old",
            capability="gpu-inference",
            p99=20,
            rps=10.5,
            created_at=1_700_000_100.0,
            shares=[share("p-gpu1", "eu-west-1a", 7, 70, 15), share("p-gpu2", "eu-west-1b", 3.5, 30, 18)],
        ),
    ]


def _proxyless() -> list[Contract]:
    return [
        contract(
            "ct-grpc",
            capability="grpc-echo",
            consumer="grpc-client",
            p99=30,
            rps=200,
            shares=[share("p-grpc", "eu-west-1a", 200, 100, 25)],
            failover=[share("p-grpc-fo", "eu-west-1b", 0, 0, 28, priority=1)],
        )
    ]


def _degraded() -> list[Contract]:
    return [
        contract(
            "ct-degraded",
            p99=50,
            rps=100,
            alloc_rps=60,
            state=ContractState.DEGRADED,
            shares=[share("p-a", "eu-west-1a", 60, 100, 40)],
        )
    ]


def _everything() -> list[Contract]:
    return [weighted_contract(), *_two_contracts_one_capability(), *_degraded(), *_proxyless()]


SCENARIOS: dict[str, tuple[NodeView, Callable[[], list[Contract]]]] = {
    "baseline": (NodeView("frontend-1", "frontend", listener_port=15001), list),
    "weighted_failover": (
        NodeView("frontend-1", "frontend", zone="eu-west-1a"),
        lambda: [weighted_contract()],
    ),
    "header_routing": (
        NodeView("frontend-1", "frontend", listener_port=16001),
        _two_contracts_one_capability,
    ),
    "proxyless": (NodeView("grpc-client-1", "grpc-client", proxyless=True), _proxyless),
    "degraded": (NodeView("frontend-1", "frontend"), _degraded),
    # Plenty of live contracts in the mesh, none for this service: it gets the baseline only.
    "unnamed_node": (NodeView("billing-1", "billing"), _everything),
}


def _check_golden(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.json"
    if os.environ.get("MESHCTL_UPDATE_GOLDEN") == "1":
        path.write_text(text)
        return
    if not path.exists():
        pytest.fail(f"missing golden file {path}; run with MESHCTL_UPDATE_GOLDEN=1 to create it")
    expected = path.read_text()
    if text != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                text.splitlines(keepends=True),
                fromfile=f"golden/{name}.json",
                tofile="translated",
            )
        )
        pytest.fail(f"translation differs from golden/{name}.json:\n{diff}")


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_matches_golden(scenario: str) -> None:
    node, contracts = SCENARIOS[scenario]
    resources = translate_node(node, contracts(), mesh_providers())
    check_consistent(resources)
    _check_golden(scenario, to_json(resources))


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_output_is_byte_identical_whatever_the_input_order(scenario: str) -> None:
    node, contracts = SCENARIOS[scenario]
    cs = contracts()
    providers: dict[str, Provider] = mesh_providers()
    first = [m.SerializeToString(deterministic=True) for m in translate_node(node, cs, providers)]
    rng = random.Random(7)
    for _ in range(5):
        shuffled = cs[:]
        rng.shuffle(shuffled)
        items = list(providers.items())
        rng.shuffle(items)
        again = translate_node(node, shuffled, dict(items))
        assert [m.SerializeToString(deterministic=True) for m in again] == first


def test_golden_dir_has_no_stale_files() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.json")) == sorted(SCENARIOS)
