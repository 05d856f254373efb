"""Contract negotiation and lifecycle: admit, counter-offer, renew, expire, revoke, re-solve."""
