"""Who may touch which tenant's data: the rules of docs/api.md's Auth convention."""

from __future__ import annotations

import dataclasses
import enum

from server.domain.errors import NotFound, PermissionDenied


class KeyScope(enum.StrEnum):
    """What an API key may act on (ApiKey.scope): every tenant, or its own; or, for the gateway
    key, nothing of the billing API: only Envoy's own calls (gateway grants, the access-log
    stream), so the key Envoy's configuration must hold is worth little to whoever reads it."""

    ADMIN = "admin"
    TENANT = "tenant"
    GATEWAY = "gateway"
    # No key's: the service acting on its own (SYSTEM below). Keys are made admin, tenant or gateway.
    SYSTEM = "system"


@dataclasses.dataclass(frozen=True)
class Principal:
    """The caller, as its API key says; or SYSTEM."""

    key_id: int
    scope: KeyScope
    tenant_id: str | None = None

    @property
    def is_admin(self) -> bool:
        """An admin key, or the service itself: every tenant, every billing method."""
        return self.scope in (KeyScope.ADMIN, KeyScope.SYSTEM)

    def owns(self, tenant_id: str) -> bool:
        return self.is_admin or self.tenant_id == tenant_id


# The service acting on its own, never a caller: the scheduler closing periods and sending invoices,
# the gateway metering what Envoy forwarded, a service re-reading a row its caller was already
# checked for. It passes every check an admin key passes, and is named where it is used, so that
# no check is skipped by leaving a caller out.
SYSTEM = Principal(key_id=0, scope=KeyScope.SYSTEM)


def require_tenant_path(principal: Principal, tenant_id: str) -> None:
    """A tenant key naming another tenant in a path or body is refused outright (403)."""
    if not principal.owns(tenant_id):
        raise PermissionDenied(f"this key may not act for tenant {tenant_id!r}", reason="TENANT_MISMATCH")


def require_visible(principal: Principal, tenant_id: str, kind: str, resource_id: str) -> None:
    """Another tenant's resource read by id is reported missing (404) so ids leak nothing."""
    if not principal.owns(tenant_id):
        raise NotFound(f"{kind} {resource_id!r} not found", reason=f"{kind.upper()}_NOT_FOUND")


def refuse_gateway_key(principal: Principal) -> None:
    """Every billing.v1 method: the gateway key is not an API key."""
    if principal.scope == KeyScope.GATEWAY:
        raise PermissionDenied(
            "the gateway key serves Envoy's grant and access-log calls only", reason="GATEWAY_KEY_ONLY"
        )


def require_gateway(principal: Principal, what: str) -> None:
    """Envoy's own calls: only the gateway key (an admin or tenant key has no business there)."""
    if principal.scope != KeyScope.GATEWAY:
        raise PermissionDenied(f"{what} needs the gateway key", reason="GATEWAY_ONLY")


def require_admin(principal: Principal, what: str) -> None:
    if not principal.is_admin:
        raise PermissionDenied(f"{what} needs an admin key", reason="ADMIN_ONLY")
