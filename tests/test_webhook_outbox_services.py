"""The webhook outbox's services on a SQLite database of their own, called directly with an explicit
`now`: what `events.emit` queues, what `webhook_delivery.claim` takes and when, and what `settle`
records, each at its boundary (a delivery due exactly now, a lease ending exactly now, an endpoint
failing for exactly the disable period). Fast enough for the mutation gate to run on every mutant."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid

import pytest

from billing.v1 import subscription_pb2
from server.domain import webhooks as rules
from server.domain.access import KeyScope, Principal
from server.persistence import db
from server.persistence.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from server.services import events, webhook_delivery, webhooks
from stores import own_database

UTC = dt.timezone.utc
ADMIN = Principal(key_id=0, scope=KeyScope.ADMIN)
T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
US = dt.timedelta(microseconds=1)
ALLOWED = frozenset({rules.target("127.0.0.1", 9)})
CREATED = rules.EventType.SUBSCRIPTION_CREATED
FAILED = rules.Outcome(503, "HTTP 503")
OK = rules.Outcome(204)


@pytest.fixture(scope="module", autouse=True)
def outbox_database(tmp_path_factory):
    with own_database("sqlite", tmp_path_factory.mktemp("outbox")), db.session():
        yield


@pytest.fixture
def tenant() -> str:
    """A tenant of the test's own; what earlier tests left pending is settled, so a claim's limit is this test's."""
    WebhookDelivery.update(status="FAILED", next_attempt_at=None).where(WebhookDelivery.status == "PENDING").execute()
    return f"t-{uuid.uuid4().hex[:12]}"


def endpoint(tenant: str, *event_types: str, path: str = "/hook") -> str:
    request = webhooks.NewEndpoint(tenant, f"http://127.0.0.1:9{path}", tuple(event_types))
    return webhooks.create_endpoint(ADMIN, request, now=T0, allowed=ALLOWED).id


def emit(tenant: str, event_type=CREATED, *, now=T0, dedup_key=None) -> str | None:
    resource = subscription_pb2.Subscription(id=f"sub_{tenant}", tenant_id=tenant, plan_id="standard")
    with db.database.atomic():
        return events.emit(event_type, tenant, resource, now=now, dedup_key=dedup_key)


def delivery(endpoint_id: str) -> WebhookDelivery:
    [row] = WebhookDelivery.select().where(WebhookDelivery.endpoint == endpoint_id)
    return row


def claim_of(tenant: str, now: dt.datetime, *, busy=frozenset(), limit: int = 10) -> list[webhook_delivery.Attempt]:
    """What a claim at `now` takes of this tenant's deliveries (the database is shared by the module)."""
    mine = {row.id for row in WebhookEndpoint.select().where(WebhookEndpoint.tenant_id == tenant)}
    return [a for a in webhook_delivery.claim(now, busy=set(busy), limit=limit) if a.endpoint_id in mine]


# --- emit ------------------------------------------------------------------------------------------


def test_an_event_is_queued_once_per_enabled_endpoint_that_wants_it_due_at_once(tenant):
    every, wanting, other = endpoint(tenant), endpoint(tenant, CREATED), endpoint(tenant, "invoice.paid")
    event_id = emit(tenant)
    assert event_id is not None and event_id.startswith("msg_") and len(event_id) == 36
    for endpoint_id in (every, wanting):
        row = delivery(endpoint_id)
        assert (row.event_id, row.status, row.attempts) == (event_id, "PENDING", 0)
        assert row.next_attempt_at.replace(tzinfo=UTC) == T0 == row.created_at.replace(tzinfo=UTC)
        assert row.id.startswith("dlv_") and len(row.id) == 36
    assert not WebhookDelivery.select().where(WebhookDelivery.endpoint == other).exists()
    assert sorted(events.listeners(tenant, CREATED)) == sorted([every, wanting])


def test_the_body_is_the_rest_rendering_with_a_utc_z_time(tenant):
    endpoint(tenant)
    event_id = emit(tenant, now=dt.datetime(2026, 3, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))))
    event = WebhookEvent.get_by_id(event_id)
    assert event.body == (
        f'{{"id":"{event_id}","type":"subscription.created","created_at":"2026-03-01T12:00:00Z",'
        f'"data":{json.dumps(json.loads(event.body)["data"], separators=(",", ":"))}}}'
    )
    data = json.loads(event.body)["data"]
    assert (data["id"], data["tenant_id"], data["plan_id"]) == (f"sub_{tenant}", tenant, "standard")
    assert (event.tenant_id, event.type, event.dedup_key) == (tenant, "subscription.created", None)


def test_nobody_listening_or_a_used_dedup_key_writes_nothing(tenant):
    assert emit(tenant) is None
    assert not WebhookEvent.select().where(WebhookEvent.tenant_id == tenant).exists()
    endpoint_id = endpoint(tenant)
    first = emit(tenant, dedup_key=f"{tenant}:once")
    assert first is not None
    assert emit(tenant, dedup_key=f"{tenant}:once") is None
    assert [row.event_id for row in WebhookDelivery.select().where(WebhookDelivery.endpoint == endpoint_id)] == [first]


def test_an_event_goes_to_the_endpoints_the_caller_names_when_it_names_them(tenant):
    named, other = endpoint(tenant), endpoint(tenant)
    resource = subscription_pb2.Subscription(id=f"sub_{tenant}")
    with db.database.atomic():
        event_id = events.emit(CREATED, tenant, resource, now=T0, endpoint_ids=[named])
    assert delivery(named).event_id == event_id
    assert not WebhookDelivery.select().where(WebhookDelivery.endpoint == other).exists()


def test_the_event_time_is_utc_whatever_the_process_time_zone(tenant, monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        endpoint(tenant)
        event_id = emit(tenant, now=T0)
        assert json.loads(WebhookEvent.get_by_id(event_id).body)["created_at"] == "2026-03-01T12:00:00Z"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_disabled_endpoint_gets_no_new_event(tenant):
    disabled, enabled = endpoint(tenant), endpoint(tenant)
    WebhookEndpoint.update(disabled_at=T0).where(WebhookEndpoint.id == disabled).execute()
    assert events.listeners(tenant, CREATED) == [enabled]
    emit(tenant)
    assert not WebhookDelivery.select().where(WebhookDelivery.endpoint == disabled).exists()


# --- claim -----------------------------------------------------------------------------------------


def test_a_delivery_is_claimed_exactly_when_due_and_then_leased_for_exactly_the_lease(tenant):
    endpoint_id = endpoint(tenant)
    event_id = emit(tenant)
    assert claim_of(tenant, T0 - US) == []
    [attempt] = claim_of(tenant, T0)
    assert (attempt.endpoint_id, attempt.event_id, attempt.attempts, attempt.url) == (
        endpoint_id,
        event_id,
        0,
        "http://127.0.0.1:9/hook",
    )
    assert attempt.body == WebhookEvent.get_by_id(event_id).body
    assert attempt.secrets == (WebhookEndpoint.get_by_id(endpoint_id).secret,)
    leased = T0 + webhook_delivery.LEASE
    assert delivery(endpoint_id).next_attempt_at.replace(tzinfo=UTC) == leased
    assert claim_of(tenant, leased - US) == []
    assert [a.delivery_id for a in claim_of(tenant, leased)] == [attempt.delivery_id]


def test_a_claim_takes_one_per_endpoint_oldest_first_up_to_the_limit_and_skips_busy_ones(tenant):
    first, second, third = endpoint(tenant, path="/a"), endpoint(tenant, path="/b"), endpoint(tenant, path="/c")
    older = emit(tenant, now=T0)
    emit(tenant, now=T0 + US)
    assert claim_of(tenant, T0, limit=0) == []
    taken = claim_of(tenant, T0 + US, limit=2, busy={first})
    assert sorted(a.endpoint_id for a in taken) == sorted([second, third])
    assert {a.event_id for a in taken} == {older}
    rest = claim_of(tenant, T0 + US, limit=5)  # first's older one; the newer ones of the other two
    assert sorted((a.endpoint_id, a.event_id == older) for a in rest) == sorted(
        [(first, True), (second, False), (third, False)]
    )


def test_a_claim_of_one_takes_one_and_of_equal_due_times_the_smaller_id(tenant):
    first, second = endpoint(tenant, path="/a"), endpoint(tenant, path="/b")
    emit(tenant)
    emit(tenant)
    due = sorted(WebhookDelivery.select().where(WebhookDelivery.endpoint.in_([first, second])), key=lambda r: r.id)
    [taken] = claim_of(tenant, T0, limit=1)
    assert taken.delivery_id == due[0].id


def test_a_claim_reads_at_most_four_rows_per_place_so_an_endpoint_behind_them_waits(tenant):
    busy, behind = endpoint(tenant, path="/busy"), endpoint(tenant, path="/behind")
    for n in range(8):
        with db.database.atomic():
            events.emit(CREATED, tenant, subscription_pb2.Subscription(), now=T0 + n * US, endpoint_ids=[busy])
    with db.database.atomic():
        events.emit(CREATED, tenant, subscription_pb2.Subscription(), now=T0 + 8 * US, endpoint_ids=[behind])
    assert [a.endpoint_id for a in claim_of(tenant, T0 + 8 * US, limit=2)] == [busy]
    assert [a.endpoint_id for a in claim_of(tenant, T0 + 8 * US, limit=2)] == [busy, behind]


def test_a_previous_secret_signs_until_exactly_its_expiry(tenant):
    endpoint_id = endpoint(tenant)
    rotated = webhooks.rotate_secret(ADMIN, endpoint_id, now=T0)
    expires = T0 + rules.PREVIOUS_SECRET_GRACE
    row = WebhookEndpoint.get_by_id(endpoint_id)
    emit(tenant)
    [attempt] = claim_of(tenant, expires - US)
    assert attempt.secrets == (rotated.secret, row.previous_secret)
    WebhookDelivery.update(next_attempt_at=expires).where(WebhookDelivery.endpoint == endpoint_id).execute()
    [attempt] = claim_of(tenant, expires)
    assert attempt.secrets == (rotated.secret,)


# --- settle ----------------------------------------------------------------------------------------


def attempt_once(tenant: str, now: dt.datetime, outcome: rules.Outcome, jitter: float = 0.0) -> str:
    [attempt] = claim_of(tenant, now)
    return webhook_delivery.settle(attempt, outcome, now=now, jitter=jitter)


def test_a_failure_is_retried_on_the_schedule_and_a_success_is_recorded(tenant):
    endpoint_id, quiet = endpoint(tenant), endpoint(tenant, "invoice.paid")
    emit(tenant)
    assert attempt_once(tenant, T0, FAILED) == "PENDING"
    row = delivery(endpoint_id)
    assert (row.attempts, row.last_status_code, row.last_error, row.delivered_at) == (1, 503, "HTTP 503", None)
    retry = T0 + rules.RETRY_DELAYS[0]
    assert row.next_attempt_at.replace(tzinfo=UTC) == retry
    assert WebhookEndpoint.get_by_id(endpoint_id).failing_since.replace(tzinfo=UTC) == T0
    assert WebhookEndpoint.get_by_id(quiet).failing_since is None  # only the failing endpoint's run starts
    assert attempt_once(tenant, retry, FAILED, jitter=1.0) == "PENDING"
    scaled = retry + rules.RETRY_DELAYS[1] * (1 + rules.JITTER)
    assert delivery(endpoint_id).next_attempt_at.replace(tzinfo=UTC) == scaled
    assert attempt_once(tenant, scaled, OK) == "SUCCEEDED"
    row = delivery(endpoint_id)
    assert (row.status, row.attempts, row.next_attempt_at, row.last_status_code, row.last_error) == (
        "SUCCEEDED",
        3,
        None,
        204,
        None,
    )
    assert row.delivered_at.replace(tzinfo=UTC) == scaled
    assert WebhookEndpoint.get_by_id(endpoint_id).failing_since is None


def test_the_last_attempt_failing_fails_the_delivery(tenant):
    endpoint_id = endpoint(tenant)
    emit(tenant)
    WebhookDelivery.update(attempts=rules.MAX_ATTEMPTS - 1).where(WebhookDelivery.endpoint == endpoint_id).execute()
    assert attempt_once(tenant, T0, FAILED) == "FAILED"
    row = delivery(endpoint_id)
    assert (row.status, row.attempts, row.next_attempt_at) == ("FAILED", rules.MAX_ATTEMPTS, None)
    assert WebhookEndpoint.get_by_id(endpoint_id).disabled_at is None


def failing_since(tenant: str, endpoint_id: str, start: dt.datetime) -> None:
    """The endpoint's run of failures began at `start`; its one delivery is due again now."""
    emit(tenant)
    WebhookEndpoint.update(failing_since=start).where(WebhookEndpoint.id == endpoint_id).execute()


def test_an_endpoint_failing_for_just_under_the_disable_period_stays_enabled(tenant):
    endpoint_id = endpoint(tenant)
    failing_since(tenant, endpoint_id, T0 - rules.DISABLE_AFTER + US)
    assert attempt_once(tenant, T0, FAILED) == "PENDING"
    row = WebhookEndpoint.get_by_id(endpoint_id)
    assert row.disabled_at is None
    assert row.failing_since.replace(tzinfo=UTC) == T0 - rules.DISABLE_AFTER + US


def test_an_endpoint_failing_for_exactly_the_disable_period_is_disabled_with_its_pending_deliveries(tenant):
    endpoint_id, healthy = endpoint(tenant), endpoint(tenant)
    failing_since(tenant, endpoint_id, T0 - rules.DISABLE_AFTER)
    emit(tenant, now=T0 + dt.timedelta(hours=1))  # a second delivery, not yet due
    [attempt] = [a for a in claim_of(tenant, T0) if a.endpoint_id == endpoint_id]
    assert webhook_delivery.settle(attempt, FAILED, now=T0, jitter=0.0) == "FAILED"
    assert WebhookEndpoint.get_by_id(endpoint_id).disabled_at.replace(tzinfo=UTC) == T0
    rows = WebhookDelivery.select().where(WebhookDelivery.endpoint == endpoint_id)
    assert sorted((r.status, r.next_attempt_at, r.last_error) for r in rows) == [
        ("FAILED", None, webhook_delivery.DISABLED_ERROR),
        ("FAILED", None, webhook_delivery.DISABLED_ERROR),
    ]
    assert {r.status for r in WebhookDelivery.select().where(WebhookDelivery.endpoint == healthy)} == {"PENDING"}
    assert WebhookEndpoint.get_by_id(healthy).disabled_at is None


def test_a_success_ends_the_run_of_failures_and_a_settled_delivery_is_not_settled_again(tenant):
    endpoint_id, other = endpoint(tenant), endpoint(tenant, "invoice.paid")
    WebhookEndpoint.update(failing_since=T0 - dt.timedelta(hours=1)).where(WebhookEndpoint.id == other).execute()
    failing_since(tenant, endpoint_id, T0 - dt.timedelta(days=1))
    [attempt] = claim_of(tenant, T0)
    assert webhook_delivery.settle(attempt, OK, now=T0, jitter=0.0) == "SUCCEEDED"
    assert WebhookEndpoint.get_by_id(endpoint_id).failing_since is None
    assert WebhookEndpoint.get_by_id(other).failing_since.replace(tzinfo=UTC) == T0 - dt.timedelta(hours=1)
    webhook_delivery.settle(attempt, FAILED, now=T0 + US, jitter=0.0)  # a late copy of the same attempt
    row = delivery(endpoint_id)
    assert (row.status, row.attempts, row.last_status_code) == ("SUCCEEDED", 1, 204)
