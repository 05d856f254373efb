"""Policy files: YAML with CEL, validated on load with errors that point at `file:line`.

A file holds one policy mapping or ``policies: [ ... ]``. Fields::

    name:        unique across every loaded file ([A-Za-z0-9][A-Za-z0-9._:-]*)
    description: what the policy is for (free text)
    applies_to:  CEL over `contract` (default "true")
    effect:      require | deny | escalate | warn
    predicate:   CEL over `contract` (and `provider` for require); required for require
    message:     shown to agents (default: the description)

The YAML is composed into nodes (not loaded straight to dicts) so that every error can name the
line of the offending value, and duplicate keys are caught instead of silently overwritten.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import yaml
from yaml.constructor import SafeConstructor

from meshctl.errors import PolicyError
from meshctl.governance.cel import Where, compile_expression
from meshctl.governance.policy import Effect, Policy, PolicySet

_FIELDS = ("name", "description", "applies_to", "effect", "predicate", "message")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
_CONTRACT_ONLY = frozenset({"contract"})
_CONTRACT_AND_PROVIDER = frozenset({"contract", "provider"})


def load_policies(directory: str | Path) -> PolicySet:
    """Every *.yaml / *.yml in `directory` (not recursive), in file-name order."""
    root = Path(directory)
    if not root.is_dir():
        raise PolicyError(f"policy directory {str(root)!r} does not exist", field=str(root))
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml"))
    documents = []
    for path in files:
        try:
            documents.append((str(path), path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as e:
            raise PolicyError(f"{path}:1: cannot read policy file: {e}", field=f"{path}:1") from None
    return PolicySet(parse_documents(documents))


def parse_documents(documents: Iterable[tuple[str, str]]) -> list[Policy]:
    """Policies of every (filename, text) in order; names must be unique across all of them."""
    policies: list[Policy] = []
    for filename, text in documents:
        policies.extend(parse_document(filename, text))
    PolicySet(policies)  # raises on duplicate names, pointing at the second definition
    return policies


def parse_document(filename: str, text: str) -> list[Policy]:
    root = _compose(filename, text)
    if root is None:
        raise PolicyError(f"{filename}:1: empty policy file", field=f"{filename}:1")
    if not isinstance(root, yaml.MappingNode):
        raise _error(filename, root, "a policy file is a mapping (one policy) or `policies: [...]`")
    entries = _mapping(filename, root)
    if "policies" in entries:
        if len(entries) > 1:
            extra = next(k for k in entries if k != "policies")
            raise _error(filename, entries[extra][0], f"unexpected key {extra!r} next to `policies`")
        _, items = entries["policies"]
        if not isinstance(items, yaml.SequenceNode):
            raise _error(filename, items, "`policies` must be a list of policy mappings")
        if not items.value:
            raise _error(filename, items, "`policies` is empty")
        return [_policy(filename, item) for item in items.value]
    return [_policy(filename, root)]


def _compose(filename: str, text: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = " ".join(x for x in (e.context, e.problem) if x)
        pos = f"{filename}:{line}"
        raise PolicyError(f"{pos}: YAML syntax error: {problem}", field=pos) from None
    except yaml.YAMLError as e:
        raise PolicyError(f"{filename}:1: YAML error: {e}", field=f"{filename}:1") from None


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _error(filename: str, node: yaml.Node, message: str) -> PolicyError:
    pos = f"{filename}:{_line(node)}"
    return PolicyError(f"{pos}: {message}", field=pos)


def _mapping(filename: str, node: yaml.MappingNode) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag != "tag:yaml.org,2002:str":
            raise _error(filename, key, "keys must be plain strings")
        if key.value in out:
            raise _error(filename, key, f"duplicate key {key.value!r}")
        out[key.value] = (key, value)
    return out


def _scalar(filename: str, node: yaml.Node, what: str) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise _error(filename, node, f"{what} must be a string")
    value = SafeConstructor().construct_object(node)
    if isinstance(value, bool):  # `applies_to: true` is YAML's bool, and also valid CEL
        return "true" if value else "false"
    if not isinstance(value, str):
        raise _error(filename, node, f"{what} must be a string, not {type(value).__name__}")
    return value


def _optional_text(filename: str, entries: dict[str, tuple[yaml.Node, yaml.Node]], key: str) -> str:
    return _scalar(filename, entries[key][1], key) if key in entries else ""


def _where(filename: str, node: yaml.Node) -> Where:
    style = getattr(node, "style", None)
    if style in ("|", ">"):
        # A block scalar's text starts on the line after its indicator; only `|` keeps line breaks.
        return Where(filename, _line(node) + 1, exact_lines=style == "|")
    return Where(filename, _line(node), exact_lines=node.start_mark.line == node.end_mark.line)


def _policy(filename: str, node: yaml.Node) -> Policy:
    if not isinstance(node, yaml.MappingNode):
        raise _error(filename, node, "a policy must be a mapping")
    entries = _mapping(filename, node)
    for key, (knode, _) in entries.items():
        if key not in _FIELDS:
            raise _error(filename, knode, f"unknown field {key!r} (fields: {', '.join(_FIELDS)})")
    for required in ("name", "effect"):
        if required not in entries:
            raise _error(filename, node, f"policy is missing required field {required!r}")

    name_node = entries["name"][1]
    name = _scalar(filename, name_node, "name")
    if not _NAME.match(name) or len(name) > 128:
        raise _error(filename, name_node, f"invalid policy name {name!r} (letters, digits, . _ : -)")

    effect_node = entries["effect"][1]
    effect_text = _scalar(filename, effect_node, "effect")
    try:
        effect = Effect(effect_text)
    except ValueError:
        allowed = " | ".join(e.value for e in Effect)
        raise _error(filename, effect_node, f"unknown effect {effect_text!r} (expected {allowed})") from None

    description = _optional_text(filename, entries, "description")
    message = _optional_text(filename, entries, "message")

    if "applies_to" in entries:
        at_node = entries["applies_to"][1]
        text = _scalar(filename, at_node, "applies_to")
        applies_to = compile_expression(text, variables=_CONTRACT_ONLY, where=_where(filename, at_node))
    else:
        applies_to = compile_expression("true", variables=_CONTRACT_ONLY, where=Where(filename, _line(node)))

    predicate = None
    if "predicate" in entries:
        pnode = entries["predicate"][1]
        variables = _CONTRACT_AND_PROVIDER if effect is Effect.REQUIRE else _CONTRACT_ONLY
        try:
            predicate = compile_expression(
                _scalar(filename, pnode, "predicate"), variables=variables, where=_where(filename, pnode)
            )
        except PolicyError as e:
            if effect is not Effect.REQUIRE and "'provider'" in e.message:
                e.message += "; `provider` is bound only in the predicate of a require policy"
                e.args = (e.message,)
            raise
    elif effect is Effect.REQUIRE:
        raise _error(filename, node, f"policy {name!r}: effect 'require' needs a 'predicate'")

    return Policy(
        name=name,
        effect=effect,
        applies_to=applies_to,
        predicate=predicate,
        message=message or description or f"policy {name} ({effect})",
        description=description,
        source=f"{filename}:{_line(node)}",
    )

