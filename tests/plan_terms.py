"""The default catalogue's pricing as plain values, for the pure billing tests, and its tier
limits as the catalogue file sets them."""

from __future__ import annotations

import dataclasses

from server.config import DEFAULT_CATALOGUE
from server.domain.plans import Tier
from server.persistence import catalogue


@dataclasses.dataclass(frozen=True)
class P:
    id: str
    name: str
    tier: str
    monthly_fee_cents: int
    included_requests: int
    overage_per_1k_cents: int


FREE = P("free", "Free", "FREE", 0, 10_000, 0)
STANDARD = P("standard", "Standard", "STANDARD", 2900, 100_000, 50)
PREMIUM = P("premium", "Premium", "PREMIUM", 9900, 1_000_000, 30)
ENTERPRISE = P("enterprise", "Enterprise", "ENTERPRISE", 49900, 10_000_000, 10)
PLANS = [FREE, STANDARD, PREMIUM, ENTERPRISE]

# Each tier's limit per rolling minute, read from the catalogue (its one source).
TIER_LIMITS = {Tier(row["tier"]): row["plan"]["rate_limit_per_minute"] for row in catalogue.load(DEFAULT_CATALOGUE)}
