"""services/credits.py called directly on a SQLite database of its own, with an explicit `now` (no
Envoy, no gRPC server): a grant's defaults and refusals at exactly their bounds (an expiry exactly
now, a description and a grant_id exactly at their lengths), what a grant, a void, an invoice's
credit and its restoring write to the ledger (amounts, kinds, instants, invoice ids), grants
expiring exactly now written off, balances per currency at exactly zero, credit notes of exactly
what is left of the invoice's total, their numbers, and the wording of every refusal. Fast enough
for the mutation gate (`[tool.mutation-gate]` in pyproject.toml)."""

from __future__ import annotations

import datetime as dt
import json
import types
import uuid

import peewee as pw
import pytest

from factories import insert_subscription
from server.domain import credits as rules
from server.domain import webhooks
from server.domain.access import KeyScope, Principal
from server.domain.credits import EntryKind
from server.domain.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from server.domain.invoicing import InvoiceLine
from server.domain.issuer import Issuer
from server.domain.periods import period
from server.persistence import db
from server.persistence.models import (
    CreditGrant,
    CreditLedgerEntry,
    CreditNote,
    Invoice,
    NumberSequence,
    Subscription,
    WebhookEvent,
)
from server.services import credits, invoices, spend_control
from server.services import webhooks as endpoints
from stores import own_database

UTC = dt.timezone.utc
US = dt.timedelta(microseconds=1)
DAY = dt.timedelta(days=1)
ADMIN = Principal(key_id=0, scope=KeyScope.ADMIN)
ISSUER = Issuer("Billing Co", "1 Loopback Road", "TAX-1")
ANCHOR = dt.datetime(2026, 1, 31, 9, 30, tzinfo=UTC)
FIRST = period(ANCHOR, 0)  # Jan 31 09:30 -> Feb 28 09:30
LATER = ANCHOR + DAY


@pytest.fixture(scope="module", autouse=True)
def credit_database(tmp_path_factory):
    with own_database("sqlite", tmp_path_factory.mktemp("credits")), db.session():
        yield


@pytest.fixture
def tenant() -> str:
    """A new tenant, with a webhook endpoint so every event it is sent is written."""
    tenant_id = f"cr-{uuid.uuid4().hex[:10]}"
    endpoints.create_endpoint(
        ADMIN,
        endpoints.NewEndpoint(tenant_id, "http://127.0.0.1:9/hook"),
        now=ANCHOR,
        allowed=frozenset({webhooks.target("127.0.0.1", 9)}),
    )
    return tenant_id


def tenant_key(tenant_id: str) -> Principal:
    return Principal(key_id=7, scope=KeyScope.TENANT, tenant_id=tenant_id)


def grant(tenant_id: str, cents: int, *, now: dt.datetime = ANCHOR, **fields) -> credits.CreditGrantView:
    return credits.create_grant(ADMIN, credits.NewGrant(tenant_id, cents, **fields), now=now)


def ledger(tenant_id: str) -> list[tuple[str, str, int, str | None, dt.datetime]]:
    rows = CreditLedgerEntry.select().where(CreditLedgerEntry.tenant_id == tenant_id).order_by(CreditLedgerEntry.id)
    return [(row.grant_id, str(row.kind), row.amount_cents, row.invoice_id, at(row.at)) for row in rows]


def at(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def stored(grant_id: str) -> CreditGrant:
    return CreditGrant.get_by_id(grant_id)


def events_of(tenant_id: str, kind: str) -> list[dict]:
    rows = WebhookEvent.select().where((WebhookEvent.tenant_id == tenant_id) & (WebhookEvent.type == kind))
    return [json.loads(row.body) for row in rows.order_by(WebhookEvent.created_at, WebhookEvent.id)]


def refused(call, *args, **kwargs):
    with pytest.raises(Exception) as error:
        call(*args, **kwargs)
    return error.value


def next_ids(monkeypatch, *letters: str) -> None:
    """The ids credits.py gives next, in turn: each starts with its letter (which orders them)."""
    ids = iter([letter + uuid.uuid4().hex[1:] for letter in letters])
    monkeypatch.setattr(credits, "uuid", types.SimpleNamespace(uuid4=lambda: types.SimpleNamespace(hex=next(ids))))


def fields(error) -> tuple:
    return (type(error), error.reason, error.message, [v.field for v in error.violations])


# --- a grant: defaults, bounds, what it writes ------------------------------------------------------


def test_a_grant_defaults_to_usd_at_priority_50_and_writes_its_granted_entry_and_event(tenant):
    view = grant(tenant, 1234, now=ANCHOR)
    assert view.id.startswith("cg_") and len(view.id) == 35
    assert (view.tenant_id, view.amount_cents, view.remaining_cents, view.currency, view.priority) == (
        tenant,
        1234,
        1234,
        "USD",
        50,
    )
    assert (view.expires_at, view.description, at(view.created_at), view.voided_at) == (None, "", ANCHOR, None)
    row = stored(view.id)
    assert (row.remaining_cents, row.grant_key, row.amount_cents, row.priority, row.currency) == (
        1234,
        None,
        1234,
        50,
        "USD",
    )
    assert ledger(tenant) == [(view.id, "GRANTED", 1234, None, ANCHOR)]
    [created] = events_of(tenant, "credit_grant.created")
    assert created["created_at"] == "2026-01-31T09:30:00Z"
    assert created["data"]["id"] == view.id
    assert created["data"]["remaining_cents"] in (1234, "1234")
    assert credits.balances(tenant, ANCHOR) == {"USD": 1234}


def test_a_grants_own_figures_are_kept(tenant):
    expiry = ANCHOR + 3 * DAY
    view = grant(tenant, 5, currency="EUR", priority=1, expires_at=expiry, description="promo", grant_key="k1")
    assert (view.currency, view.priority, at(view.expires_at), view.description) == ("EUR", 1, expiry, "promo")
    assert stored(view.id).grant_key == "k1"
    assert grant(tenant, 5, priority=100).priority == 100


def test_grants_without_a_grant_id_are_each_new(tenant):
    first, second = grant(tenant, 100), grant(tenant, 200)
    assert first.id != second.id
    assert credits.balances(tenant, ANCHOR) == {"USD": 300}


def test_the_same_grant_id_returns_the_grant_it_created(tenant, monkeypatch):
    first = grant(tenant, 100, grant_key="once")
    inserted = []
    real = credits._insert_grant
    monkeypatch.setattr(credits, "_insert_grant", lambda *args: inserted.append(args) or real(*args))
    again = grant(tenant, 999, grant_key="once", now=LATER)
    assert again == first
    assert inserted == []  # found before any insert is tried
    assert grant(f"{tenant}-other", 50, grant_key="once").id != first.id  # per tenant
    assert credits.balances(tenant, LATER) == {"USD": 100}
    assert len(ledger(tenant)) == 1


def test_a_grant_id_taken_by_a_racing_call_returns_the_winners_grant(tenant, monkeypatch):
    winner = grant(tenant, 100, grant_key="race")
    real = credits._existing
    calls = []

    def late(tenant_id: str, grant_key: str):
        calls.append(grant_key)
        return None if len(calls) == 1 else real(tenant_id, grant_key)

    monkeypatch.setattr(credits, "_existing", late)
    assert grant(tenant, 999, grant_key="race") == winner
    assert calls == ["race", "race"]


def test_an_integrity_error_without_a_winner_is_raised(tenant, monkeypatch):
    monkeypatch.setattr(credits, "_existing", lambda tenant_id, grant_key: None)

    def clash(request, now, invoice_id=None):
        raise pw.IntegrityError("clash")

    monkeypatch.setattr(credits, "_insert_grant", clash)
    with pytest.raises(pw.IntegrityError):
        grant(tenant, 100, grant_key="x")


def test_an_expiry_exactly_now_is_refused_and_one_microsecond_later_is_taken(tenant):
    error = refused(grant, tenant, 100, now=ANCHOR, expires_at=ANCHOR)
    assert fields(error) == (InvalidArgument, "INVALID_ARGUMENT", "expires_at must be in the future", ["expires_at"])
    assert refused(grant, tenant, 100, now=ANCHOR, expires_at=ANCHOR - US).message == "expires_at must be in the future"
    assert at(grant(tenant, 100, now=ANCHOR, expires_at=ANCHOR + US).expires_at) == ANCHOR + US


def test_a_description_and_a_grant_id_exactly_at_their_lengths_are_taken_one_more_is_refused(tenant):
    assert grant(tenant, 1, description="d" * 256).description == "d" * 256
    error = refused(grant, tenant, 1, description="d" * 257)
    assert fields(error) == (
        InvalidArgument,
        "INVALID_ARGUMENT",
        "description must be at most 256 characters",
        ["description"],
    )
    assert stored(grant(tenant, 1, grant_key="g" * 128).id).grant_key == "g" * 128
    error = refused(grant, tenant, 1, grant_key="g" * 129)
    assert fields(error) == (
        InvalidArgument,
        "INVALID_ARGUMENT",
        "grant_id must be at most 128 characters",
        ["grant_id"],
    )


def test_a_grants_figures_and_tenant_are_checked(tenant):
    assert refused(grant, tenant, 0).violations[0].field == "amount_cents"
    assert refused(grant, tenant, 1, priority=0).violations[0].field == "priority"
    assert refused(grant, tenant, 1, currency="usd").violations[0].field == "currency"
    error = refused(grant, "", 1)
    assert (type(error), [v.field for v in error.violations]) == (InvalidArgument, ["tenant_id"])
    error = refused(grant, "bad tenant", 1)
    assert (error.reason, [v.field for v in error.violations]) == ("INVALID_IDENTIFIER", ["tenant_id"])


def test_only_an_admin_grants_or_voids(tenant):
    view = grant(tenant, 100)
    error = refused(credits.create_grant, tenant_key(tenant), credits.NewGrant(tenant, 1), now=ANCHOR)
    assert fields(error) == (PermissionDenied, "ADMIN_ONLY", "granting credit needs an admin key", [])
    error = refused(credits.void_grant, tenant_key(tenant), view.id, now=ANCHOR)
    assert fields(error) == (PermissionDenied, "ADMIN_ONLY", "voiding credit needs an admin key", [])
    assert stored(view.id).voided_at is None


def test_a_grant_and_a_void_announce_the_tenants_spend_lines_at_their_own_instant(tenant):
    sub = insert_subscription(tenant, plan="premium", anchor=ANCHOR)
    Subscription.update(spend_cap_cents=100).where(Subscription.id == sub.id).execute()  # the fee is past it
    view = grant(tenant, 20_000, now=LATER)
    [reached] = events_of(tenant, "spend_cap.reached")
    assert reached["created_at"] == "2026-02-01T09:30:00Z"
    assert events_of(tenant, "credits.exhausted") == []
    credits.void_grant(ADMIN, view.id, now=LATER + DAY)
    [exhausted] = events_of(tenant, "credits.exhausted")
    assert exhausted["created_at"] == "2026-02-02T09:30:00Z"


def test_a_grant_forgets_the_tenants_cached_spend(tenant):
    before = spend_control._generations.get(tenant)
    view = grant(tenant, 100)
    after_grant = spend_control._generations.get(tenant)
    assert after_grant is not None and after_grant != before
    credits.void_grant(ADMIN, view.id, now=LATER)
    assert spend_control._generations.get(tenant) not in (None, after_grant)


# --- voiding --------------------------------------------------------------------------------------


def test_a_void_takes_what_remains_once_and_a_second_is_refused(tenant):
    view = grant(tenant, 700)
    voided = credits.void_grant(ADMIN, view.id, now=LATER)
    assert (voided.remaining_cents, at(voided.voided_at), voided.amount_cents) == (0, LATER, 700)
    row = stored(view.id)
    assert (row.remaining_cents, at(row.voided_at)) == (0, LATER)
    assert ledger(tenant) == [(view.id, "GRANTED", 700, None, ANCHOR), (view.id, "VOIDED", -700, None, LATER)]
    assert credits.balances(tenant, LATER) == {"USD": 0}
    error = refused(credits.void_grant, ADMIN, view.id, now=LATER + DAY)
    assert fields(error) == (FailedPrecondition, "GRANT_VOIDED", f"credit grant {view.id!r} is already voided", [])
    assert len(ledger(tenant)) == 2
    assert at(stored(view.id).voided_at) == LATER


def test_voiding_an_unknown_or_empty_grant_is_not_found(monkeypatch):
    locked = []
    monkeypatch.setattr(credits, "for_update", lambda query, **options: locked.append(query) or query)
    for grant_id in ("cg_missing", ""):
        error = refused(credits.void_grant, ADMIN, grant_id, now=ANCHOR)
        assert fields(error) == (NotFound, "CREDIT_GRANT_NOT_FOUND", f"credit grant {grant_id!r} not found", [])
    assert len(locked) == 1  # an empty id is not looked up


def test_a_void_locks_the_grant_it_reads(tenant, monkeypatch):
    view = grant(tenant, 10)
    locked = []

    def spy(query, **options):
        locked.append(query.model)
        return query

    monkeypatch.setattr(credits, "for_update", spy)
    credits.void_grant(ADMIN, view.id, now=LATER)
    assert locked == [CreditGrant]


# --- balances and the tenant's view ---------------------------------------------------------------


def test_balances_per_currency_sorted_with_a_grant_expiring_exactly_now_spent_out(tenant):
    expiry = ANCHOR + 2 * DAY
    grant(tenant, 300, currency="USD", expires_at=expiry)
    grant(tenant, 40, currency="USD")
    grant(tenant, 5, currency="EUR")
    grant(tenant, 7, currency="GBP")
    assert list(credits.balances(tenant, expiry - US)) == ["EUR", "GBP", "USD"]
    assert credits.balances(tenant, expiry - US) == {"EUR": 5, "GBP": 7, "USD": 340}
    assert credits.balances(tenant, expiry) == {"EUR": 5, "GBP": 7, "USD": 40}
    assert credits.balances(f"{tenant}-none", expiry) == {}


def test_the_tenants_credits_newest_grant_first_and_the_latest_ledger_entries(tenant, monkeypatch):
    next_ids(monkeypatch, "f", "b", "a", "c")  # the oldest grant has the greatest id; of two alike the first
    old = grant(tenant, 100, now=ANCHOR)
    same = [grant(tenant, 10, now=LATER, currency="EUR"), grant(tenant, 20, now=LATER, currency="EUR")]
    credits.void_grant(ADMIN, old.id, now=LATER + DAY)
    grant(f"{tenant}-other", 5, now=LATER + DAY)  # another tenant's, the latest: neither shown nor counted
    seen = credits.tenant_credits(tenant_key(tenant), tenant, now=LATER + DAY)
    assert seen.balances == {"EUR": 30, "USD": 0}
    assert list(seen.balances) == ["EUR", "USD"]
    assert [g.id for g in seen.grants] == [same[0].id, same[1].id, old.id]
    assert seen.grants[-1].voided_at is not None
    assert [(e.kind, e.amount_cents, e.grant_id, e.currency, e.invoice_id, at(e.at)) for e in seen.ledger] == [
        ("VOIDED", -100, old.id, "USD", None, LATER + DAY),
        ("GRANTED", 20, same[1].id, "EUR", None, LATER),
        ("GRANTED", 10, same[0].id, "EUR", None, LATER),
        ("GRANTED", 100, old.id, "USD", None, ANCHOR),
    ]


def test_the_tenants_credits_balance_at_exactly_the_expiry(tenant):
    expiry = ANCHOR + DAY
    grant(tenant, 100, expires_at=expiry)
    assert credits.tenant_credits(ADMIN, tenant, now=expiry - US).balances == {"USD": 100}
    assert credits.tenant_credits(ADMIN, tenant, now=expiry).balances == {"USD": 0}


def test_the_ledger_shows_the_latest_100_entries(tenant):
    view = grant(tenant, 1000)
    CreditLedgerEntry.insert_many(
        [dict(tenant_id=tenant, grant=view.id, kind="APPLIED", amount_cents=-1, at=LATER) for _ in range(100)]
    ).execute()
    seen = credits.tenant_credits(ADMIN, tenant, now=LATER).ledger
    assert len(seen) == 100
    assert {e.kind for e in seen} == {"APPLIED"}  # the GRANTED one, the oldest, is left out


def test_the_tenants_credits_are_its_own(tenant):
    error = refused(credits.tenant_credits, tenant_key("someone-else"), tenant, now=ANCHOR)
    assert (type(error), error.reason) == (PermissionDenied, "TENANT_MISMATCH")
    error = refused(credits.tenant_credits, ADMIN, "bad tenant", now=ANCHOR)
    assert (type(error), error.reason) == (InvalidArgument, "INVALID_IDENTIFIER")
    assert credits.tenant_credits(ADMIN, tenant, now=ANCHOR) == credits.TenantCredits({}, [], [])


# --- an invoice's credit --------------------------------------------------------------------------


def test_apply_writes_off_a_grant_expiring_exactly_now_and_pays_from_the_rest(tenant, monkeypatch):
    now = ANCHOR + 5 * DAY
    due = grant(tenant, 300, expires_at=now, priority=1)
    later = grant(tenant, 500, expires_at=now + US, priority=2)
    spare = grant(tenant, 900, priority=3)
    grant(tenant, 50, currency="EUR", priority=1)
    locked = []

    def spy(query, **options):
        locked.append((query.model, query.sql()[0]))
        return query

    monkeypatch.setattr(credits, "for_update", spy)
    with db.database.atomic():
        applied = credits.apply_to_invoice(tenant, "USD", 600, now)
    [(model, sql)] = locked
    assert model is CreditGrant
    assert sql.endswith('ORDER BY "t1"."id"')  # in id order: two lockers never deadlock on PostgreSQL
    assert applied == [
        rules.Entry(later.id, EntryKind.APPLIED, -500),
        rules.Entry(spare.id, EntryKind.APPLIED, -100),
    ]
    assert ledger(tenant)[-1] == (due.id, "EXPIRED", -300, None, now)
    assert stored(due.id).remaining_cents == 0
    assert stored(later.id).remaining_cents == 500  # applied is recorded by the caller
    credits.record_applied(tenant, "in_test", applied, now)
    assert ledger(tenant)[-2:] == [
        (later.id, "APPLIED", -500, "in_test", now),
        (spare.id, "APPLIED", -100, "in_test", now),
    ]
    assert (stored(later.id).remaining_cents, stored(spare.id).remaining_cents) == (0, 800)
    assert credits.balances(tenant, now) == {"EUR": 50, "USD": 800}


def test_a_debit_of_exactly_the_balance_leaves_zero(tenant):
    view = grant(tenant, 250)
    with db.database.atomic():
        applied = credits.apply_to_invoice(tenant, "USD", 250, LATER)
        credits.record_applied(tenant, "in_exact", applied, LATER)
    assert applied == [rules.Entry(view.id, EntryKind.APPLIED, -250)]
    assert credits.balances(tenant, LATER) == {"USD": 0}
    with db.database.atomic():
        assert credits.apply_to_invoice(tenant, "USD", 1, LATER) == []


def test_credit_lines_are_one_negative_line_per_grant_used():
    entries = [rules.Entry("cg_a", EntryKind.APPLIED, -500), rules.Entry("cg_b", EntryKind.APPLIED, -7)]
    assert credits.credit_lines(entries) == [
        InvoiceLine("Credits applied", "1", "credit", "-500", -500, -500),
        InvoiceLine("Credits applied", "1", "credit", "-7", -7, -7),
    ]
    assert credits.credit_lines([]) == []


def invoiced(tenant_id: str, plan: str = "premium") -> Invoice:
    sub = insert_subscription(tenant_id, plan=plan, anchor=ANCHOR)
    view = invoices.generate_invoice(sub.id, now=FIRST.end, issuer=ISSUER, principal=ADMIN)
    return Invoice.get_by_id(view.id)


def test_restoring_gives_back_what_the_invoice_took_and_writes_off_what_expired_since(tenant):
    expiry = FIRST.end + DAY
    short = grant(tenant, 600, priority=1, expires_at=expiry)
    long = grant(tenant, 1000, priority=2)
    invoice = invoiced(tenant)  # premium: 9900, both grants spent
    assert credits.balances(tenant, FIRST.end) == {"USD": 0}
    before = len(ledger(tenant))
    with db.database.atomic():
        credits.restore_invoice(invoice, expiry)
    assert ledger(tenant)[before:] == [
        (short.id, "RESTORED", 600, invoice.id, expiry),
        (short.id, "EXPIRED", -600, invoice.id, expiry),
        (long.id, "RESTORED", 1000, invoice.id, expiry),
    ]
    assert (stored(short.id).remaining_cents, stored(long.id).remaining_cents) == (0, 1000)
    assert credits.balances(tenant, expiry) == {"USD": 1000}


def test_restoring_an_invoice_that_took_no_credit_writes_nothing(tenant, monkeypatch):
    grant(tenant, 100, currency="EUR")
    invoice = invoiced(tenant)
    before = ledger(tenant)
    monkeypatch.setattr(credits, "_locked_grants", lambda tenant_id: pytest.fail("locked for nothing"))
    with db.database.atomic():
        credits.restore_invoice(invoice, FIRST.end + DAY)
    assert ledger(tenant) == before


def test_restoring_writes_off_a_grant_expired_since_but_untouched_by_the_invoice(tenant):
    taken = grant(tenant, 500, priority=1)
    idle = grant(tenant, 300, currency="USD", priority=2, expires_at=FIRST.end + DAY)
    invoice = invoiced(tenant, plan="premium")
    # both spent by the 9900 invoice; a later grant that expires meanwhile
    spare = grant(tenant, 70, now=FIRST.end, expires_at=FIRST.end + DAY)
    when = FIRST.end + DAY
    before = len(ledger(tenant))
    with db.database.atomic():
        credits.restore_invoice(invoice, when)
    assert ledger(tenant)[before:] == [
        (spare.id, "EXPIRED", -70, None, when),
        (taken.id, "RESTORED", 500, invoice.id, when),
        (idle.id, "RESTORED", 300, invoice.id, when),
        (idle.id, "EXPIRED", -300, invoice.id, when),
    ]


# --- credit notes ---------------------------------------------------------------------------------


def sent(tenant_id: str) -> Invoice:
    invoice = invoiced(tenant_id)
    invoices.set_status(invoice.id, "SENT", now=FIRST.end, principal=ADMIN)
    return Invoice.get_by_id(invoice.id)


def note(invoice: Invoice, cents: int, reason: str = "", now: dt.datetime = FIRST.end + DAY):
    with db.database.atomic():
        return credits.create_note(ADMIN, invoice, cents, reason, now=now)


def test_note_numbers_start_at_1_and_advance_by_1(tenant):
    CreditNote.delete().execute()
    NumberSequence.delete().where(NumberSequence.name == "credit_note_number").execute()
    invoice = sent(tenant)
    first, _ = note(invoice, 100)
    second, _ = note(invoice, 100)
    assert (first.number, second.number) == ("CN-000001", "CN-000002")


def test_a_note_of_less_than_what_is_left_does_not_settle_and_exactly_what_is_left_does(tenant):
    invoice = sent(tenant)
    assert invoice.total_cents == 9900
    when = FIRST.end + DAY
    view, settled = note(invoice, 9899, "refund", when)
    assert settled is False
    assert view.id.startswith("cn_") and len(view.id) == 35
    assert view.number.startswith("CN-") and len(view.number) == 9
    assert (view.invoice_id, view.tenant_id, view.amount_cents, view.currency, view.reason, at(view.created_at)) == (
        invoice.id,
        tenant,
        9899,
        "USD",
        "refund",
        when,
    )
    assert invoice.credited_cents == 9899
    view2, settled = note(invoice, 1, "", when + US)
    assert settled is True
    assert invoice.credited_cents == 9900
    assert [n.id for n in credits.list_notes(ADMIN, invoice)] == [view.id, view2.id]
    [first, second] = events_of(tenant, "credit_note.created")
    assert (first["data"]["id"], first["data"]["number"], first["created_at"]) == (
        view.id,
        view.number,
        "2026-03-01T09:30:00Z",
    )
    assert second["data"]["id"] == view2.id
    assert CreditGrant.select().where(CreditGrant.tenant_id == tenant).count() == 0
    error = refused(note, invoice, 1)
    assert (type(error), error.reason, [v.field for v in error.violations]) == (
        InvalidArgument,
        "CREDIT_NOTE_EXCEEDS_TOTAL",
        ["amount_cents"],
    )


def test_a_note_of_exactly_the_total_on_a_sent_invoice_settles_it(tenant):
    invoice = sent(tenant)
    view = invoices.add_credit_note(invoice.id, 9900, "all", now=FIRST.end + DAY, principal=ADMIN)
    assert view.amount_cents == 9900
    assert Invoice.get_by_id(invoice.id).status == "PAID"
    error = refused(note, invoice, 9901)
    assert error.reason == "CREDIT_NOTE_EXCEEDS_TOTAL"


def test_a_note_on_a_paid_invoice_is_granted_back_as_credit_in_its_currency(tenant):
    invoice = sent(tenant)
    invoices.set_status(invoice.id, "PAID", now=FIRST.end, principal=ADMIN)
    invoice = Invoice.get_by_id(invoice.id)
    when = FIRST.end + DAY
    view, settled = note(invoice, 9900, "", when)
    assert settled is False
    [row] = CreditGrant.select().where(CreditGrant.tenant_id == tenant)
    assert (row.amount_cents, row.remaining_cents, row.currency, row.priority, row.expires_at, row.grant_key) == (
        9900,
        9900,
        "USD",
        50,
        None,
        None,
    )
    assert row.description == f"Credit note {view.number} on invoice {invoice.number}"
    assert ledger(tenant) == [(row.id, "GRANTED", 9900, invoice.id, when)]
    assert [e["data"]["id"] for e in events_of(tenant, "credit_grant.created")] == [row.id]
    assert credits.balances(tenant, when) == {"USD": 9900}


def test_a_notes_reason_exactly_at_its_length_is_taken_one_more_is_refused(tenant):
    invoice = sent(tenant)
    assert note(invoice, 1, "r" * 512)[0].reason == "r" * 512
    error = refused(note, invoice, 1, "r" * 513)
    assert fields(error) == (InvalidArgument, "INVALID_ARGUMENT", "reason must be at most 512 characters", ["reason"])
    assert invoice.credited_cents == 1


def test_a_note_needs_an_admin_and_a_creditable_invoice(tenant):
    invoice = invoiced(tenant)
    error = refused(credits.create_note, tenant_key(tenant), invoice, 1, "", now=FIRST.end)
    assert fields(error) == (PermissionDenied, "ADMIN_ONLY", "issuing a credit note needs an admin key", [])
    error = refused(note, invoice, 1)
    assert (error.reason, [v.field for v in error.violations]) == ("INVOICE_NOT_CREDITABLE", ["invoice_id"])
    assert CreditNote.select().where(CreditNote.invoice == invoice.id).count() == 0


def test_notes_at_the_same_instant_are_listed_in_id_order(tenant, monkeypatch):
    invoice = sent(tenant)
    next_ids(monkeypatch, "f", "e", "a")
    for _ in range(3):
        note(invoice, 1, now=FIRST.end + DAY)
    listed = [n.id for n in credits.list_notes(ADMIN, invoice)]
    assert [i[:4] for i in listed] == ["cn_a", "cn_e", "cn_f"]


def test_notes_are_listed_oldest_first_for_their_tenant_only(tenant, monkeypatch):
    invoice = sent(tenant)
    next_ids(monkeypatch, "a", "f")  # the later note has the lesser id
    late, _ = note(invoice, 2, now=FIRST.end + 2 * DAY)
    early, _ = note(invoice, 1, now=FIRST.end + DAY)
    assert [n.id for n in credits.list_notes(tenant_key(tenant), invoice)] == [early.id, late.id]
    error = refused(credits.list_notes, tenant_key("someone-else"), invoice)
    assert (type(error), error.reason, error.message) == (
        NotFound,
        "INVOICE_NOT_FOUND",
        f"invoice {invoice.id!r} not found",
    )
