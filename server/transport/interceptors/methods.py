"""Which methods the interceptors treat apart: the billing API's, and those that need no key."""

from __future__ import annotations

BILLING_PREFIX = "/billing.v1."
PUBLIC_METHODS = frozenset({"/billing.v1.HealthService/GetHealth"})
# Portal pages: no key (a browser holds only the link); the servicer verifies the link's token.
LINK_METHODS = frozenset({"/billing.v1.PortalService/GetPortalPage", "/billing.v1.PortalService/GetPortalInvoicePdf"})
KEYLESS_METHODS = PUBLIC_METHODS | LINK_METHODS
