"""The translation memo changes nothing but speed: same output as a fresh translation, rebuilt
exactly when a contract or a provider it uses is a new object."""

from __future__ import annotations

from google.protobuf.json_format import MessageToDict
from translate_scenarios import contract, mesh_providers, share, weighted_contract

from meshctl.translate.memo import TranslationMemo
from meshctl.translate.node import NodeView, translate_node

NODE = NodeView("fe-1", "frontend", "eu-west-1a", "eu-west")


def _dump(resources: list[object]) -> list[dict[str, object]]:
    return [MessageToDict(m) for m in resources]  # type: ignore[arg-type]


def test_memoised_output_equals_a_fresh_translation_across_changes() -> None:
    memo = TranslationMemo()
    providers = mesh_providers()
    contracts = [
        weighted_contract(),
        contract("ct-b", created_at=50.0, shares=[share("p-b", "eu-west-1b", 5, 100, 30)]),
    ]
    assert _dump(translate_node(NODE, contracts, providers, memo)) == _dump(
        translate_node(NODE, contracts, providers)
    )
    built = memo.misses
    # Same objects again: nothing is rebuilt.
    again = translate_node(NODE, contracts, providers, memo)
    assert memo.misses == built and _dump(again) == _dump(translate_node(NODE, contracts, providers))
    # A provider moves its endpoint (a new object): the contracts using it are rebuilt, correctly.
    moved = dict(providers)
    ep = providers["p-b"].endpoints[0].model_copy(update={"port": 9999})
    moved["p-b"] = providers["p-b"].model_copy(update={"endpoints": [ep]})
    fresh = _dump(translate_node(NODE, contracts, moved))
    assert _dump(translate_node(NODE, contracts, moved, memo)) == fresh
    assert memo.misses > built
    assert any(
        lb["endpoint"]["address"]["socketAddress"].get("portValue") == 9999
        for r in fresh
        for group in r.get("endpoints", [])  # type: ignore[union-attr]
        for lb in group["lbEndpoints"]
    )
    # A contract replaced by its next version (new allocation) is rebuilt too.
    changed = [
        contracts[0],
        contract("ct-b", created_at=50.0, shares=[share("p-a", "eu-west-1a", 5, 100, 30)]),
    ]
    assert _dump(translate_node(NODE, changed, moved, memo)) == _dump(translate_node(NODE, changed, moved))
