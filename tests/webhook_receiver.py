"""A real HTTP receiver for webhook tests: a local server on a free port that records every
request and answers as the test scripts it."""

from __future__ import annotations

import dataclasses
import http.server
import threading
from collections.abc import Callable


@dataclasses.dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """`answer(request_number)` -> HTTP status for each request, 1-based (default: 200 always).
    `hold`, when set, is an Event the handler waits on (up to 10 s) before answering."""

    def __init__(self, answer: Callable[[int], int] = lambda n: 200, hold: threading.Event | None = None) -> None:
        self.answer = answer
        self.hold = hold
        self.requests: list[Received] = []
        self.arrived = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver._lock:
                    receiver.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    number = len(receiver.requests)
                receiver.arrived.set()
                if receiver.hold is not None:
                    receiver.hold.wait(10)
                status = receiver.answer(number)
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("location", "/moved")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()

    def ids(self) -> list[str]:
        return [r.headers["webhook-id"] for r in self.requests]
