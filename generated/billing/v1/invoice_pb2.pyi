import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LineItem(_message.Message):
    __slots__ = ("description", "quantity", "unit", "unit_amount_cents", "unit_amount", "amount_cents")
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    UNIT_AMOUNT_CENTS_FIELD_NUMBER: _ClassVar[int]
    UNIT_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_CENTS_FIELD_NUMBER: _ClassVar[int]
    description: str
    quantity: str
    unit: str
    unit_amount_cents: int
    unit_amount: str
    amount_cents: int
    def __init__(self, description: _Optional[str] = ..., quantity: _Optional[str] = ..., unit: _Optional[str] = ..., unit_amount_cents: _Optional[int] = ..., unit_amount: _Optional[str] = ..., amount_cents: _Optional[int] = ...) -> None: ...

class Issuer(_message.Message):
    __slots__ = ("name", "address", "tax_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TAX_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    address: str
    tax_id: str
    def __init__(self, name: _Optional[str] = ..., address: _Optional[str] = ..., tax_id: _Optional[str] = ...) -> None: ...

class Invoice(_message.Message):
    __slots__ = ("id", "number", "subscription_id", "tenant_id", "status", "period_start", "period_end", "line_items", "subtotal_cents", "total_cents", "currency", "issued_at", "due_at", "paid_at", "deleted_at", "billing_email", "issuer", "amount_due_cents")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[Invoice.Status]
        PENDING: _ClassVar[Invoice.Status]
        SENT: _ClassVar[Invoice.Status]
        PAID: _ClassVar[Invoice.Status]
        OVERDUE: _ClassVar[Invoice.Status]
        VOID: _ClassVar[Invoice.Status]
    STATUS_UNSPECIFIED: Invoice.Status
    PENDING: Invoice.Status
    SENT: Invoice.Status
    PAID: Invoice.Status
    OVERDUE: Invoice.Status
    VOID: Invoice.Status
    ID_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    LINE_ITEMS_FIELD_NUMBER: _ClassVar[int]
    SUBTOTAL_CENTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_CENTS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    DUE_AT_FIELD_NUMBER: _ClassVar[int]
    PAID_AT_FIELD_NUMBER: _ClassVar[int]
    DELETED_AT_FIELD_NUMBER: _ClassVar[int]
    BILLING_EMAIL_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_DUE_CENTS_FIELD_NUMBER: _ClassVar[int]
    id: str
    number: str
    subscription_id: str
    tenant_id: str
    status: Invoice.Status
    period_start: _timestamp_pb2.Timestamp
    period_end: _timestamp_pb2.Timestamp
    line_items: _containers.RepeatedCompositeFieldContainer[LineItem]
    subtotal_cents: int
    total_cents: int
    currency: str
    issued_at: _timestamp_pb2.Timestamp
    due_at: _timestamp_pb2.Timestamp
    paid_at: _timestamp_pb2.Timestamp
    deleted_at: _timestamp_pb2.Timestamp
    billing_email: str
    issuer: Issuer
    amount_due_cents: int
    def __init__(self, id: _Optional[str] = ..., number: _Optional[str] = ..., subscription_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., status: _Optional[_Union[Invoice.Status, str]] = ..., period_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., period_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., line_items: _Optional[_Iterable[_Union[LineItem, _Mapping]]] = ..., subtotal_cents: _Optional[int] = ..., total_cents: _Optional[int] = ..., currency: _Optional[str] = ..., issued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., due_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., paid_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deleted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., billing_email: _Optional[str] = ..., issuer: _Optional[_Union[Issuer, _Mapping]] = ..., amount_due_cents: _Optional[int] = ...) -> None: ...

class GenerateInvoiceRequest(_message.Message):
    __slots__ = ("subscription_id", "period_start")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    period_start: _timestamp_pb2.Timestamp
    def __init__(self, subscription_id: _Optional[str] = ..., period_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetInvoiceRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListSubscriptionInvoicesRequest(_message.Message):
    __slots__ = ("subscription_id", "status", "page_size", "page_token")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    status: Invoice.Status
    page_size: int
    page_token: str
    def __init__(self, subscription_id: _Optional[str] = ..., status: _Optional[_Union[Invoice.Status, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSubscriptionInvoicesResponse(_message.Message):
    __slots__ = ("invoices", "next_page_token")
    INVOICES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    invoices: _containers.RepeatedCompositeFieldContainer[Invoice]
    next_page_token: str
    def __init__(self, invoices: _Optional[_Iterable[_Union[Invoice, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateInvoiceStatusRequest(_message.Message):
    __slots__ = ("id", "status")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: Invoice.Status
    def __init__(self, id: _Optional[str] = ..., status: _Optional[_Union[Invoice.Status, str]] = ...) -> None: ...

class DeleteInvoiceRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetInvoicePdfRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...
