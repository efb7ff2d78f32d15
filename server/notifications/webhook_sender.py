"""One webhook attempt over HTTP: POST the body with its headers, follow no redirect, wait at
most the timeout, and say what came back. http.client follows nothing by itself, so a 3xx is
just an answer (a failure, judged by domain.webhooks.judge).

Without BILLING_WEBHOOKS_ALLOW_PRIVATE the host's addresses are checked before connecting: a
name that resolves to a loopback or private address is refused, so a tenant cannot make the
service call into its own network. (The check and the connection resolve separately; a name
that changes its answer in between is not caught.)
"""

from __future__ import annotations

import http.client
import socket
import ssl
import urllib.parse

from server.domain import webhooks as rules

USER_AGENT = "billing-service-webhooks/1"
MAX_ANSWER_BYTES = 64 * 1024


def _private_host(host: str, port: int) -> bool:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return any(rules.is_private_address(str(info[4][0]).split("%")[0]) for info in infos)


def post(
    url: str,
    headers: dict[str, str],
    body: bytes,
    *,
    timeout: float = rules.RESPONSE_TIMEOUT_SECONDS,
    allow_private: bool = False,
) -> rules.Outcome:
    parsed = urllib.parse.urlsplit(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    host = parsed.hostname
    if host is None:  # registration refuses such a URL (validate_url)
        return rules.Outcome(None, "refused: the URL has no host")
    try:
        if not allow_private and _private_host(host, port):
            return rules.Outcome(None, "refused: the host resolves to a loopback or private address")
        connection: http.client.HTTPConnection
        if parsed.scheme == "https":
            connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=ssl.create_default_context())
        else:
            connection = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            connection.request(
                "POST",
                (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else ""),
                body=body,
                headers={**headers, "user-agent": USER_AGENT},
            )
            answer = connection.getresponse()
            answer.read(MAX_ANSWER_BYTES)
            return rules.judge(answer.status)
        finally:
            connection.close()
    except TimeoutError:
        return rules.Outcome(None, f"no answer within {timeout:g} s")
    except (OSError, http.client.HTTPException) as error:
        return rules.Outcome(None, f"{type(error).__name__}: {error}"[:500])
