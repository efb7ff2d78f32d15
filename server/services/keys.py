"""API keys: random, shown once, stored only as a SHA-256 hash.

A fast hash is enough here because keys are 256-bit random values, not passwords: there is
nothing to brute-force, and every call authenticates, so the lookup must be cheap.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from server.domain.access import KeyScope, Principal
from server.domain.errors import InvalidArgument, NotFound, Unauthenticated
from server.domain.subscriptions import validate_tenant_id
from server.persistence.db import database
from server.persistence.models import ApiKey

KEY_PREFIX = "bk_"


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _store(key: str, scope: KeyScope, tenant_id: str | None, now: dt.datetime) -> ApiKey:
    return ApiKey.create(key_hash=_hash(key), prefix=key[:10], scope=scope, tenant_id=tenant_id, created_at=now)


def _new(scope: KeyScope, tenant_id: str | None, now: dt.datetime) -> str:
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    _store(key, scope, tenant_id, now)
    return key


def create_key(*, now: dt.datetime, tenant_id: str | None = None, admin: bool = False) -> str:
    """Create an admin key or a key bound to `tenant_id`; returns the key, which is not stored."""
    if admin == bool(tenant_id):
        raise InvalidArgument("a key is either admin or bound to one tenant", field="tenant_id")
    return _new(KeyScope.ADMIN if admin else KeyScope.TENANT, validate_tenant_id(tenant_id) if tenant_id else None, now)


def create_gateway_key(*, now: dt.datetime) -> str:
    """Create the key Envoy's grant and access-log calls carry; no billing method accepts it."""
    return _new(KeyScope.GATEWAY, None, now)


def ensure_admin_key(key: str, *, now: dt.datetime) -> None:
    """Make `key` a valid admin key (BILLING_BOOTSTRAP_ADMIN_KEY, length checked by Settings); idempotent."""
    with database.atomic():
        row = ApiKey.get_or_none(ApiKey.key_hash == _hash(key))
        if row is None:
            _store(key, KeyScope.ADMIN, None, now)
        elif row.scope != KeyScope.ADMIN or row.revoked_at is not None:
            ApiKey.update(scope=KeyScope.ADMIN, tenant_id=None, revoked_at=None).where(ApiKey.id == row.id).execute()


def revoke_key(key: str, *, now: dt.datetime) -> None:
    updated = (
        ApiKey.update(revoked_at=now).where((ApiKey.key_hash == _hash(key)) & ApiKey.revoked_at.is_null()).execute()
    )
    if not updated and not ApiKey.select().where(ApiKey.key_hash == _hash(key)).exists():
        raise NotFound("no such key", reason="KEY_NOT_FOUND")


def is_valid(key: str, scope: KeyScope) -> bool:
    """An unrevoked key of `scope`."""
    return (
        ApiKey.select()
        .where((ApiKey.key_hash == _hash(key)) & ApiKey.revoked_at.is_null() & (ApiKey.scope == scope))
        .exists()
    )


def authenticate(key: str | None) -> Principal:
    if not key:
        raise Unauthenticated("missing API key: send 'authorization: Bearer <key>'", reason="MISSING_API_KEY")
    row = ApiKey.get_or_none(ApiKey.key_hash == _hash(key))
    if row is None or row.revoked_at is not None:
        raise Unauthenticated("invalid or revoked API key", reason="INVALID_API_KEY")
    return Principal(key_id=row.id, scope=row.scope, tenant_id=row.tenant_id)
