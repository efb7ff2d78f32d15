"""PortalService: portal links (with a key) and the portal's pages (with the link's token only).

The page methods are let through the auth interceptor without a key (interceptors.methods.LINK_METHODS);
they verify the token here, before reading anything, and read as the token's tenant alone.
"""

from __future__ import annotations

from collections.abc import Callable

from google.api.httpbody_pb2 import HttpBody

from billing.v1 import portal_pb2, portal_pb2_grpc
from server import portal as pages
from server.config import Settings
from server.domain import portal_tokens
from server.resources import timestamp
from server.services import portal
from server.transport.context import current_principal
from server.transport.convert import now

HTML = "text/html; charset=utf-8"
# Envoy sets the HTTP status from this header (envoy/envoy.yaml.tmpl, Lua filter): the
# transcoder answers 200 to any HttpBody, and a refused link must be a 401 with an HTML page.
UNAUTHORIZED_HEADER = ("x-billing-http-status", "401")


class PortalServicer(portal_pb2_grpc.PortalServiceServicer):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._secret: bytes | None = None

    def secret(self) -> bytes:
        """Read once per process: the stored key never changes once written."""
        if self._secret is None:
            self._secret = portal.signing_secret(self.settings.portal_secret, now=now())
        return self._secret

    def CreatePortalSession(self, request, context):
        url, expires_at = portal.create_session(
            current_principal(),
            request.tenant_id,
            secret=self.secret(),
            base_url=self.settings.portal_base_url,
            now=now(),
        )
        return portal_pb2.PortalSession(url=url, expires_at=timestamp(expires_at))

    def _for_link(self, token: str, context, answer: Callable[[str], HttpBody]) -> HttpBody:
        """`answer(tenant_id)` for a valid link, else the 401 page; security headers on both."""
        try:
            tenant_id = portal_tokens.verify(self.secret(), token, now())
        except portal_tokens.RefusedToken as refused:
            context.send_initial_metadata((*pages.SECURITY_HEADERS, UNAUTHORIZED_HEADER))
            return HttpBody(content_type=HTML, data=pages.render_refusal(refused.message).encode())
        body = answer(tenant_id)
        context.send_initial_metadata(pages.SECURITY_HEADERS)
        return body

    def GetPortalPage(self, request, context):
        def page(tenant_id: str) -> HttpBody:
            html = pages.render_page(portal.overview(tenant_id, now=now()), request.token)
            return HttpBody(content_type=HTML, data=html.encode())

        return self._for_link(request.token, context, page)

    def GetPortalInvoicePdf(self, request, context):
        def pdf(tenant_id: str) -> HttpBody:
            return HttpBody(content_type="application/pdf", data=portal.invoice_pdf(tenant_id, request.invoice_id))

        return self._for_link(request.token, context, pdf)
