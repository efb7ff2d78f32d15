"""The catalogue file on restart (persistence/catalogue.py): the full plan shape, and the rule
between the file and versions published through the API, on both backends. Plan ids are unique
per test: the stack's database is shared."""

from __future__ import annotations

import json
import logging
import uuid

import pytest

from server.persistence import catalogue, db
from server.persistence.models import Plan, PlanVersion

PLAN = {
    "name": "Catalogued",
    "tier": "TIER_UNSPECIFIED",
    "monthly_fee_cents": 1500,
    "rate_limit_per_minute": 120,
    "trial_days": 14,
    "billing": "PREPAID",
    "private": True,
    "charges": [
        {
            "id": "tokens",
            "meter_id": "requests",
            "model": "GRADUATED",
            "included": 10,
            "tiers": [{"up_to": "1000", "unit_price": "0.25"}, {"unit_price": "0.125", "flat_cents": 300}],
        }
    ],
    "route_costs": [{"method": "POST", "path_prefix": "/v1/chat", "cost": 5}],
}


@pytest.fixture
def plan_id() -> str:
    return f"cat-{uuid.uuid4().hex[:10]}"


def seed(tmp_path, plans: list[dict]) -> None:
    path = tmp_path / f"{uuid.uuid4().hex}.json"
    path.write_text(json.dumps({"currency": "USD", "plans": plans}))
    with db.session():
        catalogue.seed(catalogue.load(path))


def put(stack, plan_id: str, fee: int) -> None:
    """Publish a new version through the API: the file's plan at another fee."""
    body = {key: value for key, value in PLAN.items() if key not in ("tier", "private")}
    reply = stack.rest("PUT", f"/billing/plans/{plan_id}", body={**body, "currency": "USD", "monthly_fee_cents": fee})
    assert reply.status == 200, reply.body


def versions(stack, plan_id: str) -> list[tuple[int, int]]:
    """(version, monthly_fee_cents) of every version, oldest first (from the database: GetPlan
    serves from a short cache)."""
    with db.session():
        rows = PlanVersion.select().where(PlanVersion.plan == plan_id).order_by(PlanVersion.version)
        return [(row.version, row.monthly_fee_cents) for row in rows]


def test_the_file_holds_every_field_of_a_plan(stack, tmp_path, plan_id):
    seed(tmp_path, [{"id": plan_id, **PLAN}])
    plan = stack.rest("GET", f"/billing/plans/{plan_id}").json()
    assert (plan["version"], plan["currency"], plan["trial_days"], plan["billing"], plan["private"]) == (
        1,
        "USD",
        14,
        "PREPAID",
        True,
    )
    assert plan["charges"][0]["tiers"] == [
        {"up_to": "1000", "unit_price": "0.25", "flat_cents": "0"},
        {"up_to": "", "unit_price": "0.125", "flat_cents": "300"},
    ]
    assert plan["route_costs"] == [{"method": "POST", "path_prefix": "/v1/chat", "cost": 5}]
    assert stack.rest("GET", f"/billing/plans/{plan_id}", key=stack.tenant_key("t-catalogue")).status == 404
    seed(tmp_path, [{"id": plan_id, **PLAN, "private": False}])  # identity, not terms: no new version
    with db.session():
        assert Plan.get_by_id(plan_id).private is False
    assert versions(stack, plan_id) == [(1, 1500)]


def test_a_restart_never_reverts_a_version_published_through_the_api(stack, tmp_path, plan_id):
    seed(tmp_path, [{"id": plan_id, **PLAN}])
    put(stack, plan_id, 1900)
    seed(tmp_path, [{"id": plan_id, **PLAN}])
    seed(tmp_path, [{"id": plan_id, **PLAN}])
    assert versions(stack, plan_id) == [(1, 1500), (2, 1900)]


def test_a_changed_file_publishes_a_new_version_over_the_apis(stack, tmp_path, plan_id, caplog):
    seed(tmp_path, [{"id": plan_id, **PLAN}])
    put(stack, plan_id, 1900)
    with caplog.at_level(logging.WARNING, logger="billing.catalogue"):
        seed(tmp_path, [{"id": plan_id, **PLAN, "monthly_fee_cents": 2500}])
    assert versions(stack, plan_id) == [(1, 1500), (2, 1900), (3, 2500)]
    assert f"plan {plan_id!r} changed in the file; its version 3 supersedes version 2" in caplog.text
    seed(tmp_path, [{"id": plan_id, **PLAN, "monthly_fee_cents": 2500}])
    assert versions(stack, plan_id)[-1] == (3, 2500)
    with db.session():
        assert Plan.get_by_id(plan_id).catalogue_version == 3


def test_a_file_changed_to_the_apis_latest_terms_adopts_that_version(stack, tmp_path, plan_id):
    seed(tmp_path, [{"id": plan_id, **PLAN}])
    put(stack, plan_id, 1900)
    seed(tmp_path, [{"id": plan_id, **PLAN, "monthly_fee_cents": 1900}])
    assert versions(stack, plan_id) == [(1, 1500), (2, 1900)]
    with db.session():
        assert Plan.get_by_id(plan_id).catalogue_version == 2


def test_a_database_from_before_catalogue_version_finds_the_files_version(stack, tmp_path, plan_id):
    """The file published version 1, the API version 2; the column is new (null): the file's
    terms are version 1's, so the restart publishes nothing and remembers version 1."""
    seed(tmp_path, [{"id": plan_id, **PLAN}])
    put(stack, plan_id, 1900)
    with db.session():
        Plan.update(catalogue_version=None).where(Plan.id == plan_id).execute()
    seed(tmp_path, [{"id": plan_id, **PLAN}])
    assert versions(stack, plan_id) == [(1, 1500), (2, 1900)]
    with db.session():
        assert Plan.get_by_id(plan_id).catalogue_version == 1
        Plan.update(catalogue_version=None).where(Plan.id == plan_id).execute()
    seed(tmp_path, [{"id": plan_id, **PLAN, "monthly_fee_cents": 700}])  # terms no version has
    assert versions(stack, plan_id)[-1] == (3, 700)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"charges": [{**PLAN["charges"][0], "meter_id": "nope"}]}, "charges[0].meter_id names no meter"),
        ({"included_requests": 5, "overage_per_1k_cents": 1}, "gives both charges and included_requests"),
        ({"charges": None}, "lacks charges (or included_requests and overage_per_1k_cents)"),
        ({"rate_limit_per_minute": 0}, "rate_limit_per_minute must be a whole number"),
        ({"tier": "GOLD"}, "has unknown tier 'GOLD'"),
        ({"id": "Not An Id"}, "id must match [a-z0-9_-]{1,64}"),
    ],
)
def test_an_invalid_plan_in_the_file_names_the_plan_and_the_field(stack, tmp_path, plan_id, change, message):
    plan = {key: value for key, value in {"id": plan_id, **PLAN, **change}.items() if value is not None}
    with pytest.raises(ValueError) as raised:
        seed(tmp_path, [plan])
    assert repr(plan["id"]) in str(raised.value) and message in str(raised.value)
    with db.session():
        assert Plan.get_or_none(Plan.id == plan["id"]) is None
