"""The customer portal's HTML: Jinja2 templates (autoescaped), one stylesheet, no script.

The stylesheet is inlined and allowed by its hash in the Content-Security-Policy, so the page
needs no external asset (it works offline) and the policy can forbid everything else.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.resources

import jinja2

from server.domain.decimals import format_nanos
from server.domain.money import money, quantity, unit_money

STYLESHEET = importlib.resources.files(__package__).joinpath("templates", "portal.css").read_text()
_STYLE_HASH = base64.b64encode(hashlib.sha256(STYLESHEET.encode()).digest()).decode()
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# Sent with every portal response, the PDF included: no caching of a tenant's data, no framing,
# no link token leaking through Referer.
SECURITY_HEADERS = (
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
    ("x-content-type-options", "nosniff"),
)

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("server.portal", "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
)
_env.filters["money"] = money
_env.filters["count"] = "{:,}".format
_env.filters["day"] = lambda value: value.strftime("%Y-%m-%d")
_env.filters["decimal"] = format_nanos
_env.filters["quantity"] = quantity
_env.filters["unit_money"] = unit_money
_env.globals["zip"] = zip


def render_page(view, token: str) -> str:
    """The portal page for an Overview (server.services.portal); `token` builds the PDF links."""
    return _env.get_template("portal.html").render(view=view, token=token, stylesheet=STYLESHEET)


def render_refusal(message: str) -> str:
    """The page shown for an expired or tampered link (sent with HTTP 401)."""
    return _env.get_template("refusal.html").render(message=message, stylesheet=STYLESHEET)
