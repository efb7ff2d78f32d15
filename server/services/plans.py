"""Reading the plan catalogue."""

from __future__ import annotations

from server.domain.errors import NotFound
from server.persistence.models import Plan
from server.persistence.read_models import PlanView, plan_view


def list_plans() -> list[PlanView]:
    return [plan_view(plan) for plan in Plan.select().order_by(Plan.position)]


def get_plan(plan_id: str) -> PlanView:
    plan = Plan.get_or_none(Plan.id == plan_id)
    if plan is None:
        raise NotFound(f"plan {plan_id!r} not found", reason="PLAN_NOT_FOUND")
    return plan_view(plan)
