"""Usage pricing: the overage rule of docs/api.md (Invoices)."""

from __future__ import annotations

from server.domain.money import div_round_half_up


def overage_cents(requests: int, included: int, per_1k_cents: int) -> int:
    """max(0, requests - included) x per_1k_cents / 1000, rounded half-up once."""
    return div_round_half_up(max(0, requests - included) * per_1k_cents, 1000)
