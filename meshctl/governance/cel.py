"""CEL for governance policies: compile once, check statically, evaluate to a bool.

cel-python has no type checker, so a typo such as ``contract.sla.p99`` would only surface at the
first contract it meets, and fail closed there. Policies are therefore checked on load:

- every identifier is a known variable (``contract``; ``provider`` where bound), a macro variable
  (``exists(v, ...)``) or a CEL type name; functions and methods are known ones;
- every dotted path into ``contract``/``provider`` exists in the activation schema below (label
  maps are free-form);
- a probe evaluation over a fully populated sample must not hit a type error and must give a bool.

The activation (what policies see). Numbers are CEL doubles. Missing optional values:

| value                        | when unset   | why                                               |
| ---------------------------- | ------------ | ------------------------------------------------- |
| ``contract.max_cost_per_1k`` | ``null``     | no budget is not the same as a budget of zero     |
| ``contract.sla.availability``| ``0.0``      | no target orders below every real target          |
| ``contract.consumer_zone``   | ``""``       |                                                   |
| ``contract.id``              | ``""``       | not assigned yet (dry runs, first proposal)       |
| ``provider.region``          | ``""``       | zone not in the topology                          |

``==``/``!=`` are null-safe and compare numbers by value (``rps == 10`` is true for 10.0), as CEL
wrapper types and heterogeneous equality do; cel-python alone raises "no such overload" for both.
``x in "string"`` is an error (CEL defines ``in`` on lists and maps; cel-python would test
characters). Labels may be strings or lists: test with ``type(v) == list ? ... : ...``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import celpy
import lark
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError, base_functions, bool_eq, bool_ne, operator_in

from meshctl.errors import PolicyError
from meshctl.model import ContractRequest, Provider

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


# -- activations ----------------------------------------------------------------------------------


def contract_activation(
    request: ContractRequest, *, owner: str, consumer_zone: str | None, contract_id: str = ""
) -> dict[str, Any]:
    """The JSON view of a contract that policies see as ``contract``."""
    c = request.constraints
    return {
        "id": contract_id,
        "owner": owner,
        "consumer": request.consumer,
        "consumer_zone": consumer_zone or request.consumer_zone or "",
        "capability": request.capability,
        "sla": {
            "p99_latency_ms": float(request.sla.p99_latency_ms),
            "rps": float(request.sla.rps),
            "availability": float(request.sla.availability or 0.0),
        },
        "constraints": {
            "regions": list(c.regions),
            "zones": list(c.zones),
            "required_labels": dict(c.required_labels),
            "excluded_providers": list(c.excluded_providers),
        },
        "max_cost_per_1k": None if request.max_cost_per_1k is None else float(request.max_cost_per_1k),
        "duration_s": float(request.duration_s),
        "labels": dict(request.labels),
    }


def provider_activation(provider: Provider) -> dict[str, Any]:
    """The JSON view of a provider that policies see as ``provider``."""
    return {
        "id": provider.id,
        "zone": provider.zone,
        "region": provider.region or "",
        "labels": {k: list(v) if isinstance(v, list) else v for k, v in provider.labels.items()},
        "capabilities": list(provider.capabilities),
        "capacity_rps": float(provider.capacity_rps),
        "latency_p99_ms": float(provider.latency_p99_ms),
        "cost_per_1k": float(provider.cost_per_1k),
    }


def to_cel(document: Any) -> celtypes.Value:
    return json_to_cel(document)


# A fully populated sample: a type error in the probe is a real one, not an unset optional value.
_PROBE_CONTRACT: dict[str, Any] = {
    "id": "c-probe", "owner": "agent", "consumer": "svc", "consumer_zone": "zone-a", "capability": "cap",
    "sla": {"p99_latency_ms": 100.0, "rps": 10.0, "availability": 0.99},
    "constraints": {"regions": ["region"], "zones": ["zone-a"], "required_labels": {},
                    "excluded_providers": []},
    "max_cost_per_1k": 1.0, "duration_s": 3600.0, "labels": {},
}
_PROBE_PROVIDER: dict[str, Any] = {
    "id": "p-probe", "zone": "zone-a", "region": "region", "labels": {}, "capabilities": ["cap"],
    "capacity_rps": 100.0, "latency_p99_ms": 10.0, "cost_per_1k": 1.0,
}
_PROBE = {"contract": to_cel(_PROBE_CONTRACT), "provider": to_cel(_PROBE_PROVIDER)}


# -- equality ---------------------------------------------------------------------------------------


def _is_number(v: Any) -> bool:
    return isinstance(v, celtypes.IntType | celtypes.UintType | celtypes.DoubleType) and not isinstance(
        v, celtypes.BoolType
    )


def _eq(a: Any, b: Any) -> Any:
    if isinstance(a, CELEvalError):
        return a
    if isinstance(b, CELEvalError):
        return b
    if a is None or b is None:
        return celtypes.BoolType(a is None and b is None)
    if _is_number(a) and _is_number(b):
        return celtypes.BoolType(float(a) == float(b))
    return bool_eq(a, b)


def _ne(a: Any, b: Any) -> Any:
    if isinstance(a, CELEvalError):
        return a
    if isinstance(b, CELEvalError):
        return b
    if a is None or b is None or (_is_number(a) and _is_number(b)):
        r = _eq(a, b)
        return celtypes.BoolType(not r)
    return bool_ne(a, b)


def _in(item: Any, container: Any) -> Any:
    # cel-python tests membership in a string character by character ("gold" in "gold" is false);
    # CEL defines `in` for lists and maps only, so say so instead of answering wrongly.
    if isinstance(container, str) and not isinstance(item, CELEvalError):
        return CELEvalError("no such overload: 'in' needs a list or map, got a string", TypeError, ())
    return operator_in(item, container)


_OVERRIDES: dict[str, Callable[..., Any]] = {"_==_": _eq, "_!=_": _ne, "_in_": _in}
_ENV = celpy.Environment()


# -- compilation ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Where:
    """Where an expression sits in its file, to turn CEL positions into ``file:line``."""

    filename: str
    line: int  # 1-based line of the expression's first character
    exact_lines: bool = True  # False for folded YAML scalars, whose line breaks are gone

    def at(self, cel_line: int | None) -> str:
        offset = (cel_line - 1) if (cel_line and self.exact_lines) else 0
        return f"{self.filename}:{self.line + offset}"


@dataclass(frozen=True, eq=False)
class Expression:
    """A compiled, checked CEL expression that evaluates to a bool."""

    source: str
    variables: frozenset[str]  # the activation variables it reads
    # Top-level provider fields it reads; None when it uses `provider` as a whole.
    provider_fields: frozenset[str] | None
    _program: Any

    def evaluate(self, activation: Mapping[str, celtypes.Value]) -> bool:
        """Evaluate; raises PolicyError with a short message on an evaluation error or a non-bool."""
        try:
            value = self._program.evaluate(activation)
        except CELEvalError as e:
            raise PolicyError(short_error(e)) from None
        except Exception as e:  # cel-python raises plain Python errors on some malformed data
            raise PolicyError(f"{type(e).__name__}: {e}") from None
        if isinstance(value, CELEvalError):
            raise PolicyError(short_error(value))
        if not _is_bool(value):
            raise PolicyError(f"expression gave {_type_name(value)}, not a bool")
        return bool(value)


def _is_bool(value: Any) -> bool:
    # BoolType subclasses int, not bool; has() returns a plain bool.
    return isinstance(value, bool | celtypes.BoolType)


def _type_name(value: Any) -> str:
    return type(value).__name__.removesuffix("Type").lower() if value is not None else "null"


_UNDECLARED = re.compile(r"undeclared reference to '([^']*)'")


def short_error(e: CELEvalError) -> str:
    """cel-python embeds the whole activation in some messages; keep the part a reader needs."""
    msg = str(e.args[0]) if e.args else "evaluation error"
    m = _UNDECLARED.search(msg)
    if m:
        return f"undeclared reference to '{m.group(1)}'"
    if len(e.args) > 2 and e.args[2] and msg == "no such overload":
        msg = f"no such overload: {e.args[2][0]}"
    msg = _CLASS.sub(lambda m: _cel_type(m.group(1)), msg)
    msg = _RULE.sub(lambda m: _OPERATORS.get(m.group(1), m.group(1)), msg)
    return msg[:300]


_CLASS = re.compile(r"<class '(?:[\w.]*\.)?(\w+)'>")
_RULE = re.compile(r"Token\('RULE', '(\w+)'\)")
_OPERATORS = {
    "relation_lt": "'<'", "relation_le": "'<='", "relation_gt": "'>'", "relation_ge": "'>='",
    "relation_eq": "'=='", "relation_ne": "'!='", "relation_in": "'in'", "addition_add": "'+'",
    "addition_sub": "'-'", "multiplication_mul": "'*'", "multiplication_div": "'/'",
    "multiplication_mod": "'%'",
}


def _cel_type(python_name: str) -> str:
    return "null" if python_name == "NoneType" else python_name.removesuffix("Type").lower()


def compile_expression(text: str, *, variables: frozenset[str], where: Where) -> Expression:
    """Parse, check and compile; raises PolicyError(field="file:line") on any problem."""
    if not text.strip():
        raise PolicyError(f"{where.at(None)}: empty CEL expression", field=where.at(None))
    try:
        ast = _ENV.compile(text)
    except CELParseError as e:
        pos = where.at(e.line)
        first = str(e.args[0]).strip().splitlines()[0] if e.args else ""
        col = f", column {e.column}" if e.column else ""
        raise PolicyError(f"{pos}: CEL syntax error{col}: {first!r}", field=pos) from None
    used, provider_fields = _check(ast, variables, where)
    program = _ENV.program(ast, functions=_OVERRIDES)
    expr = Expression(text, frozenset(used), provider_fields, program)
    _probe(expr, where)
    return expr


def _probe(expr: Expression, where: Where) -> None:
    try:
        value = expr._program.evaluate(_PROBE)
    except CELEvalError as e:
        value = e
    except Exception:  # a runtime problem of the sample, not of the expression
        return
    pos = where.at(None)
    if isinstance(value, CELEvalError):
        # Missing label keys and the like are data-dependent; only a type error is always wrong.
        if len(value.args) > 1 and value.args[1] is TypeError:
            pos = where.at(value.line)
            raise PolicyError(f"{pos}: CEL type error: {short_error(value)}", field=pos)
        return
    if not _is_bool(value):
        raise PolicyError(f"{pos}: CEL expression must give a bool, it gives {_type_name(value)}", field=pos)


# -- static checks ------------------------------------------------------------------------------------


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


def _check_path(path: list[str], node: Any, where: Where) -> None:
    schema: Any = SCHEMAS[path[0]]
    for i, name in enumerate(path[1:], start=1):
        if schema == _MAP:
            return
        if schema == _LEAF or name not in schema:
            prefix = ".".join(path[:i])
            if schema == _LEAF:
                raise _fail(where, node, f"{prefix} has no fields (tried .{name})")
            known = ", ".join(sorted(schema))
            raise _fail(where, node, f"unknown field {prefix}.{name} (known: {known})")
        schema = schema[name]


def _check(ast: lark.Tree, variables: frozenset[str], where: Where) -> tuple[set[str], frozenset[str] | None]:
    bound: set[str] = set()
    for node in ast.iter_subtrees():
        if node.data == "member_dot_arg" and str(node.children[1]) in _MACROS and len(node.children) > 2:
            name = _ident_of(node.children[2].children[0])
            if name:
                bound.add(name)

    used: set[str] = set()

    def visit(node: lark.Tree, parent: lark.Tree | None) -> None:
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
        elif kind == "member_dot" and (parent is None or parent.data != "member_dot"):
            path = _path(node)
            if path and path[0] in SCHEMAS and path[0] not in bound:
                _check_path(path, node, where)
        for child in node.children:
            if isinstance(child, lark.Tree):
                visit(child, node)

    visit(ast, None)
    return used, _provider_fields(ast, bound)


def _provider_fields(ast: lark.Tree, bound: set[str]) -> frozenset[str] | None:
    """The top-level provider fields read; None when `provider` is also used as a whole value."""
    if "provider" in bound:
        return None
    fields: set[str] = set()
    as_base = 0
    for node in ast.iter_subtrees():
        if node.data == "member_dot" and _path(node.children[0]) == ["provider"]:
            as_base += 1
            fields.add(str(node.children[1]))
    mentions = sum(
        1 for node in ast.iter_subtrees() if node.data == "ident" and str(node.children[0]) == "provider"
    )
    return frozenset(fields) if mentions == as_base else None


def _names(variables: frozenset[str]) -> str:
    return " and ".join(sorted(variables))
