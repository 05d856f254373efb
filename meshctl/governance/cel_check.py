"""Static checks on parsed CEL (cel-python has no type checker), and what an expression reads.

Checks: every identifier is a bound variable, a macro variable (``exists(v, ...)``) or a CEL type
name; functions and methods exist; every dotted path into ``contract``/``provider`` exists in the
activation schema (label maps are free-form).

Reads: which provider fields and label keys a predicate can see, so the predicate cache can key on
just those (two providers in one region share the result of ``provider.region.startsWith("eu")``).
Anything the analysis cannot pin down widens to "all of it", never narrower.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import lark
from celpy.evaluation import base_functions

from meshctl.errors import PolicyError

# Schema leaves: _LEAF is a scalar or list (no field selection below it); _MAP is a free-form map.
_LEAF = "leaf"
_MAP = "map"
Schema = Mapping[str, Any]

CONTRACT_SCHEMA: Schema = {
    "id": _LEAF,
    "owner": _LEAF,
    "consumer": _LEAF,
    "consumer_zone": _LEAF,
    "capability": _LEAF,
    "sla": {"p99_latency_ms": _LEAF, "rps": _LEAF, "availability": _LEAF},
    "constraints": {
        "regions": _LEAF,
        "zones": _LEAF,
        "required_labels": _MAP,
        "excluded_providers": _LEAF,
    },
    "max_cost_per_1k": _LEAF,
    "duration_s": _LEAF,
    "labels": _MAP,
}

PROVIDER_SCHEMA: Schema = {
    "id": _LEAF,
    "zone": _LEAF,
    "region": _LEAF,
    "labels": _MAP,
    "capabilities": _LEAF,
    "capacity_rps": _LEAF,
    "latency_p99_ms": _LEAF,
    "cost_per_1k": _LEAF,
}

SCHEMAS: Mapping[str, Schema] = {"contract": CONTRACT_SCHEMA, "provider": PROVIDER_SCHEMA}

_MACROS = frozenset({"exists", "all", "exists_one", "map", "filter"})
_TYPE_NAMES = frozenset(
    {"bool", "bytes", "double", "duration", "int", "list", "map", "null_type", "string", "timestamp",
     "uint", "type", "google"}
)
_FUNCTIONS = frozenset(k for k in base_functions if k[0].isalpha()) | {"has"}
_METHODS = _FUNCTIONS | _MACROS
# Wrappers a sub-expression climbs through on its way up to the operator that uses it.
_WRAPPERS = frozenset({"member", "unary", "multiplication", "addition", "primary"})
_SIMPLE_STRING = re.compile(r"""^(?:"([^"\\]*)"|'([^'\\]*)')$""")


@dataclass(frozen=True)
class Where:
    """Where an expression sits in its file, to turn CEL positions into ``file:line``."""

    filename: str
    line: int  # 1-based line of the expression's first character
    exact_lines: bool = True  # False for folded YAML scalars, whose line breaks are gone

    def at(self, cel_line: int | None) -> str:
        offset = (cel_line - 1) if (cel_line and self.exact_lines) else 0
        return f"{self.filename}:{self.line + offset}"


@dataclass(frozen=True)
class Reads:
    variables: frozenset[str]  # activation variables used
    provider_fields: frozenset[str] | None  # None: `provider` is used as a whole
    label_keys: frozenset[str] | None  # provider label keys read; None: the label map as a whole


def check(ast: lark.Tree, variables: frozenset[str], where: Where) -> Reads:
    """Raise PolicyError(field="file:line") on the first problem; else say what the expression reads."""
    bound = _macro_variables(ast)
    used: set[str] = set()
    for node in ast.iter_subtrees_topdown():
        kind = node.data
        if kind == "ident":
            name = str(node.children[0])
            if name in SCHEMAS and name not in bound:
                if name not in variables:
                    raise _fail(where, node, f"'{name}' is not available here (only {_names(variables)})")
                used.add(name)
            elif name not in bound and name not in _TYPE_NAMES:
                raise _fail(where, node, f"undeclared reference to '{name}' (use {_names(variables)})")
        elif kind in ("ident_arg", "dot_ident_arg") and str(node.children[0]) not in _FUNCTIONS:
            raise _fail(where, node.children[0], f"unknown function '{node.children[0]}'")
        elif kind == "member_dot_arg" and str(node.children[1]) not in _METHODS:
            raise _fail(where, node.children[1], f"unknown function '{node.children[1]}'")
        elif kind == "dot_ident":
            raise _fail(where, node, f"unsupported qualified name '.{node.children[0]}'")
        elif kind == "member_object":
            raise _fail(where, node, "message construction is not supported in policies")
        elif kind == "member_dot":
            path = _path(node)
            if path and path[0] in SCHEMAS and path[0] not in bound:
                _check_path(path, node, where)
    fields, labels = _provider_reads(ast, bound)
    return Reads(frozenset(used), fields, labels)


def _macro_variables(ast: lark.Tree) -> set[str]:
    bound: set[str] = set()
    for node in ast.iter_subtrees():
        if node.data == "member_dot_arg" and str(node.children[1]) in _MACROS and len(node.children) > 2:
            name = _ident_of(node.children[2].children[0])
            if name:
                bound.add(name)
    return bound


def _ident_of(node: Any) -> str | None:
    """The name if `node` (an expr or below) is nothing but a bare identifier."""
    while isinstance(node, lark.Tree) and len(node.children) == 1:
        if node.data == "ident":
            return str(node.children[0])
        node = node.children[0]
    return None


def _path(node: Any) -> list[str] | None:
    """`a.b.c` as ["a", "b", "c"]; None when the chain does not start at a plain identifier."""
    if not isinstance(node, lark.Tree):
        return None
    if node.data == "member_dot":
        base = _path(node.children[0])
        return None if base is None else [*base, str(node.children[1])]
    if node.data in ("member", "primary") and len(node.children) == 1:
        return _path(node.children[0])
    if node.data == "ident":
        return [str(node.children[0])]
    return None


def _line(node: Any) -> int | None:
    if isinstance(node, lark.Token):
        return node.line
    meta = getattr(node, "meta", None)
    return getattr(meta, "line", None) if meta is not None and not meta.empty else None


def _fail(where: Where, node: Any, message: str) -> PolicyError:
    pos = where.at(_line(node))
    return PolicyError(f"{pos}: {message}", field=pos)


def _names(variables: frozenset[str]) -> str:
    return " and ".join(sorted(variables))


def _check_path(path: list[str], node: Any, where: Where) -> None:
    schema: Any = SCHEMAS[path[0]]
    for i, name in enumerate(path[1:], start=1):
        if schema == _MAP:
            return
        prefix = ".".join(path[:i])
        if schema == _LEAF:
            raise _fail(where, node, f"{prefix} has no fields (tried .{name})")
        if name not in schema:
            raise _fail(where, node, f"unknown field {prefix}.{name} (known: {', '.join(sorted(schema))})")
        schema = schema[name]


# -- what a predicate reads of the provider -------------------------------------------------------------


def _provider_reads(ast: lark.Tree, bound: set[str]) -> tuple[frozenset[str] | None, frozenset[str] | None]:
    if "provider" in bound:
        return None, None
    parents: dict[int, lark.Tree] = {
        id(child): node for node in ast.iter_subtrees() for child in node.children if isinstance(child, lark.Tree)
    }
    fields: set[str] = set()
    keys: set[str] = set()
    whole_labels = False
    for node in ast.iter_subtrees():
        if node.data != "ident" or str(node.children[0]) != "provider":
            continue
        dot = _selected_by(node, parents)
        if dot is None:  # `provider` used as a value: it may read anything
            return None, None
        field = str(dot.children[1])
        fields.add(field)
        if field == "labels":
            key = _label_key(dot, parents)
            if key is None:
                whole_labels = True
            else:
                keys.add(key)
    return frozenset(fields), (None if whole_labels else frozenset(keys))


def _selected_by(ident: lark.Tree, parents: dict[int, lark.Tree]) -> lark.Tree | None:
    """The member_dot selecting a field of `ident` (ident <- primary <- member <- member_dot)."""
    primary = parents.get(id(ident))
    member = parents.get(id(primary)) if primary is not None else None
    dot = parents.get(id(member)) if member is not None else None
    if dot is not None and dot.data == "member_dot" and dot.children[0] is member:
        return dot
    return None


def _label_key(labels_dot: lark.Tree, parents: dict[int, lark.Tree]) -> str | None:
    """The key of `provider.labels.KEY`, `has(provider.labels.KEY)` or `"KEY" in provider.labels`;
    None for any other use of the label map."""
    member = parents.get(id(labels_dot))
    outer = parents.get(id(member)) if member is not None else None
    if outer is not None and outer.data == "member_dot" and outer.children[0] is member:
        return str(outer.children[1])
    node: lark.Tree = labels_dot
    up = parents.get(id(node))
    while up is not None and up.data in _WRAPPERS and len(up.children) == 1:
        node, up = up, parents.get(id(up))
    if (
        up is not None
        and up.data == "relation"
        and len(up.children) == 2
        and up.children[1] is node
        and isinstance(up.children[0], lark.Tree)
        and up.children[0].data == "relation_in"
    ):
        return _string_literal(up.children[0].children[0])
    return None


def _string_literal(node: Any) -> str | None:
    while isinstance(node, lark.Tree) and len(node.children) == 1:
        node = node.children[0]
    if isinstance(node, lark.Token) and node.type == "STRING_LIT":
        m = _SIMPLE_STRING.match(str(node))
        if m:
            return m.group(1) if m.group(1) is not None else m.group(2)
    return None
