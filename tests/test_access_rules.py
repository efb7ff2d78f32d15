"""Pure rules of tenant access (docs/api.md's Auth convention) and of the typed domain errors."""

from __future__ import annotations

import pytest

from server.domain.access import (
    SYSTEM,
    KeyScope,
    Principal,
    refuse_gateway_key,
    require_admin,
    require_gateway,
    require_tenant_path,
    require_visible,
)
from server.domain.errors import (
    DomainError,
    FieldViolation,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)

ADMIN_KEY = Principal(key_id=1, scope=KeyScope.ADMIN)
ACME_KEY = Principal(key_id=2, scope=KeyScope.TENANT, tenant_id="acme")
GATEWAY_KEY = Principal(key_id=3, scope=KeyScope.GATEWAY)


def test_an_admin_owns_every_tenant_and_a_tenant_only_itself():
    assert ADMIN_KEY.owns("acme") and ADMIN_KEY.owns("globex")
    assert ACME_KEY.owns("acme") and not ACME_KEY.owns("globex")


def test_a_tenant_key_naming_another_tenant_is_denied():
    require_tenant_path(ACME_KEY, "acme")
    require_tenant_path(ADMIN_KEY, "globex")
    with pytest.raises(PermissionDenied) as error:
        require_tenant_path(ACME_KEY, "globex")
    assert (error.value.reason, error.value.message) == ("TENANT_MISMATCH", "this key may not act for tenant 'globex'")


def test_another_tenants_resource_reads_as_missing():
    require_visible(ACME_KEY, "acme", "invoice", "inv_1")
    require_visible(ADMIN_KEY, "globex", "invoice", "inv_1")
    with pytest.raises(NotFound) as error:
        require_visible(ACME_KEY, "globex", "invoice", "inv_1")
    assert (error.value.reason, error.value.message) == ("INVOICE_NOT_FOUND", "invoice 'inv_1' not found")


def test_admin_only_operations():
    require_admin(ADMIN_KEY, "creating a plan")
    with pytest.raises(PermissionDenied) as error:
        require_admin(ACME_KEY, "creating a plan")
    assert (error.value.reason, error.value.message) == ("ADMIN_ONLY", "creating a plan needs an admin key")


def test_the_gateway_key_opens_no_billing_method():
    refuse_gateway_key(ADMIN_KEY)
    refuse_gateway_key(ACME_KEY)
    with pytest.raises(PermissionDenied) as error:
        refuse_gateway_key(GATEWAY_KEY)
    assert (error.value.reason, error.value.message) == (
        "GATEWAY_KEY_ONLY",
        "the gateway key serves Envoy's grant and access-log calls only",
    )
    assert not GATEWAY_KEY.is_admin and not GATEWAY_KEY.owns("acme")


def test_the_system_principal_passes_what_an_admin_key_passes_and_is_no_key():
    assert SYSTEM.is_admin and SYSTEM.owns("acme") and SYSTEM.owns("globex")
    require_tenant_path(SYSTEM, "globex")
    require_visible(SYSTEM, "globex", "invoice", "inv_1")
    require_admin(SYSTEM, "generating an invoice")
    refuse_gateway_key(SYSTEM)
    assert SYSTEM.scope not in {KeyScope.ADMIN, KeyScope.TENANT, KeyScope.GATEWAY}  # no key row can stand for it


@pytest.mark.parametrize("key", [ADMIN_KEY, ACME_KEY, SYSTEM])
def test_envoys_own_calls_need_the_gateway_key(key):
    require_gateway(GATEWAY_KEY, "the access-log stream")
    with pytest.raises(PermissionDenied) as error:
        require_gateway(key, "the access-log stream")
    assert (error.value.reason, error.value.message) == ("GATEWAY_ONLY", "the access-log stream needs the gateway key")


def test_a_domain_error_names_its_field_only_when_given_one():
    named = InvalidArgument("plan_id is required", field="plan_id", metadata={"k": "v"})
    assert named.violations == (FieldViolation("plan_id", "plan_id is required"),)
    assert (named.code, named.reason, named.metadata) == ("INVALID_ARGUMENT", "INVALID_ARGUMENT", {"k": "v"})
    plain = DomainError("boom")
    assert (plain.violations, plain.metadata, plain.reason) == ((), {}, "INTERNAL")
    extra = InvalidArgument("two", violations=(FieldViolation("a", "x"),), field="b")
    assert [v.field for v in extra.violations] == ["b", "a"]


def test_internal_and_rate_limit_errors_carry_what_the_client_needs():
    internal = Internal("req-42")
    assert internal.request_id == "req-42" and "req-42" in internal.message
    limited = ResourceExhausted("slow down", retry_after_seconds=7, reason="TIER_LIMIT", metadata={"limit": "50"})
    assert (limited.message, limited.retry_after_seconds, limited.reason, limited.metadata) == (
        "slow down",
        7,
        "TIER_LIMIT",
        {"limit": "50"},
    )
