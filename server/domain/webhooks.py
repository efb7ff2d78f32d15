"""Webhook rules, pure: event types, Standard Webhooks signing, which URLs may be called, and
the Svix retry schedule. No I/O here; time and randomness come from the caller."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import hashlib
import hmac
import ipaddress
import urllib.parse
from collections.abc import Iterable

from server.domain import urls
from server.domain.errors import FieldViolation, InvalidArgument
from server.domain.invoice_state import InvoiceStatus
from server.domain.usage import ALERT_THRESHOLDS


class EventType(enum.StrEnum):
    """What an event announces: its `type`, and what an endpoint subscribes to."""

    SUBSCRIPTION_CREATED = "subscription.created"
    SUBSCRIPTION_UPDATED = "subscription.updated"
    SUBSCRIPTION_CANCELED = "subscription.canceled"
    SUBSCRIPTION_TRIAL_WILL_END = "subscription.trial_will_end"
    INVOICE_CREATED = "invoice.created"
    INVOICE_SENT = "invoice.sent"
    INVOICE_PAID = "invoice.paid"
    INVOICE_OVERDUE = "invoice.overdue"
    INVOICE_VOIDED = "invoice.voided"
    USAGE_THRESHOLD_REACHED = "usage.threshold_reached"
    QUOTA_EXHAUSTED = "quota.exhausted"
    CREDIT_GRANT_CREATED = "credit_grant.created"
    CREDITS_LOW = "credits.low"
    CREDITS_EXHAUSTED = "credits.exhausted"
    SPEND_CAP_REACHED = "spend_cap.reached"
    CREDIT_NOTE_CREATED = "credit_note.created"


# The invoice status a transition enters -> the event it announces.
INVOICE_STATUS_EVENTS = {
    InvoiceStatus.SENT: EventType.INVOICE_SENT,
    InvoiceStatus.PAID: EventType.INVOICE_PAID,
    InvoiceStatus.OVERDUE: EventType.INVOICE_OVERDUE,
    InvoiceStatus.VOID: EventType.INVOICE_VOIDED,
}


class DeliveryStatus(enum.StrEnum):
    """A delivery's stored status (WebhookDelivery.Status in the proto, by name)."""

    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
PREVIOUS_SECRET_GRACE = dt.timedelta(hours=24)

# Svix's schedule: the first attempt at once, then these delays after each failure; after the
# last one fails the delivery is FAILED. Each delay is jittered by up to JITTER either way, so
# endpoints that failed together are not retried in lock step.
RETRY_DELAYS = tuple(dt.timedelta(seconds=s) for s in (5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600))
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
JITTER = 0.1
# An endpoint whose attempts have all failed for this long is disabled (Svix: 5 days).
DISABLE_AFTER = dt.timedelta(days=5)
# A 2xx must come within this; slower is a failure, retried.
RESPONSE_TIMEOUT_SECONDS = 15.0


def new_secret(random_bytes: bytes) -> str:
    """`whsec_` + base64 of the 32 random bytes the caller drew (secrets.token_bytes)."""
    if len(random_bytes) != SECRET_BYTES:
        raise ValueError(f"a signing secret needs {SECRET_BYTES} random bytes")
    return SECRET_PREFIX + base64.b64encode(random_bytes).decode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """One Standard Webhooks signature: `v1,` + base64(HMAC-SHA256(secret's bytes, `id.ts.body`))."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(secrets: Iterable[str], message_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header: one signature per live secret, space-separated (a receiver
    holding either the new or the old secret during a rotation verifies)."""
    return " ".join(sign(secret, message_id, timestamp, body) for secret in secrets)


def headers(secrets: Iterable[str], message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets, message_id, timestamp, body),
    }


# An address and port a webhook may reach although the address is not public: what the operator
# lists in BILLING_WEBHOOKS_ALLOW, as `target` normalizes it.
Target = tuple[str, int]
IP = ipaddress.IPv4Address | ipaddress.IPv6Address
ALLOW_SETTING = "BILLING_WEBHOOKS_ALLOW"
# RFC 6761: these names are the machine itself, whatever a resolver says.
LOOPBACK = ("127.0.0.1", "::1")
NOT_PRIVATE = f"url must not point at a loopback or private address:port that {ALLOW_SETTING} does not list"
NOT_HTTP = f"url must be https:// (http:// only to an address:port listed in {ALLOW_SETTING})"


def _address(address: str) -> IP:
    """The address a connection really reaches: an IPv4-mapped IPv6 address (::ffff:127.0.0.1)
    is its IPv4 address; a zone (fe80::1%eth0) is dropped."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def target(address: str, port: int) -> Target:
    """An allow-list entry, normalized as `may_call` compares it; ValueError if not an IP address."""
    return str(_address(address)), port


def is_public(ip: IP) -> bool:
    """A global address. IPv4-compatible IPv6 (::127.0.0.1, deprecated) is never public: Python
    calls most of ::/96 global, but it embeds an IPv4 address some stacks route to."""
    compatible = isinstance(ip, ipaddress.IPv6Address) and int(ip) >> 32 == 0
    return ip.is_global and not compatible


def may_call(address: str, port: int, scheme: str, allowed: frozenset[Target]) -> bool:
    """Whether a webhook may connect to `address` (a resolved or literal IP) on `port`: a public
    address over https, or an address:port the operator listed (over http or https). Anything
    else (loopback, private, link-local, unspecified, ...) would let a tenant reach this host's
    or this network's services, the billing service's own listeners among them."""
    ip = _address(address)
    return (str(ip), port) in allowed or (scheme == "https" and is_public(ip))


def _host_addresses(host: str) -> tuple[str, ...] | None:
    """The addresses a URL's host names without asking a resolver, or None for a DNS name (checked
    when it is resolved, at each delivery). `host` passed urls.url_problem, so an IPv4 address
    in any form but dotted decimal was refused there."""
    try:
        return (str(ipaddress.ip_address(host)),)
    except ValueError:
        pass
    if host == "localhost" or host.endswith(".localhost"):
        return LOOPBACK
    return None


def _parse_url(url: str) -> urllib.parse.SplitResult:
    """`url` split, once it is a URL a delivery can dial (server/domain/urls.py): an http(s)
    scheme, a valid host name or IP literal (an IPv4 address only in dotted decimal), a port in
    range, no credentials, no whitespace or control characters, at most MAX_URL characters. 400
    naming `url` otherwise."""
    if not url:
        raise InvalidArgument("url is required", field="url")
    if problem := urls.url_problem(url, ("https", "http")):
        raise InvalidArgument(f"url {problem}", field="url", reason="INVALID_URL")
    return urllib.parse.urlsplit(url)


def validate_url(url: str, *, allowed: frozenset[Target]) -> str:
    """An https:// URL to a DNS name or a public address, or (http:// or https://) to an
    address:port in `allowed` (BILLING_WEBHOOKS_ALLOW). 400 naming `url` otherwise. A DNS name is
    checked again, resolved, at each delivery (notifications/webhook_sender.py)."""
    url = (url or "").strip()
    parsed = _parse_url(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addresses = _host_addresses(parsed.hostname or "")
    if addresses is None:
        if parsed.scheme == "http":
            raise InvalidArgument(NOT_HTTP, field="url")
        return url
    if not any(may_call(address, port, parsed.scheme, allowed) for address in addresses):
        private = not all(is_public(_address(address)) for address in addresses)
        raise InvalidArgument(NOT_PRIVATE if private else NOT_HTTP, field="url")
    return url


def validate_event_types(event_types: Iterable[str]) -> list[str]:
    """Known types, each once, in the order given; [] means every type."""
    chosen: list[str] = []
    violations = []
    for index, event_type in enumerate(event_types):
        if event_type not in list(EventType):
            violations.append(
                FieldViolation(
                    f"event_types[{index}]", f"{event_type[:64]!r} is not an event type ({', '.join(EventType)})"
                )
            )
        elif event_type not in chosen:
            chosen.append(event_type)
    if violations:
        raise InvalidArgument("unknown event types", reason="UNKNOWN_EVENT_TYPE", violations=tuple(violations))
    return chosen


def wants(event_types: list[str], event_type: str) -> bool:
    return not event_types or event_type in event_types


def next_attempt(attempts: int, failed_at: dt.datetime, jitter: float) -> dt.datetime | None:
    """When to try again after the `attempts`-th attempt failed, or None: give up (FAILED).
    `jitter` in [-1, 1] (the caller's random draw) scales the delay by up to JITTER."""
    if attempts >= MAX_ATTEMPTS:
        return None
    delay = RETRY_DELAYS[max(attempts, 1) - 1]
    return failed_at + delay * (1 + JITTER * max(-1.0, min(1.0, jitter)))


def crossed_thresholds(before: int, after: int, included: int) -> list[int]:
    """The usage thresholds (percent of `included`) that `before` -> `after` requests crossed."""
    if included <= 0:
        return []
    return [t for t in ALERT_THRESHOLDS if before * 100 < included * t <= after * 100]


def live_secrets(
    secret: str, previous: str | None, previous_expires_at: dt.datetime | None, now: dt.datetime
) -> list[str]:
    """The secrets that sign at `now`: the current one, and the previous one within its grace."""
    if previous and previous_expires_at is not None and now < previous_expires_at:
        return [secret, previous]
    return [secret]


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one attempt got: the HTTP status (None if no answer came) and why it failed, if it did."""

    status_code: int | None
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.error is None and self.status_code is not None and 200 <= self.status_code < 300


def judge(status_code: int) -> Outcome:
    """Any 2xx is success; a redirect is not followed, so it is a failure like any other status."""
    if 200 <= status_code < 300:
        return Outcome(status_code)
    if 300 <= status_code < 400:
        return Outcome(status_code, f"HTTP {status_code}: redirects are not followed")
    return Outcome(status_code, f"HTTP {status_code}")
