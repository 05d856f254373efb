"""CEL for governance policies: compile once, check statically, evaluate to a bool.

cel-python has no type checker, so a typo such as ``contract.sla.p99`` would only surface at the
first contract it meets, and fail closed there. Policies are therefore checked on load: names,
functions and field paths statically (`cel_check`), then a probe evaluation over a fully
populated sample must not hit a type error and must give a bool.

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
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError, bool_eq, bool_ne, operator_in

from meshctl.errors import PolicyError
from meshctl.governance.cel_check import Where, check
from meshctl.model import ContractRequest, Provider

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


@dataclass(frozen=True, eq=False)
class Expression:
    """A compiled, checked CEL expression that evaluates to a bool."""

    source: str
    variables: frozenset[str]  # the activation variables it reads
    # Top-level provider fields it reads; None when it uses `provider` as a whole.
    provider_fields: frozenset[str] | None
    # Provider label keys it reads; None when it uses the label map as a whole.
    label_keys: frozenset[str] | None
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
    reads = check(ast, variables, where)
    program = _ENV.program(ast, functions=_OVERRIDES)
    expr = Expression(text, reads.variables, reads.provider_fields, reads.label_keys, program)
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
        # Missing label keys and the like are data-dependent; only a type error is always wrong,
        # and not one about combining such errors (`error && error` is a TypeError in cel-python).
        if len(value.args) > 1 and value.args[1] is TypeError and "CELEvalError" not in str(value.args[0]):
            pos = where.at(value.line)
            raise PolicyError(f"{pos}: CEL type error: {short_error(value)}", field=pos)
        return
    if not _is_bool(value):
        raise PolicyError(f"{pos}: CEL expression must give a bool, it gives {_type_name(value)}", field=pos)

