"""The plan catalogue: a JSON file of plans, read at every start and published as plan versions.

A plan in the file is a Plan as endpoint 25 takes it (`name`, `currency`, `monthly_fee_cents`,
`rate_limit_per_minute`, `trial_days`, `billing`, `private`, `charges`, `route_costs`) plus its
`tier`; instead of `charges` it may give the seed's one price shape, `included_requests` and
`overage_per_1k_cents` (a PER_UNIT charge on `requests` per 1,000). The plan's identity (`tier`,
its position in the file, `private`) is the file's at every start: no API call sets them.

What a restart does when the file and the published versions differ. Plans are published two
ways, the file and the API (endpoint 26), and neither may silently undo the other:
- the file's terms equal the version the file last published (`Plan.catalogue_version`): nothing
  happens, even if the API has published newer versions since (a restart never reverts an
  operator's PUT);
- the file's terms changed since: they are published as a new version, on top of whatever is
  latest (an edited file is an operator's decision too: it takes effect at the next start, logged
  with the API version it supersedes, if any). Nothing is ever rewritten: subscriptions keep the
  version they are pinned to.
A database from before `catalogue_version` existed takes, as the file's last version, the newest
version whose terms equal the file's (the file published it); if none does, the file's terms are
news and are published. Running the seed twice changes nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import pathlib
from typing import Any

from server.domain import plans, rating
from server.domain.errors import InvalidArgument
from server.domain.plans import Tier
from server.persistence import plan_versions
from server.persistence.db import database
from server.persistence.models import Plan, PlanVersion

log = logging.getLogger("billing.catalogue")

SEED_SHAPE = ("included_requests", "overage_per_1k_cents")


def load(path: pathlib.Path) -> list[dict]:
    """The file's plans, checked in their shape (the terms are checked against the meters by
    `seed`); a bad catalogue stops start-up with a message naming the plan and the field."""
    data = json.loads(path.read_text())
    currency = data.get("currency", "USD")
    rows = []
    for position, plan in enumerate(data["plans"]):
        name = f"plan {plan.get('id')!r}" if isinstance(plan, dict) and plan.get("id") else f"plan #{position}"
        if not isinstance(plan, dict) or "id" not in plan or "tier" not in plan:
            raise ValueError(f"{path}: {name} lacks id or tier")
        if plan["tier"] not in list(Tier):
            raise ValueError(f"{path}: {name} has unknown tier {plan['tier']!r}")
        if not isinstance(plan["id"], str) or not plans.PLAN_ID.fullmatch(plan["id"]):
            raise ValueError(f"{path}: {name} id must match [a-z0-9_-]{{1,64}}")
        shape = [key for key in SEED_SHAPE if key in plan]
        if "charges" in plan and shape:
            raise ValueError(f"{path}: {name} gives both charges and {shape[0]}: one price shape or the other")
        if "charges" not in plan and len(shape) < len(SEED_SHAPE):
            raise ValueError(f"{path}: {name} lacks charges (or included_requests and overage_per_1k_cents)")
        for key in shape:
            if isinstance(plan[key], bool) or not isinstance(plan[key], int) or plan[key] < 0:
                raise ValueError(f"{path}: {name} {key} must be a non-negative integer")
        document = {key: value for key, value in plan.items() if key not in (*SEED_SHAPE, "id", "tier")}
        if shape:
            charge = rating.seed_charge(
                plan["included_requests"], plan["overage_per_1k_cents"], hard_limit=plan["overage_per_1k_cents"] == 0
            )
            document["charges"] = [plans.charge_document(charge)]
        document.setdefault("currency", currency)
        rows.append(
            {
                "id": plan["id"],
                "tier": plan["tier"],
                "position": position,
                "plan": document,
            }
        )
    return rows


def _terms(row: dict[str, Any]) -> plans.PlanTerms:
    try:
        return plan_versions.checked_terms(row["plan"])
    except InvalidArgument as error:
        raise ValueError(f"plan {row['id']!r}: {error}") from None


def seed(rows: list[dict], *, now: dt.datetime | None = None) -> None:
    """Publish the file's plans by the rule of the module's docstring, in one transaction. A plan
    the file names for the first time gets its identity and version 1. Raises ValueError naming
    the plan and the field when the file's terms are invalid (a meter it prices does not exist)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    with database.atomic():
        for row in rows:
            terms = _terms(row)
            identity = {"id": row["id"], "tier": row["tier"], "position": row["position"]}
            # An upsert: it locks the plan's row, so replicas starting at once seed one after the other.
            (
                Plan.insert(
                    {
                        **identity,
                        "private": bool(row["plan"].get("private")),
                        **{field.name: value for field, value in plan_versions.mirror(terms).items()},
                    }
                )
                .on_conflict(conflict_target=[Plan.id], preserve=[Plan.tier, Plan.position, Plan.private])
                .execute()
            )
            plan = Plan.get_by_id(row["id"])
            latest = plan_versions.latest(plan.id)
            if latest is None:
                plan_versions.publish(plan.id, 1, terms, now=now)
                Plan.update(catalogue_version=1).where(Plan.id == plan.id).execute()
                continue
            held = _version_holding(plan, latest, terms)
            if held is not None:
                if plan.catalogue_version != held:
                    Plan.update(catalogue_version=held).where(Plan.id == plan.id).execute()
                continue
            version = latest.version + 1
            if plan.catalogue_version not in (None, latest.version):
                log.warning(
                    "catalogue: plan %r changed in the file; its version %d supersedes version %d published "
                    "through the API",
                    plan.id,
                    version,
                    latest.version,
                )
            plan_versions.publish(plan.id, version, terms, now=now)
            Plan.update(catalogue_version=version).where(Plan.id == plan.id).execute()


def _version_holding(plan: Plan, latest: PlanVersion, terms: plans.PlanTerms) -> int | None:
    """The version that already holds the file's terms, or None (they are news): the one the file
    last published if unchanged (on a database from before `catalogue_version`, the newest one
    with these terms), else the latest if the API published them already."""
    if plan.catalogue_version is None:
        versions = PlanVersion.select().where(PlanVersion.plan == plan.id).order_by(PlanVersion.version.desc())
        candidates: list[PlanVersion | None] = list(versions)
    else:
        candidates = [plan_versions.find(plan.id, plan.catalogue_version), latest]
    return next((row.version for row in candidates if row is not None and plan_versions.terms_of(row) == terms), None)
