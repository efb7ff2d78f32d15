"""A tenant's webhook must not reach this host or its network (the service's own listeners
first): registration refuses such URLs (400 naming `url`), and each delivery resolves the host,
checks every address it would use and connects to the one it checked. Only the address:ports
BILLING_WEBHOOKS_ALLOW lists are reachable, never a port of the service itself."""

from __future__ import annotations

import datetime as dt
import http.server
import socket
import threading

import pytest
from webhook_receiver import Receiver, allowed

from server.domain import webhooks as rules
from server.domain.access import KeyScope, Principal
from server.notifications import webhook_sender
from server.persistence import db
from server.scheduler.webhook_dispatcher import Dispatcher
from server.services import webhooks

HEADERS = {"content-type": "application/json"}


class Forbidden:
    """A listener a webhook must never reach (stands for Envoy's admin, a metrics port, ...):
    counts what reaches it."""

    def __init__(self, address: str = "127.0.0.1", port: int = 0) -> None:
        self.hits: list[str] = []
        hits = self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                hits.append(self.path)
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((address, port), Handler)
        self.port = self.server.server_address[1]

    def __enter__(self) -> Forbidden:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def resolving(monkeypatch, name: str, answers: list[str]) -> list[str]:
    """`name` resolves to the next of `answers` each time it is asked (any other host as usual);
    returns the list, which shrinks as answers are used."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host != name:
            return real(host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers.pop(0), port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


# --- at delivery: the sender ---------------------------------------------------------------------


def test_a_name_resolving_to_loopback_is_refused_unless_its_address_and_port_are_listed(monkeypatch):
    with Receiver() as receiver:
        resolving(monkeypatch, "hooks.test", ["127.0.0.1"] * 3)
        for scheme in ("https", "http"):
            outcome = webhook_sender.post(
                f"{scheme}://hooks.test:{receiver.port}/hook", HEADERS, b"{}", allowed=frozenset()
            )
            assert outcome.status_code is None and outcome.error.startswith("refused: "), outcome
        assert receiver.requests == []
        listed = frozenset({rules.target("127.0.0.1", receiver.port)})
        assert webhook_sender.post(f"http://hooks.test:{receiver.port}/hook", HEADERS, b"{}", allowed=listed).succeeded
    assert [r.headers["host"] for r in receiver.requests] == [f"hooks.test:{receiver.port}"]


@pytest.mark.parametrize("host", ["localhost", "127.1", "2130706433", "0x7f000001", "[::ffff:127.0.0.1]", "0.0.0.0"])
def test_every_spelling_of_this_host_is_refused_at_delivery_too(host):
    """A URL stored before these rules (or by a bug) is checked again at each attempt."""
    with Forbidden() as forbidden:
        outcome = webhook_sender.post(
            f"http://{host}:{forbidden.port}/quitquitquit", HEADERS, b"{}", allowed=frozenset()
        )
    assert outcome.error and outcome.error.startswith("refused: ")
    assert forbidden.hits == []


def test_dns_rebinding_cannot_move_the_connection_after_the_check(monkeypatch):
    """The name answers a listed address when checked and an unlisted one if asked again: the
    connection goes to the address that was checked, and the name is resolved once."""
    with Receiver() as receiver, Forbidden("127.0.0.2", receiver.port) as forbidden:
        answers = resolving(monkeypatch, "rebind.test", ["127.0.0.1", "127.0.0.2", "127.0.0.2"])
        outcome = webhook_sender.post(
            f"http://rebind.test:{receiver.port}/hook",
            HEADERS,
            b"{}",
            allowed=frozenset({rules.target("127.0.0.1", receiver.port)}),
        )
    assert outcome.succeeded, outcome
    assert len(receiver.requests) == 1 and forbidden.hits == []
    assert answers == ["127.0.0.2", "127.0.0.2"]


def test_a_redirect_to_an_unlisted_port_is_not_followed():
    with (
        Forbidden() as admin,
        Receiver(answer=lambda n: 302, location=f"http://127.0.0.1:{admin.port}/quitquitquit") as receiver,
    ):
        outcome = webhook_sender.post(receiver.url, HEADERS, b"{}", allowed=allowed())
    assert (outcome.status_code, outcome.succeeded) == (302, False)
    assert admin.hits == []


# --- at registration and at delivery, through the stack (both backends) --------------------------

HOSTILE = [
    "http://127.0.0.1:{port}/quitquitquit",
    "http://[::1]:{port}/",
    "http://127.1:{port}/",
    "http://0.0.0.0:{port}/",
    "http://localhost:{port}/",
    "http://2130706433:{port}/",
    "http://0x7f000001:{port}/",
    "http://[::ffff:127.0.0.1]:{port}/",
    "https://localhost:{port}/",
    "https://127.0.0.1:{port}/",
]


@pytest.mark.parametrize("template", HOSTILE)
def test_a_tenant_cannot_register_a_url_to_this_services_own_ports(stack, tenant_id, template):
    key = stack.tenant_key(tenant_id)
    for port in (stack.settings.http_port, stack.settings.gateway_port, stack.settings.demo_upstream_port):
        url = template.format(port=port)
        reply = stack.rest("POST", "/billing/webhooks", key=key, body={"tenant_id": tenant_id, "url": url})
        assert reply.status == 400, (url, reply.body)
        violations = [v["field"] for d in reply.json()["details"] for v in d.get("field_violations", [])]
        assert violations == ["url"], (url, reply.body)


def test_a_listed_receiver_can_be_registered_by_a_tenant(stack, tenant_id):
    with Receiver() as receiver:
        for url in (
            receiver.url,
            f"http://localhost:{receiver.port}/hook",
            f"http://[::ffff:127.0.0.1]:{receiver.port}/",
        ):
            reply = stack.rest(
                "POST", "/billing/webhooks", key=stack.tenant_key(tenant_id), body={"tenant_id": tenant_id, "url": url}
            )
            assert reply.status == 200, (url, reply.body)


def test_an_endpoint_stored_before_the_list_changed_is_refused_at_each_delivery(stack, tenant_id):
    """Registered while its port was allowed (or under the old blanket setting): the dispatcher,
    on today's list, refuses it, so the event cannot reach the listener however often it is retried."""
    with Forbidden() as admin:
        with db.session():
            webhooks.create_endpoint(
                Principal(key_id=0, scope=KeyScope.ADMIN),
                webhooks.NewEndpoint(tenant_id, f"http://127.0.0.1:{admin.port}/quitquitquit"),
                now=dt.datetime.now(dt.timezone.utc),
                allowed=frozenset({rules.target("127.0.0.1", admin.port)}),
            )
        stack.subscribe(tenant_id)
        dispatcher = Dispatcher(allowed=stack.settings.webhooks_allow)
        try:
            statuses = [future.result(timeout=30) for future in dispatcher.pump()]
        finally:
            dispatcher.close()
    assert "PENDING" in statuses and admin.hits == []
    endpoints = stack.rest("GET", f"/billing/webhooks/tenant/{tenant_id}").json()["endpoints"]
    [delivery] = stack.rest("GET", f"/billing/webhooks/{endpoints[0]['id']}/deliveries").json()["deliveries"]
    assert delivery["last_error"].startswith("refused: the host resolves to no address a webhook may reach")
