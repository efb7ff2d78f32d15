"""Plan tiers: the closed set a catalogue plan's tier is taken from."""

from __future__ import annotations

import enum


class Tier(enum.StrEnum):
    """A plan's stored tier (the proto's Tier, by name); each has its rate limit."""

    FREE = "FREE"
    STANDARD = "STANDARD"
    PREMIUM = "PREMIUM"
    ENTERPRISE = "ENTERPRISE"
