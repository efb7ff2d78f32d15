"""The demo upstream behind the gateway when BILLING_UPSTREAM_URL is unset: it answers every
request 200 with JSON {"method", "path", "headers"}, so a newcomer can see with curl what the
platform's API would receive (x-tenant-id, x-billing-plan, x-request-id, and no key).

`python -m server.demo_upstream PORT` (what `make run` starts; the tests start it too).
"""

from __future__ import annotations

import http.server
import json
import sys


class EchoHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Envoy's upstream connection pool expects

    def _echo(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps(
            {"method": self.command, "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _echo

    def log_message(self, format, *args):
        """Quiet: Envoy and the billing server already log each request."""


def serve(port: int, host: str = "127.0.0.1") -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer((host, port), EchoHandler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].isdigit():
        print("usage: python -m server.demo_upstream PORT", file=sys.stderr)
        return 2
    server = serve(int(args[0]))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
