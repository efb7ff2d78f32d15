"""The demo upstream behind the gateway when BILLING_UPSTREAM_URL is unset: it answers every
request 200 with JSON {"method", "path", "headers"}, so a newcomer can see with curl what the
platform's API would receive (x-tenant-id, x-billing-plan, x-request-id, and no key).

A fake LLM endpoint, `POST /v1/llm/complete`, answers the same echo and reports its usage as the
platform's API would: `x-billing-usage: llm_tokens; model=m-large; input_tokens=<n>;
output_tokens=<4n>`, n = the request body's length (at least 1), so `make run` shows tokens billed
end to end (the gateway turns the header into a usage event and removes it).

`python -m server.demo_upstream PORT` (what `make run` starts; the tests start it too).
"""

from __future__ import annotations

import http.server
import json
import sys

LLM_PATH = "/v1/llm/complete"


def llm_usage(body_length: int) -> str:
    """The fake LLM's usage report for a prompt of `body_length` bytes."""
    tokens = max(1, body_length)
    return f"llm_tokens; model=m-large; input_tokens={tokens}; output_tokens={4 * tokens}"


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
        if self.command == "POST" and self.path.split("?", 1)[0] == LLM_PATH:
            self.send_header("x-billing-usage", llm_usage(length))
        elif reported := self.headers.get("x-demo-usage"):  # tests: the upstream reports what they choose
            self.send_header("x-billing-usage", reported)
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
