"""Plan versions in the database: terms to rows and back, the latest version of a plan, and
publishing one (the version row and the plan's denormalized latest figures, in the caller's
transaction)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

import peewee as pw

from server.domain import rating
from server.domain.plans import (
    Billing,
    PlanTerms,
    charge_document,
    charge_from_document,
    route_cost_document,
    route_cost_from_document,
    validate_terms,
)
from server.persistence import read_models  # it imports this module: read at call time
from server.persistence.models import Meter, Plan, PlanVersion, Subscription


def _json(documents: list) -> str:
    return json.dumps(documents, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def terms_of(row: PlanVersion) -> PlanTerms:
    """The terms a version row holds."""
    return PlanTerms(
        name=row.name,
        monthly_fee_cents=row.monthly_fee_cents,
        currency=row.currency,
        rate_limit_per_minute=row.rate_limit_per_minute,
        trial_days=row.trial_days,
        billing=Billing(row.billing),
        charges=tuple(charge_from_document(d) for d in json.loads(row.charges)),
        route_costs=tuple(route_cost_from_document(d) for d in json.loads(row.route_costs)),
    )


def checked_terms(raw: Mapping[str, Any]) -> PlanTerms:
    """A plan version as an operator sends it (API or catalogue file), checked as a whole against
    the meters as they are now (domain/plans.py validate_terms)."""
    meters = {row.id: row for row in Meter.select()}
    usable = {meter_id for meter_id, row in meters.items() if row.archived_at is None}
    return validate_terms(raw, {key: read_models.meter_definition(row) for key, row in meters.items()}, usable)


def latest(plan_id: str) -> PlanVersion | None:
    return PlanVersion.select().where(PlanVersion.plan == plan_id).order_by(PlanVersion.version.desc()).first()


def find(plan_id: str, version: int) -> PlanVersion | None:
    return PlanVersion.get_or_none((PlanVersion.plan == plan_id) & (PlanVersion.version == version))


def pinned(subscription: Subscription) -> PlanVersion:
    """The version the subscription is billed on now (every subscription has one: the migration
    pinned the older ones to version 1)."""
    return PlanVersion.get(
        (PlanVersion.plan == subscription.plan_id) & (PlanVersion.version == subscription.plan_version)
    )


def latest_of(plan_ids: list[str]) -> dict[str, PlanVersion]:
    """The latest version of each plan, in one query."""
    newest = (
        PlanVersion.select(PlanVersion.plan, pw.fn.MAX(PlanVersion.version).alias("newest"))
        .where(PlanVersion.plan.in_(plan_ids))
        .group_by(PlanVersion.plan)
    )
    wanted = {(row.plan_id, getattr(row, "newest")) for row in newest.objects()}  # noqa: B009 (an alias)
    if not wanted:
        return {}
    rows = PlanVersion.select().where(PlanVersion.plan.in_([p for p, _ in wanted]))
    return {row.plan_id: row for row in rows if (row.plan_id, row.version) in wanted}


def publish(plan_id: str, version: int, terms: PlanTerms, *, now: dt.datetime) -> PlanVersion:
    """Write version `version` of the plan and make it the plan's latest figures. Call in the
    caller's transaction, the plan row existing; a version already written is an IntegrityError
    (the unique (plan, version) index: two publishers never both win)."""
    row = PlanVersion.create(
        plan=plan_id,
        version=version,
        name=terms.name,
        monthly_fee_cents=terms.monthly_fee_cents,
        currency=terms.currency,
        rate_limit_per_minute=terms.rate_limit_per_minute,
        trial_days=terms.trial_days,
        billing=str(terms.billing),
        charges=_json([charge_document(c) for c in terms.charges]),
        route_costs=_json([route_cost_document(r) for r in terms.route_costs]),
        created_at=now,
    )
    Plan.update(mirror(terms)).where(Plan.id == plan_id).execute()
    return row


def mirror(terms: PlanTerms) -> dict:
    """The plan row's copy of its latest version's figures (models.Plan says why it has one)."""
    included, overage = rating.legacy_terms(terms.charges)
    return {
        Plan.name: terms.name,
        Plan.monthly_fee_cents: terms.monthly_fee_cents,
        Plan.currency: terms.currency,
        Plan.rate_limit_per_minute: terms.rate_limit_per_minute,
        Plan.included_requests: included,
        Plan.overage_per_1k_cents: overage,
    }
