"""One webhook attempt over HTTP: POST the body with its headers, follow no redirect, wait at
most the timeout, and say what came back. http.client follows nothing by itself, so a 3xx is
just an answer (a failure, judged by domain.webhooks.judge): a redirect cannot lead anywhere.

The host is resolved here, each address is checked (domain.webhooks.may_call: public over
https, or an address:port listed in BILLING_WEBHOOKS_ALLOW), and the connection goes to the
address that passed, not to the name: a name that answers differently the second time it is
asked (DNS rebinding) cannot slip a loopback or private address past the check. The Host
header and the TLS server name stay the URL's host.
"""

from __future__ import annotations

import functools
import http.client
import socket
import ssl
import urllib.parse

from server.domain import webhooks as rules

USER_AGENT = "billing-service-webhooks/1"
MAX_ANSWER_BYTES = 64 * 1024


def _permitted_address(host: str, port: int, scheme: str, allowed: frozenset[rules.Target]) -> str | None:
    """The first address `host` resolves to that a webhook may reach, or None."""
    for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        address = str(info[4][0])
        if rules.may_call(address, port, scheme, allowed):
            return address
    return None


def _connect_to(address: str, target: tuple[str, int], timeout: float, source_address=None) -> socket.socket:
    """http.client's socket factory, pinned: `target`'s host name is not resolved again."""
    return socket.create_connection((address, target[1]), timeout, source_address)


def post(
    url: str,
    headers: dict[str, str],
    body: bytes,
    *,
    allowed: frozenset[rules.Target],
    timeout: float = rules.RESPONSE_TIMEOUT_SECONDS,
) -> rules.Outcome:
    parsed = urllib.parse.urlsplit(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    host = parsed.hostname
    if host is None:  # registration refuses such a URL (validate_url)
        return rules.Outcome(None, "refused: the URL has no host")
    try:
        address = _permitted_address(host, port, parsed.scheme, allowed)
        if address is None:
            return rules.Outcome(
                None,
                f"refused: the host resolves to no address a webhook may reach over {parsed.scheme} "
                f"(loopback and private addresses only as listed in {rules.ALLOW_SETTING})",
            )
        connection: http.client.HTTPConnection
        if parsed.scheme == "https":
            connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=ssl.create_default_context())
        else:
            connection = http.client.HTTPConnection(host, port, timeout=timeout)
        connection._create_connection = functools.partial(_connect_to, address)  # type: ignore[attr-defined]
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
