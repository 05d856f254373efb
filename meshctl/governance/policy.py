"""Policies, the verdict on one contract, and the immutable set the control plane holds.

Effects:

- ``deny`` / ``escalate`` / ``warn``: the policy fires when ``applies_to`` holds and, if given,
  ``predicate`` holds (both see only ``contract``). deny rejects the contract, escalate holds it for
  an operator's approval, warn admits it with a warning.
- ``require``: when ``applies_to`` holds, every provider that serves the contract must satisfy
  ``predicate`` (which sees ``contract`` and ``provider``); the solver asks ``Verdict.allows``.

An evaluation error counts as the policy applying (fail closed) and is reported as outcome
"error": a broken deny denies, a broken require excludes the providers it cannot judge.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from meshctl.errors import PolicyError, ValidationFailed
from meshctl.governance.cel import Expression, contract_activation, provider_activation, to_cel
from meshctl.model import ContractRequest, Provider


class Effect(StrEnum):
    REQUIRE = "require"
    DENY = "deny"
    ESCALATE = "escalate"
    WARN = "warn"


@dataclass(frozen=True, eq=False)
class Policy:
    name: str
    effect: Effect
    applies_to: Expression
    predicate: Expression | None
    message: str
    description: str = ""
    source: str = ""  # "file:line" of the policy's mapping

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "effect": str(self.effect),
            "applies_to": self.applies_to.source,
            "predicate": self.predicate.source if self.predicate else None,
            "message": self.message,
            "source": self.source,
        }


@dataclass(frozen=True)
class PolicyHit:
    name: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "message": self.message}


# Bounded so a churning fleet of providers cannot grow it forever; clearing is cheap to recover from.
_CACHE_MAX = 100_000


class _PredicateCache:
    """Predicate results keyed by (policy, the contract it reads, the provider content it reads).

    Keys are content, never identity: a provider re-registered with new labels gets a new key;
    and only the content the predicate can see (`Expression.provider_fields`, `label_keys`), so
    providers alike in what matters share one evaluation of slow interpreted CEL.
    """

    def __init__(self) -> None:
        self.results: dict[Hashable, str | None] = {}  # None: satisfied; str: why not (False or error)
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> tuple[bool, str | None]:
        try:
            value = self.results[key]
        except KeyError:
            self.misses += 1
            return False, None
        self.hits += 1
        return True, value

    def put(self, key: Hashable, value: str | None) -> None:
        if len(self.results) >= _CACHE_MAX:
            self.results.clear()
        self.results[key] = value


# Distinct from every label value, so "label absent" never collides with a value.
_ABSENT = object()


def _freeze(value: Any) -> Any:
    # A str and a one-element list are different values to CEL, so they freeze differently.
    return tuple(value) if isinstance(value, list) else value


def _freeze_labels(labels: Mapping[str, Any], keys: frozenset[str] | None) -> tuple[tuple[str, Any], ...]:
    if keys is None:
        return tuple(sorted((k, _freeze(v)) for k, v in labels.items()))
    return tuple((k, _freeze(labels.get(k, _ABSENT))) for k in sorted(keys))


_PROVIDER_FIELDS: dict[str, Any] = {
    "id": lambda p, keys: p.id,
    "zone": lambda p, keys: p.zone,
    "region": lambda p, keys: p.region or "",
    "labels": lambda p, keys: _freeze_labels(p.labels, keys),
    "capabilities": lambda p, keys: tuple(p.capabilities),
    "capacity_rps": lambda p, keys: float(p.capacity_rps),
    "latency_p99_ms": lambda p, keys: float(p.latency_p99_ms),
    "cost_per_1k": lambda p, keys: float(p.cost_per_1k),
}
_ALL_FIELDS = tuple(sorted(_PROVIDER_FIELDS))


def _provider_key(provider: Provider, pred: Expression) -> tuple[Any, ...]:
    """The provider content `pred` can see, and nothing else."""
    if pred.provider_fields is None:
        return tuple(_PROVIDER_FIELDS[n](provider, None) for n in _ALL_FIELDS)
    return tuple(_PROVIDER_FIELDS[n](provider, pred.label_keys) for n in sorted(pred.provider_fields))


@dataclass
class Verdict:
    """What the policies say about one contract."""

    denied: list[PolicyHit] = field(default_factory=list)
    escalated: list[PolicyHit] = field(default_factory=list)
    warnings: list[PolicyHit] = field(default_factory=list)
    requires: list[Policy] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    # provider id -> "<policy>: <error>" for providers excluded because a predicate failed to evaluate.
    provider_errors: dict[str, str] = field(default_factory=dict)
    _contract: Any = field(default=None, repr=False)
    _contract_key: str = field(default="", repr=False)
    _cache: _PredicateCache = field(default_factory=_PredicateCache, repr=False)

    @property
    def decision(self) -> str:
        """"deny", "escalate" or "allow" (require policies then filter providers)."""
        if self.denied:
            return "deny"
        if self.escalated:
            return "escalate"
        return "allow"

    def allows(self, provider: Provider) -> str | None:
        """The name of the first require policy `provider` fails, or None if it may serve."""
        cel_provider = None
        for policy in self.requires:
            pred = policy.predicate
            assert pred is not None  # the loader requires a predicate for require policies
            key = (
                id(policy),
                self._contract_key if "contract" in pred.variables else None,
                _provider_key(provider, pred),
            )
            found, failure = self._cache.get(key)
            if not found:
                if cel_provider is None:
                    cel_provider = to_cel(provider_activation(provider))
                failure = _check_provider(pred, self._contract, cel_provider)
                self._cache.put(key, failure)
            if failure is not None:
                if failure:
                    self.provider_errors[provider.id] = f"{policy.name}: {failure}"
                else:
                    self.provider_errors.pop(provider.id, None)
                return policy.name
        self.provider_errors.pop(provider.id, None)
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "denied": [h.to_dict() for h in self.denied],
            "escalated": [h.to_dict() for h in self.escalated],
            "warnings": [h.to_dict() for h in self.warnings],
            "requires": [p.name for p in self.requires],
            "results": [dict(r) for r in self.results],
        }


def _check_provider(pred: Expression, contract: Any, provider: Any) -> str | None:
    """None when satisfied, "" when not, the error text when it cannot be evaluated (fail closed)."""
    try:
        return None if pred.evaluate({"contract": contract, "provider": provider}) else ""
    except PolicyError as e:
        return e.message or "evaluation error"


class PolicySet:
    """An immutable, ordered set of policies with unique names. Reloading builds a new set."""

    def __init__(self, policies: Sequence[Policy] = ()):
        seen: dict[str, Policy] = {}
        for p in policies:
            if p.name in seen:
                raise PolicyError(
                    f"{p.source}: duplicate policy name {p.name!r} (first defined at {seen[p.name].source})",
                    field=p.source,
                )
            seen[p.name] = p
        self._policies = tuple(policies)
        self._by_name = seen
        self._cache = _PredicateCache()

    # -- loading -------------------------------------------------------------------------------------

    @classmethod
    def from_documents(cls, documents: Iterable[tuple[str, str]]) -> PolicySet:
        """Policies from (filename, YAML text) pairs, e.g. an upload; raises PolicyError."""
        from meshctl.governance.loader import parse_documents

        return cls(parse_documents(documents))

    @classmethod
    def load(cls, directory: str | Path) -> PolicySet:
        from meshctl.governance.loader import load_policies

        return load_policies(directory)

    def reload(self, directory: str | Path) -> PolicySet:
        """A NEW set from `directory`, or PolicyError; this set is untouched either way, so the
        caller keeps it in force when the new files are broken."""
        return PolicySet.load(directory)

    # -- reading -------------------------------------------------------------------------------------

    @property
    def policies(self) -> tuple[Policy, ...]:
        return self._policies

    @property
    def names(self) -> list[str]:
        return [p.name for p in self._policies]

    def get(self, name: str) -> Policy | None:
        return self._by_name.get(name)

    def __len__(self) -> int:
        return len(self._policies)

    def __iter__(self) -> Iterator[Policy]:
        return iter(self._policies)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def to_dicts(self) -> list[dict[str, Any]]:
        return [p.to_dict() for p in self._policies]

    @property
    def digest(self) -> str:
        """sha256 of the policies' content (not their file positions): changes iff behaviour may."""
        content = [{k: v for k, v in d.items() if k != "source"} for d in self.to_dicts()]
        blob = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def cache_stats(self) -> dict[str, int]:
        return {"hits": self._cache.hits, "misses": self._cache.misses, "size": len(self._cache.results)}

    # -- evaluation ----------------------------------------------------------------------------------

    def evaluate(
        self, request: ContractRequest, *, owner: str, consumer_zone: str | None, contract_id: str = ""
    ) -> Verdict:
        doc = contract_activation(request, owner=owner, consumer_zone=consumer_zone, contract_id=contract_id)
        contract = to_cel(doc)
        verdict = Verdict(
            _contract=contract,
            _contract_key=json.dumps(doc, sort_keys=True, separators=(",", ":")),
            _cache=self._cache,
        )
        activation = {"contract": contract}
        for policy in self._policies:
            applies, error = _fires(policy, activation)
            message = policy.message
            if error is not None:
                message = f"{policy.message} (evaluation error: {error}; failing closed)"
            if not applies:
                outcome = "not_applicable"
            elif error is not None:
                outcome = "error"
            else:
                outcome = str(policy.effect)
            verdict.results.append(
                {
                    "policy": policy.name,
                    "effect": str(policy.effect),
                    "applies": applies,
                    "outcome": outcome,
                    "message": message,
                }
            )
            if not applies:
                continue
            hit = PolicyHit(policy.name, message)
            if policy.effect is Effect.DENY:
                verdict.denied.append(hit)
            elif policy.effect is Effect.ESCALATE:
                verdict.escalated.append(hit)
            elif policy.effect is Effect.WARN:
                verdict.warnings.append(hit)
            else:
                verdict.requires.append(policy)
        return verdict

    def test(
        self, sample_contract: Mapping[str, Any], sample_providers: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        """Dry-run the policies on a sample (for `meshctl policy test`).

        `sample_contract` is a ContractRequest as JSON plus optional "owner" and "id"; providers are
        Provider JSON where fields no policy needs (endpoints, capacity, ...) may be left out.
        """
        data = dict(sample_contract)
        owner = str(data.pop("owner", "agent:test"))
        contract_id = str(data.pop("id", ""))
        request = _validate(ContractRequest, data, "contract")
        verdict = self.evaluate(
            request, owner=owner, consumer_zone=request.consumer_zone, contract_id=contract_id
        )
        providers = []
        for i, raw in enumerate(sample_providers):
            provider = _validate(Provider, _provider_defaults(raw, request.capability, i), f"providers[{i}]")
            failed = verdict.allows(provider)
            providers.append(
                {
                    "id": provider.id,
                    "allowed": failed is None,
                    "failed_policy": failed,
                    "error": verdict.provider_errors.get(provider.id),
                }
            )
        return {**verdict.to_dict(), "providers": providers}


def _fires(policy: Policy, activation: Mapping[str, Any]) -> tuple[bool, str | None]:
    """(applies, evaluation error). An error means it applies: fail closed."""
    try:
        if not policy.applies_to.evaluate(activation):
            return False, None
        if policy.effect is not Effect.REQUIRE and policy.predicate is not None:
            return policy.predicate.evaluate(activation), None
        return True, None
    except PolicyError as e:
        return True, e.message


def _provider_defaults(raw: Mapping[str, Any], capability: str, index: int) -> dict[str, Any]:
    filled: dict[str, Any] = {
        "id": f"provider-{index}",
        "capabilities": [capability],
        "zone": "unknown",
        "endpoints": [{"address": "127.0.0.1", "port": 8080}],
        "capacity_rps": 1.0,
        "latency_p99_ms": 0.0,
        "cost_per_1k": 0.0,
    }
    filled.update(raw)
    return filled


def _validate(model: Any, data: Mapping[str, Any], prefix: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        path = ".".join(str(x) for x in (prefix, *err["loc"]))
        raise ValidationFailed(f"{path}: {err['msg']}", field=path) from None
