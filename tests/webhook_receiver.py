"""A real HTTP receiver for webhook tests: a local server that records every request and answers
as the test scripts it.

Webhooks reach a loopback address only at a port BILLING_WEBHOOKS_ALLOW lists, and the stack's
settings are made once per session: so the receivers' ports are fixed then too. A few listening
sockets are bound once (ALLOWED lists them) and each Receiver borrows one for its `with` block."""

from __future__ import annotations

import dataclasses
import functools
import http.server
import threading
from collections.abc import Callable

from server.domain import webhooks as rules

SLOTS = 3  # receivers one test holds at once, at most


@dataclasses.dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class _Slot:
    """A listening server for the whole session, answering for the Receiver that holds it (410
    when none does: a late retry of an earlier test)."""

    def __init__(self) -> None:
        self.receiver: Receiver | None = None
        slot = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver = slot.receiver
                received = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                status = receiver.receive(received) if receiver else 410
                self.send_response(status)
                if 300 <= status < 400 and receiver:
                    self.send_header("location", receiver.location)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@functools.cache
def _slots() -> tuple[_Slot, ...]:
    return tuple(_Slot() for _ in range(SLOTS))


_lending = threading.Lock()


def allowed() -> frozenset[rules.Target]:
    """What BILLING_WEBHOOKS_ALLOW must list for the receivers (Settings.webhooks_allow)."""
    return frozenset(rules.target("127.0.0.1", slot.port) for slot in _slots())


class Receiver:
    """`answer(request_number)` -> HTTP status for each request, 1-based (default: 200 always);
    a 3xx carries `location`. `hold`, when set, is an Event the handler waits on (up to 10 s)
    before answering."""

    def __init__(
        self,
        answer: Callable[[int], int] = lambda n: 200,
        hold: threading.Event | None = None,
        location: str = "/moved",
    ) -> None:
        self.answer = answer
        self.hold = hold
        self.location = location
        self.requests: list[Received] = []
        self.arrived = threading.Event()
        self._lock = threading.Lock()
        self._slot: _Slot | None = None

    def receive(self, received: Received) -> int:
        with self._lock:
            self.requests.append(received)
            number = len(self.requests)
        self.arrived.set()
        if self.hold is not None:
            self.hold.wait(10)
        return self.answer(number)

    @property
    def port(self) -> int:
        assert self._slot is not None, "a Receiver listens only inside its `with` block"
        return self._slot.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def __enter__(self) -> Receiver:
        with _lending:
            self._slot = next(slot for slot in _slots() if slot.receiver is None)
            self._slot.receiver = self
        return self

    def __exit__(self, *exc) -> None:
        if self.hold is not None:
            self.hold.set()
        with _lending:
            assert self._slot is not None
            self._slot.receiver = None

    def ids(self) -> list[str]:
        return [r.headers["webhook-id"] for r in self.requests]
