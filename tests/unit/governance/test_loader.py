"""Loading policy files: what an operator sees when a file is good, and where it is wrong when not."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshctl.errors import PolicyError
from meshctl.governance import PolicySet, load_policies

from ._support import REPO, make_provider, make_request

GOOD = """\
name: eu-only
description: EU data stays in the EU
applies_to: |
  "data_class" in contract.labels && contract.labels.data_class == "pii"
effect: require
predicate: provider.region.startsWith("eu")
message: EU only
"""

LIST_FILE = """\
policies:
  - name: no-long
    effect: deny
    predicate: contract.duration_s > 100.0
  - name: big
    effect: warn
    predicate: contract.sla.rps > 1000.0
"""


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def error_of(text: str, filename: str = "bad.yaml") -> PolicyError:
    with pytest.raises(PolicyError) as info:
        PolicySet.from_documents([(filename, text)])
    return info.value


def test_loads_single_and_list_files_sorted_by_file_name(tmp_path: Path) -> None:
    write(tmp_path, "b.yml", LIST_FILE)
    write(tmp_path, "a.yaml", GOOD)
    write(tmp_path, "notes.txt", "not a policy")
    ps = load_policies(tmp_path)
    assert ps.names == ["eu-only", "no-long", "big"]
    listed = {d["name"]: d for d in ps.to_dicts()}
    assert listed["eu-only"]["effect"] == "require"
    assert listed["eu-only"]["predicate"] == 'provider.region.startsWith("eu")'
    assert listed["eu-only"]["source"].endswith("a.yaml:1")
    assert listed["no-long"]["source"].endswith("b.yml:2")
    assert listed["big"]["applies_to"] == "true"  # the default
    assert listed["no-long"]["message"] == "policy no-long (deny)"  # no message, no description


def test_default_policy_files_load_and_are_documented() -> None:
    ps = load_policies(REPO / "policies")
    assert set(ps.names) >= {
        "pii-eu-only",
        "gdpr-compliance",
        "spend-escalation",
        "deny-unbounded-duration",
        "warn-no-availability",
    }
    for d in ps.to_dicts():
        assert len(d["description"]) > 30, d["name"]
        assert d["message"], d["name"]


def test_yaml_syntax_error_names_file_and_line() -> None:
    err = error_of("name: x\neffect: deny\npredicate: [contract\n\nmessage: oops\n")
    assert err.field is not None and err.field.startswith("bad.yaml:")
    assert "YAML syntax error" in err.message
    assert int(err.field.split(":")[1]) in (3, 4, 5)


def test_yaml_syntax_error_exact_line() -> None:
    err = error_of("name: x\neffect: deny\n  bad: indent\n")
    assert err.field == "bad.yaml:3"


def test_bad_cel_syntax_names_the_line_of_the_expression() -> None:
    err = error_of("name: x\neffect: require\napplies_to: 'true'\npredicate: provider.region ==\n")
    assert err.field == "bad.yaml:4"
    assert "CEL syntax error" in err.message


def test_bad_cel_inside_block_scalar_points_at_the_broken_line() -> None:
    text = (
        "name: x\n"
        "effect: require\n"
        "predicate: |\n"
        "  provider.region.startsWith(\"eu\")\n"
        "    && (provider.zone ==\n"
        "    && true\n"
    )
    err = error_of(text)
    assert err.field == "bad.yaml:6"


@pytest.mark.parametrize(
    ("predicate", "needle"),
    [
        ("provider.regoin == 'eu'", "unknown field provider.regoin"),
        ("contract.sla.p99 > 1.0", "unknown field contract.sla.p99"),
        ("contrct.labels.x == 'y'", "undeclared reference to 'contrct'"),
        ("provider.region.beginsWith('eu')", "unknown function 'beginsWith'"),
        ("provider.region", "must give a bool"),
        ("provider.capacity_rps + 'x' > 1.0", "type error"),
        ("provider.zone.name == 'a'", "provider.zone has no fields"),
    ],
)
def test_cel_check_errors_are_caught_at_load(predicate: str, needle: str) -> None:
    err = error_of(f"name: x\neffect: require\n\npredicate: \"{predicate}\"\n")
    assert needle in err.message
    assert err.field == "bad.yaml:4"


def test_provider_is_not_bound_outside_require() -> None:
    err = error_of("name: x\neffect: deny\npredicate: provider.region == 'eu'\n")
    assert "require" in err.message and err.field == "bad.yaml:3"


def test_applies_to_sees_only_the_contract() -> None:
    err = error_of("name: x\neffect: deny\napplies_to: provider.region == 'eu'\n")
    assert "'provider' is not available" in err.message


@pytest.mark.parametrize(
    ("text", "field", "needle"),
    [
        ("effect: deny\n", "bad.yaml:1", "missing required field 'name'"),
        ("name: x\n", "bad.yaml:1", "missing required field 'effect'"),
        ("name: x\neffect: forbid\n", "bad.yaml:2", "unknown effect 'forbid'"),
        ("name: x\neffect: require\n", "bad.yaml:1", "needs a 'predicate'"),
        ("name: x\neffect: deny\nwhen: true\n", "bad.yaml:3", "unknown field 'when'"),
        ("name: x\nname: y\neffect: deny\n", "bad.yaml:2", "duplicate key 'name'"),
        ("name: 'has space'\neffect: deny\n", "bad.yaml:1", "invalid policy name"),
        ("- 1\n- 2\n", "bad.yaml:1", "mapping"),
        ("policies: []\n", "bad.yaml:1", "empty"),
        ("", "bad.yaml:1", "empty policy file"),
        ("policies:\n  - name: a\n    effect: deny\nextra: 1\n", "bad.yaml:4", "unexpected key 'extra'"),
    ],
)
def test_structural_errors(text: str, field: str, needle: str) -> None:
    err = error_of(text)
    assert err.field == field
    assert needle in err.message


def test_duplicate_names_across_files_point_at_the_second(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", GOOD)
    write(tmp_path, "b.yaml", "# comment\n" + GOOD)
    with pytest.raises(PolicyError) as info:
        load_policies(tmp_path)
    assert info.value.field == f"{tmp_path / 'b.yaml'}:2"
    assert "duplicate policy name 'eu-only'" in info.value.message
    assert "a.yaml:1" in info.value.message


def test_failed_reload_leaves_the_previous_set_usable(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", GOOD)
    current = load_policies(tmp_path)
    write(tmp_path, "a.yaml", GOOD.replace('startsWith("eu")', 'startsWith("eu"'))
    with pytest.raises(PolicyError) as info:
        current.reload(tmp_path)
    assert info.value.field == f"{tmp_path / 'a.yaml'}:6"
    # The old set still answers as before.
    verdict = current.evaluate(make_request(labels={"data_class": "pii"}), owner="a", consumer_zone="z")
    assert verdict.allows(make_provider(region="us-east")) == "eu-only"
    assert verdict.allows(make_provider(region="eu-west")) is None


def test_successful_reload_returns_a_new_set(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", GOOD)
    first = load_policies(tmp_path)
    write(tmp_path, "b.yaml", LIST_FILE)
    second = first.reload(tmp_path)
    assert second is not first
    assert first.names == ["eu-only"]
    assert second.names == ["eu-only", "no-long", "big"]
    assert first.digest != second.digest


def test_digest_ignores_file_positions() -> None:
    a = PolicySet.from_documents([("a.yaml", GOOD)])
    b = PolicySet.from_documents([("other.yaml", "\n\n" + GOOD)])
    assert a.digest == b.digest


def test_missing_directory_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError):
        load_policies(tmp_path / "nope")


def test_yaml_bool_applies_to_is_accepted() -> None:
    ps = PolicySet.from_documents([("a.yaml", "name: x\neffect: warn\napplies_to: true\n")])
    verdict = ps.evaluate(make_request(), owner="a", consumer_zone="z")
    assert [w.name for w in verdict.warnings] == ["x"]
