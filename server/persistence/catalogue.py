"""The plan catalogue: read from a JSON file and upserted at every start."""

from __future__ import annotations

import json
import pathlib

from server.domain.plans import Tier
from server.persistence.db import database
from server.persistence.models import Plan

REQUIRED = (
    "id",
    "name",
    "tier",
    "monthly_fee_cents",
    "rate_limit_per_minute",
    "included_requests",
    "overage_per_1k_cents",
)


def load(path: pathlib.Path) -> list[dict]:
    """Validated plan rows; a bad catalogue stops start-up with a message naming the problem."""
    data = json.loads(path.read_text())
    currency = data.get("currency", "USD")
    rows = []
    for position, plan in enumerate(data["plans"]):
        missing = [key for key in REQUIRED if key not in plan]
        if missing:
            raise ValueError(f"{path}: plan #{position} lacks {', '.join(missing)}")
        if plan["tier"] not in list(Tier):
            raise ValueError(f"{path}: plan {plan['id']!r} has unknown tier {plan['tier']!r}")
        for key in REQUIRED[3:]:
            if not isinstance(plan[key], int) or plan[key] < 0:
                raise ValueError(f"{path}: plan {plan['id']!r} {key} must be a non-negative integer")
        rows.append(
            {**{key: plan[key] for key in REQUIRED}, "currency": plan.get("currency", currency), "position": position}
        )
    return rows


def seed(rows: list[dict]) -> None:
    """Insert new plans and update changed ones (rows from `load`), in one transaction; running
    twice changes nothing."""
    with database.atomic():
        (
            Plan.insert_many(rows)
            .on_conflict(conflict_target=[Plan.id], preserve=[getattr(Plan, key) for key in rows[0] if key != "id"])
            .execute()
        )
