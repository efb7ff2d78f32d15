"""The plan catalogue: read from a JSON file and upserted at every start."""

from __future__ import annotations

import datetime as dt
import json
import pathlib

from server.domain.plans import Tier, seed_terms
from server.persistence import plan_versions
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
TERMS = ("name", "monthly_fee_cents", "currency", "rate_limit_per_minute", "included_requests", "overage_per_1k_cents")


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


def seed(rows: list[dict], *, now: dt.datetime | None = None) -> None:
    """Seed the plans of `rows` (from `load`), in one transaction: a new plan gets its identity and
    version 1; a plan whose catalogue terms differ from its latest version gets a new version (a
    price is never rewritten under the subscriptions billed on it). Running twice changes nothing."""
    now = now or dt.datetime.now(dt.timezone.utc)
    with database.atomic():
        for row in rows:
            terms = seed_terms(*(row[key] for key in TERMS))
            identity = {"id": row["id"], "tier": row["tier"], "position": row["position"]}
            (
                Plan.insert({**identity, **{field.name: value for field, value in plan_versions.mirror(terms).items()}})
                .on_conflict(conflict_target=[Plan.id], preserve=[Plan.tier, Plan.position])
                .execute()
            )
            latest = plan_versions.latest(row["id"])
            if latest is None or plan_versions.terms_of(latest) != terms:
                plan_versions.publish(row["id"], latest.version + 1 if latest else 1, terms, now=now)
