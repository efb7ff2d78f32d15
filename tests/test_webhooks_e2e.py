"""Webhooks through the real stack, on SQLite and PostgreSQL: endpoints over REST and gRPC,
events delivered to a real local HTTP receiver by the dispatcher (driven here with `drain`, and
an injected clock to walk the retry schedule), signatures checked with PyPI's standardwebhooks."""

from __future__ import annotations

import base64
import datetime as dt
import os
import signal
import subprocess
import threading
from concurrent import futures

import grpc
import pytest
import standardwebhooks
from webhook_receiver import Receiver, allowed

from billing.v1 import webhook_pb2, webhook_pb2_grpc
from calls import poll
from factories import insert_subscription
from processes import BIN
from server.config import Settings
from server.domain import webhooks as rules
from server.domain.access import KeyScope, Principal
from server.notifications import webhook_sender
from server.persistence import catalogue, db, migrations
from server.persistence.models import WebhookDelivery, WebhookEvent
from server.scheduler.webhook_dispatcher import Dispatcher
from server.services import subscriptions, webhook_delivery, webhooks
from stores import bound

UTC = dt.timezone.utc


class Clock:
    """The real clock, moved ahead by `advance` (what is due is decided by it; the server's
    changes are stamped with the real time)."""

    def __init__(self) -> None:
        self.offset = dt.timedelta()

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(UTC) + self.offset

    def advance(self, **delta) -> None:
        self.offset += dt.timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def loopback_post(url, *args, **kwargs):
    """The real sender, for the tests' own receivers only: the shared database also holds
    endpoints the fuzzers registered, and test traffic stays on this machine."""
    if not url.startswith("http://127.0.0.1:"):
        return rules.Outcome(None, "not called from tests")
    return webhook_sender.post(url, *args, **kwargs)


def dispatcher_at(clock, post=loopback_post) -> Dispatcher:
    return Dispatcher(allowed=allowed(), clock=clock, post=post)


@pytest.fixture(autouse=True)
def settled_outbox(request):
    """Each test on the stack starts with nothing pending: what earlier tests and the fuzzers
    queued (the database is shared by the session) is marked FAILED, so `drain` reports this
    test's sends."""
    if "stack" not in request.fixturenames:
        return
    with db.session():
        WebhookDelivery.update(status="FAILED", next_attempt_at=None).where(
            WebhookDelivery.status == "PENDING"
        ).execute()


@pytest.fixture
def dispatcher(clock):
    sender = dispatcher_at(clock)
    yield sender
    sender.close()


def drain(dispatcher: Dispatcher) -> list[str | None]:
    """Send everything due at the dispatcher's clock; returns the statuses recorded."""
    statuses = []
    while started := dispatcher.pump():
        statuses += [future.result(timeout=30) for future in started]
    return statuses


def register(stack, tenant_id: str, url: str, event_types=(), key="admin") -> dict:
    reply = stack.rest(
        "POST",
        "/billing/webhooks",
        key=key,
        body={"tenant_id": tenant_id, "url": url, "event_types": list(event_types)},
    )
    assert reply.status == 200, reply.body
    return reply.json()


def verified(secret: str, request) -> dict:
    return standardwebhooks.Webhook(secret).verify(request.body, request.headers)


def deliveries(stack, endpoint_id: str) -> list[dict]:
    reply = stack.rest("GET", f"/billing/webhooks/{endpoint_id}/deliveries")
    assert reply.status == 200, reply.body
    return reply.json()["deliveries"]


# --- endpoints as a resource ---------------------------------------------------------------------


def test_endpoint_lifecycle_with_the_secret_shown_once(stack, tenant_id):
    created = register(stack, tenant_id, "http://127.0.0.1:9/hook", ["invoice.paid", "invoice.sent"])
    secret = created["secret"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert (created["tenant_id"], created["event_types"]) == (tenant_id, ["invoice.paid", "invoice.sent"])
    fetched = stack.rest("GET", f"/billing/webhooks/{created['id']}").json()
    assert fetched == {**created, "secret": ""}
    listed = stack.rest("GET", f"/billing/webhooks/tenant/{tenant_id}").json()["endpoints"]
    assert listed == [fetched]

    rotated = stack.rest("POST", f"/billing/webhooks/{created['id']}/rotate-secret", body={}).json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != secret
    assert "previous_secret_expires_at" in rotated

    assert stack.rest("DELETE", f"/billing/webhooks/{created['id']}").status == 200
    assert stack.rest("GET", f"/billing/webhooks/{created['id']}").status == 404
    assert stack.rest("GET", f"/billing/webhooks/tenant/{tenant_id}").json()["endpoints"] == []


def test_grpc_door_creates_and_lists(stack, tenant_id):
    stub = stack.stub(webhook_pb2_grpc.WebhookServiceStub)
    auth = stack.auth(stack.admin_key)
    created = stub.CreateWebhookEndpoint(
        webhook_pb2.CreateWebhookEndpointRequest(tenant_id=tenant_id, url="https://hooks.example.com/billing"),
        metadata=auth,
    )
    assert created.secret.startswith("whsec_") and list(created.event_types) == []
    listed = stub.ListTenantWebhookEndpoints(
        webhook_pb2.ListTenantWebhookEndpointsRequest(tenant_id=tenant_id), metadata=auth
    )
    assert [e.id for e in listed.endpoints] == [created.id] and listed.endpoints[0].secret == ""
    with pytest.raises(grpc.RpcError) as error:
        stub.GetWebhookEndpoint(webhook_pb2.GetWebhookEndpointRequest(id="we_missing"), metadata=auth)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    "body, field",
    [
        ({"url": "ftp://hooks.example.com/x"}, "url"),
        ({"url": "http://hooks.example.com/x"}, "url"),  # http:// only to private addresses
        ({"url": ""}, "url"),
        ({"url": "https://hooks.example.com/x", "event_types": ["invoice.paid", "invoice.eaten"]}, "event_types[1]"),
        ({"url": "https://hooks.example.com/x", "tenant_id": ""}, "tenant_id"),
    ],
)
def test_bad_input_is_400_naming_the_field(stack, tenant_id, body, field):
    reply = stack.rest("POST", "/billing/webhooks", body={"tenant_id": tenant_id, **body})
    assert reply.status == 400, reply.body
    violations = [v["field"] for d in reply.json()["details"] for v in d.get("field_violations", [])]
    assert violations == [field]


def test_tenants_see_only_their_own(stack, tenant_id):
    other = f"{tenant_id}-other"
    theirs = register(stack, other, "http://127.0.0.1:9/hook")
    key = stack.tenant_key(tenant_id)
    mine = register(stack, tenant_id, "http://127.0.0.1:9/mine", key=key)
    assert mine["tenant_id"] == tenant_id
    base = f"/billing/webhooks/{theirs['id']}"
    for method, path in [
        ("GET", base),
        ("DELETE", base),
        ("GET", f"{base}/deliveries"),
        ("POST", f"{base}/rotate-secret"),
        ("POST", f"{base}/deliveries/dlv_x/resend"),
    ]:
        reply = stack.rest(method, path, key=key, body={} if method == "POST" else None)
        assert reply.status == 404, (method, path, reply.body)
    assert stack.rest("GET", f"/billing/webhooks/tenant/{other}", key=key).status == 403
    reply = stack.rest("POST", "/billing/webhooks", key=key, body={"tenant_id": other, "url": "http://127.0.0.1:9/x"})
    assert reply.status == 403
    assert stack.rest("GET", base).status == 200  # still there


# --- events, signed, with the resource as REST renders it ----------------------------------------


def test_subscription_events_are_signed_and_carry_the_rest_rendering(stack, tenant_id, dispatcher):
    with Receiver() as receiver:
        endpoint = register(stack, tenant_id, receiver.url)
        created = stack.subscribe(tenant_id)
        updated = stack.rest("PUT", f"/billing/subscriptions/{created['id']}", body={"plan_id": "premium"}).json()
        canceled = stack.rest("DELETE", f"/billing/subscriptions/{created['id']}").json()
        assert stack.rest("DELETE", f"/billing/subscriptions/{created['id']}").status == 200  # no change, no event
        assert drain(dispatcher) == ["SUCCEEDED"] * 3
    payloads = [verified(endpoint["secret"], r) for r in receiver.requests]
    assert sorted(p["type"] for p in payloads) == [
        "subscription.canceled",
        "subscription.created",
        "subscription.updated",
    ]
    by_type = {p["type"]: p for p in payloads}
    assert by_type["subscription.created"]["data"] == created
    assert by_type["subscription.updated"]["data"] == updated
    assert by_type["subscription.canceled"]["data"] == canceled
    for payload, request in zip(payloads, receiver.requests, strict=True):
        assert payload["id"] == request.headers["webhook-id"] and payload["id"].startswith("msg_")
        assert set(payload) == {"id", "type", "created_at", "data"}
    listed = deliveries(stack, endpoint["id"])
    assert [(d["status"], d["attempts"], d["last_status_code"]) for d in listed] == [("SUCCEEDED", 1, 200)] * 3
    with db.session():  # the same, as plain data for pages (the customer portal)
        [overview] = webhooks.tenant_overview(tenant_id)
    assert (overview["id"], overview["url"], "secret" in overview) == (endpoint["id"], receiver.url, False)
    assert [(d["id"], d["event_type"], d["status"]) for d in overview["deliveries"]] == [
        (d["id"], d["event_type"], d["status"]) for d in listed
    ]


def test_invoice_events_reach_only_endpoints_that_want_them(stack, tenant_id, dispatcher):
    with Receiver() as everything, Receiver() as paid_only:
        all_secret = register(stack, tenant_id, everything.url)["secret"]
        register(stack, tenant_id, paid_only.url, ["invoice.paid"])
        subscription_id = insert_subscription(tenant_id).id
        invoice = stack.generate_invoice(subscription_id).json()
        sent = stack.rest("PUT", f"/billing/invoices/{invoice['id']}", body={"status": "SENT"}).json()
        paid = stack.rest("PUT", f"/billing/invoices/{invoice['id']}", body={"status": "PAID"}).json()
        drain(dispatcher)
    got = {p["type"]: p["data"] for p in (verified(all_secret, r) for r in everything.requests)}
    assert got == {"invoice.created": invoice, "invoice.sent": sent, "invoice.paid": paid}
    assert [r.body for r in paid_only.requests] == [r.body for r in everything.requests if b'"invoice.paid"' in r.body]


def test_a_rolled_back_change_emits_nothing(stack, tenant_id, dispatcher):
    with Receiver() as receiver:
        register(stack, tenant_id, receiver.url)
        admin = Principal(key_id=0, scope=KeyScope.ADMIN)
        with db.session(), db.database.atomic() as transaction:
            subscriptions.create_subscription(
                admin, subscriptions.NewSubscription(tenant_id, "standard", "ops@example.com"), now=dt.datetime.now(UTC)
            )
            transaction.rollback()
        stack.subscribe(tenant_id)
        assert (
            stack.rest(
                "POST",
                "/billing/subscriptions",
                body={  # refused by the database: rolled back
                    "tenant_id": tenant_id,
                    "plan_id": "free",
                    "billing_email": "ops@example.com",
                },
            ).status
            == 409
        )
        drain(dispatcher)
    assert [r.body.count(b"subscription.created") for r in receiver.requests] == [1]
    with db.session():
        assert WebhookEvent.select().where(WebhookEvent.tenant_id == tenant_id).count() == 1


# --- delivery: retries, failure, crash, concurrency, rotation -----------------------------------


def test_retries_keep_the_webhook_id_and_deliver_once_after_recovery(stack, tenant_id, dispatcher, clock):
    with Receiver(answer=lambda n: 500 if n <= 2 else 204) as receiver:
        endpoint = register(stack, tenant_id, receiver.url)
        stack.subscribe(tenant_id)
        assert drain(dispatcher) == ["PENDING"]
        [delivery] = deliveries(stack, endpoint["id"])
        assert (delivery["attempts"], delivery["last_status_code"], delivery["last_error"]) == (1, 500, "HTTP 500")
        due = dt.datetime.fromisoformat(delivery["next_attempt_at"])
        assert dt.timedelta(seconds=3.5) <= due - clock() <= dt.timedelta(seconds=5.5)  # 5 s, jittered
        clock.advance(seconds=6)
        assert drain(dispatcher) == ["PENDING"]
        clock.advance(minutes=6)
        assert drain(dispatcher) == ["SUCCEEDED"]
        clock.advance(days=2)
        assert drain(dispatcher) == []
    assert len(set(receiver.ids())) == 1 and len(receiver.requests) == 3
    assert len({r.body for r in receiver.requests}) == 1
    [delivery] = deliveries(stack, endpoint["id"])
    assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == ("SUCCEEDED", 3, 204)


def test_after_the_last_retry_the_delivery_fails_and_resend_queues_it_again(stack, tenant_id, dispatcher, clock):
    status = {"code": 302}
    with Receiver(answer=lambda n: status["code"]) as receiver:
        endpoint = register(stack, tenant_id, receiver.url)
        stack.subscribe(tenant_id)
        for _ in range(rules.MAX_ATTEMPTS):
            drain(dispatcher)
            clock.advance(hours=12)
        [delivery] = deliveries(stack, endpoint["id"])
        assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == ("FAILED", 8, 302)
        assert "redirects are not followed" in delivery["last_error"]
        assert {r.path for r in receiver.requests} == {"/hook"}  # the Location was never followed
        resent = stack.rest(
            "POST", f"/billing/webhooks/{endpoint['id']}/deliveries/{delivery['id']}/resend", body={}
        ).json()
        assert (resent["status"], resent["attempts"]) == ("PENDING", 0)
        status["code"] = 200
        assert drain(dispatcher) == ["SUCCEEDED"]
    assert len(receiver.requests) == 9 and len(set(receiver.ids())) == 1


def test_an_endpoint_failing_for_5_days_is_disabled_until_a_resend(stack, tenant_id, dispatcher, clock):
    with Receiver(answer=lambda n: 503) as receiver:
        endpoint = register(stack, tenant_id, receiver.url)
        subscription = stack.subscribe(tenant_id)
        assert drain(dispatcher) == ["PENDING"]
        clock.advance(days=5, minutes=1)
        assert drain(dispatcher) == ["FAILED"]  # the run of failures is older than 5 days: disabled now
        assert "disabled_at" in stack.rest("GET", f"/billing/webhooks/{endpoint['id']}").json()
        stack.rest("PUT", f"/billing/subscriptions/{subscription['id']}", body={"plan_id": "premium"})
        [delivery] = deliveries(stack, endpoint["id"])  # nothing queued for a disabled endpoint
        assert (delivery["status"], delivery["attempts"]) == ("FAILED", 2)
        assert "disabled" in delivery["last_error"]
        stack.rest("POST", f"/billing/webhooks/{endpoint['id']}/deliveries/{delivery['id']}/resend", body={})
        assert "disabled_at" not in stack.rest("GET", f"/billing/webhooks/{endpoint['id']}").json()
        assert drain(dispatcher) == ["PENDING"]
    assert len(receiver.requests) == 3


def test_a_crash_mid_send_loses_nothing(stack, tenant_id, clock):
    def dies_after_sending(*args, **kwargs):
        outcome = loopback_post(*args, **kwargs)  # the receiver has it; the record never comes
        raise SystemExit(f"killed after {outcome}")

    with Receiver() as receiver:
        endpoint = register(stack, tenant_id, receiver.url)
        stack.subscribe(tenant_id)
        crashing = dispatcher_at(clock, post=dies_after_sending)
        [future] = crashing.pump()
        assert isinstance(future.exception(timeout=30), SystemExit)
        crashing.close()
        restarted = dispatcher_at(clock)
        assert drain(restarted) == []  # still leased to the dead dispatcher
        clock.advance(seconds=webhook_delivery.LEASE.total_seconds() + 1)
        assert drain(restarted) == ["SUCCEEDED"]
        restarted.close()
    assert len(receiver.requests) == 2 and len(set(receiver.ids())) == 1
    [delivery] = deliveries(stack, endpoint["id"])
    assert (delivery["status"], delivery["attempts"]) == ("SUCCEEDED", 1)


def test_a_slow_endpoint_does_not_delay_another(stack, tenant_id, dispatcher):
    release = threading.Event()
    with Receiver(hold=release) as slow, Receiver() as fast:
        register(stack, tenant_id, slow.url)
        register(stack, tenant_id, fast.url)
        subscription = stack.subscribe(tenant_id)
        started = dispatcher.pump()
        assert len(started) == 2
        assert slow.arrived.wait(10) and fast.arrived.wait(10)
        # The slow endpoint holds its answer (up to 10 s); the fast one is done, and its next event goes too.
        done, _ = futures.wait(started, timeout=10, return_when=futures.FIRST_COMPLETED)
        assert [f.result() for f in done] == ["SUCCEEDED"] and len(fast.requests) == 1
        stack.rest("PUT", f"/billing/subscriptions/{subscription['id']}", body={"plan_id": "premium"})
        assert drain_while_held(dispatcher, release) == ["SUCCEEDED"]
        assert len(fast.requests) == 2 and len(slow.requests) == 1 and not release.is_set()
        release.set()
        assert sorted(f.result(timeout=30) for f in started) == ["SUCCEEDED", "SUCCEEDED"]


def drain_while_held(dispatcher: Dispatcher, held: threading.Event) -> list[str | None]:
    """drain, but without waiting on the held call (its endpoint is busy, so nothing new of it starts)."""
    statuses = []
    while started := dispatcher.pump():
        statuses += [future.result(timeout=30) for future in started]
        assert not held.is_set()
    return statuses


def test_rotation_signs_with_both_secrets_for_24_hours(stack, tenant_id, clock):
    with Receiver() as receiver:
        endpoint = register(stack, tenant_id, receiver.url)
        old = endpoint["secret"]
        new = stack.rest("POST", f"/billing/webhooks/{endpoint['id']}/rotate-secret", body={}).json()["secret"]
        subscription = stack.subscribe(tenant_id)
        sender = dispatcher_at(clock)
        drain(sender)
        clock.advance(hours=25)
        stack.rest("DELETE", f"/billing/subscriptions/{subscription['id']}")
        drain(sender)
        sender.close()
    during, after = receiver.requests
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert verified(old, during) == verified(new, during)
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    verified(new, after)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        verified(old, after)


def test_deleting_an_endpoint_drops_its_pending_deliveries(stack, tenant_id, dispatcher):
    with Receiver() as receiver:
        endpoint = register(stack, tenant_id, receiver.url)
        stack.subscribe(tenant_id)
        stack.rest("DELETE", f"/billing/webhooks/{endpoint['id']}")
        assert drain(dispatcher) == []
    assert receiver.requests == []


# --- usage thresholds and the gateway's quota ---------------------------------------------------


def quota_events(tenant_id: str) -> int:
    with db.session():
        return (
            WebhookEvent.select()
            .where((WebhookEvent.tenant_id == tenant_id) & (WebhookEvent.type == "quota.exhausted"))
            .count()
        )


def track(stack, subscription_id: str, count: int, tag: str) -> None:
    reply = stack.track(subscription_id, [{"event_id": tag, "endpoint": "/v1/x", "count": count}])
    assert reply.json()["accepted"] == 1, reply.body


def test_usage_thresholds_once_each_and_quota_exhausted_once_per_period(stack, tenant_id, capped_plan, dispatcher):
    with Receiver() as receiver:
        secret = register(stack, tenant_id, receiver.url, ["usage.threshold_reached", "quota.exhausted"])["secret"]
        subscription_id = insert_subscription(
            tenant_id, plan=capped_plan, anchor=dt.datetime.now(UTC) - dt.timedelta(minutes=1)
        ).id
        track(stack, subscription_id, 23, "a")  # 76%
        track(stack, subscription_id, 1, "b")  # 80%
        track(stack, subscription_id, 5, "c")  # 96%
        track(stack, subscription_id, 2, "d")  # 103%
        track(stack, subscription_id, 1, "e")
        key = stack.tenant_key(tenant_id)
        assert [stack.gateway("GET", "/v1/items", key=key).status for _ in range(3)] == [429] * 3
        # The refusals reach the server with Envoy's access log: quota.exhausted follows them.
        poll(lambda: quota_events(tenant_id), lambda found: found == 1)
        drain(dispatcher)
    payloads = [verified(secret, r) for r in receiver.requests]
    thresholds = [p["data"] for p in payloads if p["type"] == "usage.threshold_reached"]
    assert [(d["threshold_percent"], d["requests"], d["included_requests"]) for d in thresholds] in (
        [(80, "24", "30"), (100, "31", "30")],
        [(100, "31", "30"), (80, "24", "30")],
    )
    [quota] = [p["data"] for p in payloads if p["type"] == "quota.exhausted"]
    assert (quota["subscription_id"], quota["plan_id"], quota["included_requests"]) == (
        subscription_id,
        capped_plan,
        "30",
    )


def test_the_scheduler_process_delivers_a_change_within_5_seconds(tmp_path):
    """`billing-scheduler run` (what `make run` starts) runs the dispatcher beside its jobs. Its
    own database: the process sends for real, and the session's database holds the fuzzers' URLs."""
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "OUTBOX_DIR": str(tmp_path / "out"),
    }
    env.pop("SMTP_URL", None)
    admin = Principal(key_id=0, scope=KeyScope.ADMIN)
    now = dt.datetime.now(UTC)
    with Receiver() as receiver, bound(url):
        env["BILLING_WEBHOOKS_ALLOW"] = f"127.0.0.1:{receiver.port}"
        migrations.migrate()
        catalogue.seed(catalogue.load(Settings().catalogue_path))
        secret = webhooks.create_endpoint(
            admin, webhooks.NewEndpoint("acme", receiver.url), now=now, allowed=allowed()
        ).secret
        scheduler = subprocess.Popen(
            [str(BIN / "billing-scheduler"), "run"], env=env, stderr=subprocess.PIPE, text=True
        )
        try:
            while "webhook dispatcher started" not in (line := scheduler.stderr.readline()):
                assert line, "the scheduler exited"
            subscriptions.create_subscription(
                admin, subscriptions.NewSubscription("acme", "free", "ops@acme.test"), now=dt.datetime.now(UTC)
            )
            assert receiver.arrived.wait(5)
        finally:
            scheduler.send_signal(signal.SIGTERM)
            scheduler.communicate(timeout=30)
    assert scheduler.returncode == 0
    assert verified(secret, receiver.requests[0])["type"] == "subscription.created"
