"""Plans (endpoints 1-2 and 25-27): read the latest or a named version, publish a plan (version
1) or a new version of one, archive. Each write is one transaction; the unique (plan, version)
index makes two concurrent publishers of one version fail one of them (409), never both win.
Private and archived plans are listed and read only with admin keys: a tenant is told an unknown
id (404), as for any resource it may not see."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import peewee as pw

from server.domain import plans as rules
from server.domain.access import Principal, require_admin
from server.domain.errors import AlreadyExists, NotFound
from server.domain.plans import Tier
from server.persistence import plan_versions
from server.persistence.db import database
from server.persistence.models import Plan
from server.persistence.read_models import PlanView, plan_view

SEED_LAST = len(rules.SEED_TIERS)  # published plans list after the seed tiers, in creation order


def _visible(plan: Plan | None, principal: Principal) -> bool:
    return plan is not None and (principal.is_admin or not (plan.private or plan.archived_at is not None))


def list_plans(principal: Principal) -> list[PlanView]:
    rows = [row for row in Plan.select().order_by(Plan.position, Plan.id) if _visible(row, principal)]
    latest = plan_versions.latest_of([row.id for row in rows])
    return [plan_view(row, latest[row.id]) for row in rows if row.id in latest]


def _plan(plan_id: str, principal: Principal) -> Plan:
    plan = Plan.get_or_none(Plan.id == plan_id) if plan_id else None
    if plan is None or not _visible(plan, principal):
        raise NotFound(f"plan {plan_id!r} not found", reason="PLAN_NOT_FOUND")
    return plan


def get_plan(plan_id: str, principal: Principal, version: int = 0) -> PlanView:
    plan = _plan(plan_id, principal)
    found = plan_versions.find(plan_id, version) if version else plan_versions.latest(plan_id)
    if found is None:
        raise NotFound(f"plan {plan_id!r} has no version {version}", reason="PLAN_VERSION_NOT_FOUND")
    return plan_view(plan, found)


def create_plan(principal: Principal, raw: Mapping[str, Any], *, now: dt.datetime) -> PlanView:
    """Publish a new plan as version 1 (`raw`: the Plan message's fields, zero values as None)."""
    require_admin(principal, "publishing a plan")
    plan_id = rules.validate_plan_id(raw.get("id") or "")
    terms = plan_versions.checked_terms(raw)
    try:
        with database.atomic():
            position = (Plan.select(pw.fn.MAX(Plan.position)).scalar() or 0) + 1
            Plan.create(
                id=plan_id,
                tier=Tier.UNSPECIFIED,
                position=max(position, SEED_LAST),
                private=bool(raw.get("private")),
                **{field.name: value for field, value in plan_versions.mirror(terms).items()},
            )
            version = plan_versions.publish(plan_id, 1, terms, now=now)
            return plan_view(Plan.get_by_id(plan_id), version)
    except pw.IntegrityError:
        raise AlreadyExists(f"plan {plan_id!r} already exists", reason="PLAN_EXISTS") from None


def publish_version(principal: Principal, plan_id: str, raw: Mapping[str, Any], *, now: dt.datetime) -> PlanView:
    """Publish the next version of a plan; subscriptions stay on the version they have."""
    require_admin(principal, "publishing a plan version")
    terms = plan_versions.checked_terms(raw)
    try:
        with database.atomic():
            plan = _plan(plan_id, principal)
            latest = plan_versions.latest(plan_id)
            version = plan_versions.publish(plan_id, (latest.version if latest else 0) + 1, terms, now=now)
            return plan_view(Plan.get_by_id(plan.id), version)
    except pw.IntegrityError:
        raise AlreadyExists(
            f"plan {plan_id!r} got a new version concurrently; read it and retry", reason="PLAN_VERSION_EXISTS"
        ) from None


def archive_plan(principal: Principal, plan_id: str, *, now: dt.datetime) -> PlanView:
    """Archive (idempotent): no new subscriptions; existing ones keep billing on their versions."""
    require_admin(principal, "archiving a plan")
    with database.atomic():
        plan = _plan(plan_id, principal)
        if plan.archived_at is None:
            Plan.update(archived_at=now).where(Plan.id == plan_id).execute()
        return get_plan(plan_id, principal=principal)
