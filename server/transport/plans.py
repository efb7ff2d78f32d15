"""PlanService: endpoints 1-2."""

from __future__ import annotations

from billing.v1 import plan_pb2, plan_pb2_grpc
from server.domain.ttl_cache import STALENESS_SECONDS, TtlCache
from server.persistence.read_models import PlanView
from server.services import plans


def plan_message(plan: PlanView) -> plan_pb2.Plan:
    return plan_pb2.Plan(
        id=plan.id,
        name=plan.name,
        tier=plan.tier,
        monthly_fee_cents=plan.monthly_fee_cents,
        currency=plan.currency,
        rate_limit_per_minute=plan.rate_limit_per_minute,
        included_requests=plan.included_requests,
        overage_per_1k_cents=plan.overage_per_1k_cents,
    )


class PlanServicer(plan_pb2_grpc.PlanServiceServicer):
    """GetPlan answers from a per-process cache of the catalogue's messages: the catalogue changes
    only when a server seeds it at start, and another replica's seed shows here within
    `cache_seconds` (ttl_cache.STALENESS_SECONDS); an unknown plan id is looked up every time."""

    def __init__(self, cache_seconds: float = STALENESS_SECONDS) -> None:
        self._plans: TtlCache[plan_pb2.Plan] = TtlCache(cache_seconds)

    def ListPlans(self, request, context):
        return plan_pb2.ListPlansResponse(plans=[plan_message(p) for p in plans.list_plans()])

    def GetPlan(self, request, context):
        plan_id = request.plan_id
        return self._plans.get(plan_id, lambda: plan_message(plans.get_plan(plan_id)))
