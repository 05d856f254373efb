"""The numbers translation derives from a contract: deadlines, rate limits, circuit breakers.

Kept apart from proto building so each rule is one small, directly testable function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Float products such as 0.07 * 100 land a hair above an integer; without the slack, ceil would
# add a whole request (or millisecond) that no one asked for.
_EPS = 1e-9


def _ceil(x: float) -> int:
    return math.ceil(x - _EPS)


def route_timeout_ms(p99_latency_ms: float) -> int:
    """Whole-request deadline: four times the promised p99, never under 100 ms."""
    return max(_ceil(4 * p99_latency_ms), 100)


def per_try_timeout_ms(p99_latency_ms: float) -> int:
    """One attempt may take twice the promised p99 (never under 50 ms) before a retry."""
    return max(_ceil(2 * p99_latency_ms), 50)


def rate_limit_tokens(rps: float) -> int:
    """Token bucket size and refill per second; at least one so a fractional rps still flows."""
    return max(_ceil(rps), 1)


@dataclass(frozen=True)
class CircuitBreakerSizes:
    max_requests: int
    max_pending: int
    max_retries: int


def circuit_breakers(share_rps: float, expected_p99_ms: float) -> CircuitBreakerSizes:
    """Little's law: in-flight requests = arrival rate * time in system.

    Twice the p99-based concurrency leaves headroom for bursts, with a floor of 16 so a small
    share is not throttled by its own circuit breaker; retries get a fifth of that (at least 3).
    """
    concurrency = max(share_rps, 0.0) * max(expected_p99_ms, 0.0) / 1000.0
    max_requests = max(_ceil(2 * concurrency), 16)
    return CircuitBreakerSizes(
        max_requests=max_requests,
        max_pending=max_requests,
        max_retries=max(_ceil(0.2 * max_requests), 3),
    )


def normalise_weights(weights: list[int]) -> list[int]:
    """Envoy rejects a weighted-cluster route whose weights sum to zero; split evenly instead."""
    if sum(weights) > 0:
        return weights
    return [1] * len(weights)
