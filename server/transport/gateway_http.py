"""The billing server's answer to Envoy's Lua filter (envoy/gateway.lua): a small HTTP/1.1
server (one thread running its own asyncio loop in each billing server process, on loopback) that
Envoy asks for a key's grant at most once per grant TTL (GET /grant). Requests themselves are
admitted and counted in Envoy; this server is off the per-request path.

HTTP rather than gRPC because the Lua filter's httpCall speaks it; a hand-written parser of the few
lines Envoy sends is enough. A grant reads the database on this loop (~1 ms, once per key per TTL).
"""

from __future__ import annotations

import asyncio
import http
import logging
import socket
import threading

log = logging.getLogger("billing.gateway")

MAX_HEAD_BYTES = 64 * 1024  # Envoy passes at most its 8 KiB of client headers and a few of its own

Answer = tuple[int, dict[str, str], bytes]


class _Protocol(asyncio.Protocol):
    """One keep-alive connection from Envoy: requests arrive one at a time (no pipelining), each
    head ends with an empty line; a body, if any (Content-Length), is skipped."""

    def __init__(self, decide) -> None:
        self.decide = decide
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD_BYTES and self.transport:
                    self.transport.close()
                return
            head, rest = self.buffer[:end].decode("latin-1"), self.buffer[end + 4 :]
            request_line, *lines = head.split("\r\n")
            headers = {}
            for line in lines:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            if len(rest) < length:
                return  # wait for the body (Envoy sends none unless configured to)
            self.buffer = rest[length:]
            method, path, _ = (request_line.split(" ") + ["", ""])[:3]
            self._answer(*self.decide(method, path, headers))

    def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
        lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}", f"content-length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if self.transport:
            self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


class AuthzServer:
    """The listener, bound at construction (so its port is known at once) and served by a daemon
    thread from `start()`: it lives as long as the process."""

    def __init__(self, decide, host: str = "127.0.0.1", port: int = 0) -> None:
        self.decide = decide
        self.sock = socket.create_server((host, port), reuse_port=False, backlog=1024)
        self.port = self.sock.getsockname()[1]
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._serve, name="gateway-authz", daemon=True)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(self.loop.create_server(lambda: _Protocol(self.decide), sock=self.sock))
        try:
            self.loop.run_forever()
        finally:
            server.close()

    def start(self) -> AuthzServer:
        self.thread.start()
        log.info("gateway grants listening on 127.0.0.1:%d", self.port)
        return self
