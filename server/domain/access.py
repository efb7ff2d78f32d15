"""Who may touch which tenant's data: the rules of API.md's Auth convention."""

from __future__ import annotations

import dataclasses
import enum

from server.domain.errors import NotFound, PermissionDenied


class KeyScope(enum.StrEnum):
    """What an API key may act on (ApiKey.scope): every tenant, or its own."""

    ADMIN = "admin"
    TENANT = "tenant"


@dataclasses.dataclass(frozen=True)
class Principal:
    """The caller, as its API key says."""

    key_id: int
    scope: KeyScope
    tenant_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.scope == KeyScope.ADMIN

    def owns(self, tenant_id: str) -> bool:
        return self.is_admin or self.tenant_id == tenant_id


def require_tenant_path(principal: Principal, tenant_id: str) -> None:
    """A tenant key naming another tenant in a path or body is refused outright (403)."""
    if not principal.owns(tenant_id):
        raise PermissionDenied(f"this key may not act for tenant {tenant_id!r}", reason="TENANT_MISMATCH")


def require_visible(principal: Principal, tenant_id: str, kind: str, resource_id: str) -> None:
    """Another tenant's resource read by id is reported missing (404) so ids leak nothing."""
    if not principal.owns(tenant_id):
        raise NotFound(f"{kind} {resource_id!r} not found", reason=f"{kind.upper()}_NOT_FOUND")


def require_admin(principal: Principal, what: str) -> None:
    if not principal.is_admin:
        raise PermissionDenied(f"{what} needs an admin key", reason="ADMIN_ONLY")
