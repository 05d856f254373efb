"""Domain types shared by every layer (pydantic v2).

Times are epoch seconds (float) so that snapshots hash and serialise the same everywhere;
rates are requests per second; latencies are milliseconds; prices are per 1,000 requests.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Name = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")]
LabelValue = str | list[str]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Zone(_Model):
    name: Name
    region: Name


class Link(_Model):
    """Latency between two zones; links are undirected."""

    a: Name
    b: Name
    latency_ms: float = Field(ge=0)

    @property
    def key(self) -> tuple[str, str]:
        return (self.a, self.b) if self.a <= self.b else (self.b, self.a)


class TopologyFile(_Model):
    """The file `meshctl serve --topology FILE` loads (YAML)."""

    zones: list[Zone]
    links: list[Link] = []
    # Latency between two services in the same zone; a path of zero would make every
    # same-zone provider look free of network cost.
    intra_zone_latency_ms: float = Field(default=0.5, ge=0)


class Endpoint(_Model):
    address: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    protocol: Literal["http", "http2", "grpc"] = "http"


class ProviderSpec(_Model):
    """What a provider advertises (POST /v1/providers)."""

    id: Name
    capabilities: list[Name] = Field(min_length=1)
    zone: Name
    endpoints: list[Endpoint] = Field(min_length=1)
    labels: dict[str, LabelValue] = {}
    capacity_rps: float = Field(gt=0)
    latency_p99_ms: float = Field(ge=0)
    cost_per_1k: float = Field(ge=0)
    # None: a static provider (no lease). Otherwise heartbeats must arrive within ttl_s.
    ttl_s: float | None = Field(default=None, gt=0)


class Provider(ProviderSpec):
    region: str = ""
    # The identity that registered it; only it (or an operator) may update, heartbeat or remove it.
    owner: str = ""
    registered_at: float = 0.0
    expires_at: float | None = None


class Sla(_Model):
    p99_latency_ms: float = Field(gt=0)
    rps: float = Field(gt=0)
    # e.g. 0.999; met by spreading over independent zones plus failover endpoints.
    availability: float | None = Field(default=None, gt=0, lt=1)


class Constraints(_Model):
    regions: list[Name] = []
    zones: list[Name] = []
    required_labels: dict[str, str] = {}
    excluded_providers: list[Name] = []


class ContractRequest(_Model):
    """What an agent proposes (POST /v1/contracts)."""

    consumer: Name  # the consuming service (Envoy node.cluster)
    consumer_zone: Name | None = None  # defaults to the zone of the consumer's connected proxies
    capability: Name
    sla: Sla
    constraints: Constraints = Constraints()
    max_cost_per_1k: float | None = Field(default=None, ge=0)  # the bid; None = no budget limit
    duration_s: float = Field(default=3600, gt=0)
    labels: dict[str, str] = {}


class ContractState(StrEnum):
    PENDING_APPROVAL = "pending_approval"
    ACTIVE = "active"
    DEGRADED = "degraded"
    EXPIRED = "expired"
    REVOKED = "revoked"
    REJECTED = "rejected"


LIVE_STATES = frozenset({ContractState.ACTIVE, ContractState.DEGRADED})


class Share(_Model):
    """One provider's part of an allocation."""

    provider_id: str
    zone: str
    rps: float
    weight: int = Field(ge=0)  # Envoy weighted-cluster weight; primary weights sum to 100
    expected_p99_ms: float  # network path + provider p99
    cost_per_1k: float
    priority: int = 0  # 0 primary, 1 failover


class Allocation(_Model):
    shares: list[Share]
    failover: list[Share] = []
    rps: float
    expected_p99_ms: float
    cost_per_1k: float  # rps-weighted average price of the primary shares
    config_version: str | None = None
    acked_by: list[str] = []

    @property
    def reservation(self) -> dict[str, float]:
        """Capacity held per provider (failover endpoints hold none until they are promoted)."""
        held: dict[str, float] = {}
        for s in self.shares:
            held[s.provider_id] = held.get(s.provider_id, 0.0) + s.rps
        return held


class Binding(_Model):
    """A constraint that stops the mesh from meeting a request, and the best value it allows."""

    constraint: (
        str  # field path: "sla.rps", "sla.p99_latency_ms", "max_cost_per_1k", "constraints.regions", ...
    )
    reason: str
    best: float | None = None


class CounterOffer(_Model):
    sla: Sla
    max_cost_per_1k: float | None
    binding: list[Binding]
    allocation: Allocation | None = None


class ContractEvent(_Model):
    at: float
    kind: str  # proposed, admitted, counter_offer, rejected, approved, resolved, degraded, expired, revoked, renewed, nack
    detail: str = ""


class Contract(_Model):
    id: str
    owner: str
    request: ContractRequest
    state: ContractState
    allocation: Allocation | None = None
    counter_offer: CounterOffer | None = None
    reasons: list[str] = []
    policies: list[dict[str, object]] = []  # results of the policies evaluated at the last decision
    created_at: float
    updated_at: float
    expires_at: float
    events: list[ContractEvent] = []
    # The agent's Idempotency-Key: a retried proposal (e.g. after a 503) finds this contract
    # instead of reserving capacity twice.
    idempotency_key: str | None = None


class ProposalOutcome(StrEnum):
    ADMITTED = "admitted"
    COUNTER_OFFER = "counter_offer"
    REJECTED = "rejected"
    PENDING_APPROVAL = "pending_approval"


class Decision(_Model):
    outcome: ProposalOutcome
    # The id this proposal was given: the contract's id when one is stored, and the subject of
    # the proposal's audit entry in every case (counter-offers included).
    proposal_id: str = ""
    contract: Contract | None = None
    counter_offer: CounterOffer | None = None
    reasons: list[str] = []
    dry_run: bool = False

    @model_validator(mode="after")
    def _counter_offer_present(self) -> Decision:
        if self.outcome is ProposalOutcome.COUNTER_OFFER and self.counter_offer is None:
            raise ValueError("a counter_offer decision carries the offer")
        return self
