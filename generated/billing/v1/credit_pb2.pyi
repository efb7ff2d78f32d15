import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreditGrant(_message.Message):
    __slots__ = ("id", "tenant_id", "amount_cents", "remaining_cents", "currency", "priority", "expires_at", "description", "created_at", "voided_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_CENTS_FIELD_NUMBER: _ClassVar[int]
    REMAINING_CENTS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    VOIDED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant_id: str
    amount_cents: int
    remaining_cents: int
    currency: str
    priority: int
    expires_at: _timestamp_pb2.Timestamp
    description: str
    created_at: _timestamp_pb2.Timestamp
    voided_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., amount_cents: _Optional[int] = ..., remaining_cents: _Optional[int] = ..., currency: _Optional[str] = ..., priority: _Optional[int] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., description: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., voided_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateCreditGrantRequest(_message.Message):
    __slots__ = ("tenant_id", "amount_cents", "currency", "priority", "expires_at", "description", "grant_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_CENTS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    amount_cents: int
    currency: str
    priority: int
    expires_at: _timestamp_pb2.Timestamp
    description: str
    grant_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., amount_cents: _Optional[int] = ..., currency: _Optional[str] = ..., priority: _Optional[int] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., description: _Optional[str] = ..., grant_id: _Optional[str] = ...) -> None: ...

class GetTenantCreditsRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class CreditBalance(_message.Message):
    __slots__ = ("currency", "available_cents")
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_CENTS_FIELD_NUMBER: _ClassVar[int]
    currency: str
    available_cents: int
    def __init__(self, currency: _Optional[str] = ..., available_cents: _Optional[int] = ...) -> None: ...

class CreditLedgerEntry(_message.Message):
    __slots__ = ("at", "kind", "amount_cents", "grant_id", "invoice_id")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[CreditLedgerEntry.Kind]
        GRANTED: _ClassVar[CreditLedgerEntry.Kind]
        APPLIED: _ClassVar[CreditLedgerEntry.Kind]
        RESTORED: _ClassVar[CreditLedgerEntry.Kind]
        EXPIRED: _ClassVar[CreditLedgerEntry.Kind]
        VOIDED: _ClassVar[CreditLedgerEntry.Kind]
    KIND_UNSPECIFIED: CreditLedgerEntry.Kind
    GRANTED: CreditLedgerEntry.Kind
    APPLIED: CreditLedgerEntry.Kind
    RESTORED: CreditLedgerEntry.Kind
    EXPIRED: CreditLedgerEntry.Kind
    VOIDED: CreditLedgerEntry.Kind
    AT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_CENTS_FIELD_NUMBER: _ClassVar[int]
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    INVOICE_ID_FIELD_NUMBER: _ClassVar[int]
    at: _timestamp_pb2.Timestamp
    kind: CreditLedgerEntry.Kind
    amount_cents: int
    grant_id: str
    invoice_id: str
    def __init__(self, at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kind: _Optional[_Union[CreditLedgerEntry.Kind, str]] = ..., amount_cents: _Optional[int] = ..., grant_id: _Optional[str] = ..., invoice_id: _Optional[str] = ...) -> None: ...

class TenantCredits(_message.Message):
    __slots__ = ("balances", "grants", "ledger")
    BALANCES_FIELD_NUMBER: _ClassVar[int]
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    LEDGER_FIELD_NUMBER: _ClassVar[int]
    balances: _containers.RepeatedCompositeFieldContainer[CreditBalance]
    grants: _containers.RepeatedCompositeFieldContainer[CreditGrant]
    ledger: _containers.RepeatedCompositeFieldContainer[CreditLedgerEntry]
    def __init__(self, balances: _Optional[_Iterable[_Union[CreditBalance, _Mapping]]] = ..., grants: _Optional[_Iterable[_Union[CreditGrant, _Mapping]]] = ..., ledger: _Optional[_Iterable[_Union[CreditLedgerEntry, _Mapping]]] = ...) -> None: ...

class VoidCreditGrantRequest(_message.Message):
    __slots__ = ("grant_id",)
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    grant_id: str
    def __init__(self, grant_id: _Optional[str] = ...) -> None: ...

class CreditNote(_message.Message):
    __slots__ = ("id", "number", "invoice_id", "amount_cents", "reason", "created_at", "currency", "tenant_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    INVOICE_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_CENTS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    number: str
    invoice_id: str
    amount_cents: int
    reason: str
    created_at: _timestamp_pb2.Timestamp
    currency: str
    tenant_id: str
    def __init__(self, id: _Optional[str] = ..., number: _Optional[str] = ..., invoice_id: _Optional[str] = ..., amount_cents: _Optional[int] = ..., reason: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., currency: _Optional[str] = ..., tenant_id: _Optional[str] = ...) -> None: ...

class CreateCreditNoteRequest(_message.Message):
    __slots__ = ("invoice_id", "amount_cents", "reason")
    INVOICE_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_CENTS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    invoice_id: str
    amount_cents: int
    reason: str
    def __init__(self, invoice_id: _Optional[str] = ..., amount_cents: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class ListCreditNotesRequest(_message.Message):
    __slots__ = ("invoice_id",)
    INVOICE_ID_FIELD_NUMBER: _ClassVar[int]
    invoice_id: str
    def __init__(self, invoice_id: _Optional[str] = ...) -> None: ...

class ListCreditNotesResponse(_message.Message):
    __slots__ = ("credit_notes",)
    CREDIT_NOTES_FIELD_NUMBER: _ClassVar[int]
    credit_notes: _containers.RepeatedCompositeFieldContainer[CreditNote]
    def __init__(self, credit_notes: _Optional[_Iterable[_Union[CreditNote, _Mapping]]] = ...) -> None: ...

class SpendAlert(_message.Message):
    __slots__ = ("subscription_id", "tenant_id", "currency", "credit_balance_cents", "accrued_cents", "spend_cap_cents", "low_balance_alert_cents")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    CREDIT_BALANCE_CENTS_FIELD_NUMBER: _ClassVar[int]
    ACCRUED_CENTS_FIELD_NUMBER: _ClassVar[int]
    SPEND_CAP_CENTS_FIELD_NUMBER: _ClassVar[int]
    LOW_BALANCE_ALERT_CENTS_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    tenant_id: str
    currency: str
    credit_balance_cents: int
    accrued_cents: int
    spend_cap_cents: int
    low_balance_alert_cents: int
    def __init__(self, subscription_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., currency: _Optional[str] = ..., credit_balance_cents: _Optional[int] = ..., accrued_cents: _Optional[int] = ..., spend_cap_cents: _Optional[int] = ..., low_balance_alert_cents: _Optional[int] = ...) -> None: ...
