"""PlanService: endpoints 1-2 and 25-27, messages to and from server.services.plans.

Requests become plain dicts with proto3's zero values as None (absent): the domain's validation
reads "absent" the same way whatever door the plan came through."""

from __future__ import annotations

from typing import Any

from billing.v1 import plan_pb2, plan_pb2_grpc
from server.domain.plans import charge_document
from server.domain.ttl_cache import STALENESS_SECONDS, TtlCache
from server.persistence.read_models import PlanView
from server.resources import timestamp
from server.services import plans
from server.transport.context import current_principal
from server.transport.convert import now

Billing = plan_pb2.Plan.Billing
Model = plan_pb2.Charge.Model


def plan_message(plan: PlanView) -> plan_pb2.Plan:
    return plan_pb2.Plan(
        id=plan.id,
        version=plan.version,
        name=plan.name,
        tier=plan.tier,
        monthly_fee_cents=plan.monthly_fee_cents,
        currency=plan.currency,
        rate_limit_per_minute=plan.rate_limit_per_minute,
        included_requests=plan.included_requests,
        overage_per_1k_cents=plan.overage_per_1k_cents,
        trial_days=plan.terms.trial_days,
        billing=Billing.Value(str(plan.terms.billing)),  # type: ignore[arg-type]  # the stubs want the enum's own type
        private=plan.private,
        archived=plan.archived,
        charges=[_charge_message(charge_document(c)) for c in plan.terms.charges],
        route_costs=[
            plan_pb2.RouteCost(method=r.method, path_prefix=r.path_prefix, cost=r.cost) for r in plan.terms.route_costs
        ],
        created_at=timestamp(plan.created_at),
    )


def _charge_message(document: dict[str, Any]) -> plan_pb2.Charge:
    tiers = [
        plan_pb2.PriceTier(up_to=tier["up_to"] or "", unit_price=tier["unit_price"], flat_cents=tier["flat_cents"])
        for tier in document.pop("tiers", [])
    ]
    return plan_pb2.Charge(**{**document, "model": Model.Value(document["model"])}, tiers=tiers)


def _absent(value: Any) -> Any:
    """proto3's zero value as absent (None), anything else as it is."""
    return value or None


def plan_request(message: plan_pb2.Plan) -> dict[str, Any]:
    """The fields of a Plan sent to be published, zero values as None; enums by name."""
    return {
        "id": message.id,
        "name": message.name,
        "currency": _absent(message.currency),
        "monthly_fee_cents": message.monthly_fee_cents,
        "rate_limit_per_minute": _absent(message.rate_limit_per_minute),
        "trial_days": message.trial_days,
        "billing": Billing.Name(message.billing) if message.billing else None,
        "private": message.private,
        "charges": [_charge_request(c) for c in message.charges],
        "route_costs": [
            {"method": _absent(r.method), "path_prefix": r.path_prefix, "cost": _absent(r.cost)}
            for r in message.route_costs
        ],
    }


def _charge_request(charge: plan_pb2.Charge) -> dict[str, Any]:
    return {
        "id": charge.id,
        "meter_id": charge.meter_id,
        "display_name": _absent(charge.display_name),
        "filter": _absent(dict(charge.filter)),
        "included": _absent(charge.included),
        "model": Model.Name(charge.model) if charge.model else None,
        "unit_price": _absent(charge.unit_price),
        "unit_size": _absent(charge.unit_size),
        "package_size": _absent(charge.package_size),
        "tiers": [
            {"up_to": _absent(t.up_to), "unit_price": t.unit_price, "flat_cents": _absent(t.flat_cents)}
            for t in charge.tiers
        ]
        or None,
        "hard_limit": _absent(charge.hard_limit),
    }


class PlanServicer(plan_pb2_grpc.PlanServiceServicer):
    """GetPlan answers from a per-process cache of plan messages keyed by (plan, version, whether
    the caller is an admin): a new version or an archive made on another replica shows here within
    `cache_seconds` (ttl_cache.STALENESS_SECONDS), one made here at once (the cache is dropped)."""

    def __init__(self, cache_seconds: float = STALENESS_SECONDS) -> None:
        self._cache_seconds = cache_seconds
        self._plans: TtlCache[plan_pb2.Plan] = TtlCache(cache_seconds)

    def _changed(self, plan: PlanView) -> plan_pb2.Plan:
        self._plans = TtlCache(self._cache_seconds)
        return plan_message(plan)

    def ListPlans(self, request, context):
        return plan_pb2.ListPlansResponse(plans=[plan_message(p) for p in plans.list_plans(current_principal())])

    def GetPlan(self, request, context):
        principal = current_principal()
        key = (request.plan_id, request.version, principal.is_admin)
        return self._plans.get(key, lambda: plan_message(plans.get_plan(request.plan_id, principal, request.version)))

    def CreatePlan(self, request, context):
        return self._changed(plans.create_plan(current_principal(), plan_request(request.plan), now=now()))

    def UpdatePlan(self, request, context):
        raw = plan_request(request.plan)
        return self._changed(plans.publish_version(current_principal(), request.plan_id, raw, now=now()))

    def DeletePlan(self, request, context):
        return self._changed(plans.archive_plan(current_principal(), request.plan_id, now=now()))
