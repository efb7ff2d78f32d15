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

class Subscription(_message.Message):
    __slots__ = ("id", "tenant_id", "plan_id", "billing_email", "status", "current_period_start", "current_period_end", "created_at", "updated_at", "canceled_at", "plan_version", "trial_end", "cancel_at", "cancel_at_period_end", "pending_plan_id", "pending_plan_version", "billing_anchor", "timezone", "spend_cap_cents", "low_balance_alert_cents")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[Subscription.Status]
        ACTIVE: _ClassVar[Subscription.Status]
        CANCELED: _ClassVar[Subscription.Status]
    STATUS_UNSPECIFIED: Subscription.Status
    ACTIVE: Subscription.Status
    CANCELED: Subscription.Status
    class BillingAnchor(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        BILLING_ANCHOR_UNSPECIFIED: _ClassVar[Subscription.BillingAnchor]
        ANNIVERSARY: _ClassVar[Subscription.BillingAnchor]
        CALENDAR: _ClassVar[Subscription.BillingAnchor]
    BILLING_ANCHOR_UNSPECIFIED: Subscription.BillingAnchor
    ANNIVERSARY: Subscription.BillingAnchor
    CALENDAR: Subscription.BillingAnchor
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    BILLING_EMAIL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    CURRENT_PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    CANCELED_AT_FIELD_NUMBER: _ClassVar[int]
    PLAN_VERSION_FIELD_NUMBER: _ClassVar[int]
    TRIAL_END_FIELD_NUMBER: _ClassVar[int]
    CANCEL_AT_FIELD_NUMBER: _ClassVar[int]
    CANCEL_AT_PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    PENDING_PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    PENDING_PLAN_VERSION_FIELD_NUMBER: _ClassVar[int]
    BILLING_ANCHOR_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    SPEND_CAP_CENTS_FIELD_NUMBER: _ClassVar[int]
    LOW_BALANCE_ALERT_CENTS_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant_id: str
    plan_id: str
    billing_email: str
    status: Subscription.Status
    current_period_start: _timestamp_pb2.Timestamp
    current_period_end: _timestamp_pb2.Timestamp
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    canceled_at: _timestamp_pb2.Timestamp
    plan_version: int
    trial_end: _timestamp_pb2.Timestamp
    cancel_at: _timestamp_pb2.Timestamp
    cancel_at_period_end: bool
    pending_plan_id: str
    pending_plan_version: int
    billing_anchor: Subscription.BillingAnchor
    timezone: str
    spend_cap_cents: int
    low_balance_alert_cents: int
    def __init__(self, id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., plan_id: _Optional[str] = ..., billing_email: _Optional[str] = ..., status: _Optional[_Union[Subscription.Status, str]] = ..., current_period_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., current_period_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., canceled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., plan_version: _Optional[int] = ..., trial_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cancel_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cancel_at_period_end: _Optional[bool] = ..., pending_plan_id: _Optional[str] = ..., pending_plan_version: _Optional[int] = ..., billing_anchor: _Optional[_Union[Subscription.BillingAnchor, str]] = ..., timezone: _Optional[str] = ..., spend_cap_cents: _Optional[int] = ..., low_balance_alert_cents: _Optional[int] = ...) -> None: ...

class CreateSubscriptionRequest(_message.Message):
    __slots__ = ("tenant_id", "plan_id", "billing_email", "plan_version", "billing_anchor", "timezone", "spend_cap_cents", "low_balance_alert_cents")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    BILLING_EMAIL_FIELD_NUMBER: _ClassVar[int]
    PLAN_VERSION_FIELD_NUMBER: _ClassVar[int]
    BILLING_ANCHOR_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    SPEND_CAP_CENTS_FIELD_NUMBER: _ClassVar[int]
    LOW_BALANCE_ALERT_CENTS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    plan_id: str
    billing_email: str
    plan_version: int
    billing_anchor: Subscription.BillingAnchor
    timezone: str
    spend_cap_cents: int
    low_balance_alert_cents: int
    def __init__(self, tenant_id: _Optional[str] = ..., plan_id: _Optional[str] = ..., billing_email: _Optional[str] = ..., plan_version: _Optional[int] = ..., billing_anchor: _Optional[_Union[Subscription.BillingAnchor, str]] = ..., timezone: _Optional[str] = ..., spend_cap_cents: _Optional[int] = ..., low_balance_alert_cents: _Optional[int] = ...) -> None: ...

class GetSubscriptionRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListTenantSubscriptionsRequest(_message.Message):
    __slots__ = ("tenant_id", "status", "page_size", "page_token")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    status: Subscription.Status
    page_size: int
    page_token: str
    def __init__(self, tenant_id: _Optional[str] = ..., status: _Optional[_Union[Subscription.Status, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTenantSubscriptionsResponse(_message.Message):
    __slots__ = ("subscriptions", "next_page_token")
    SUBSCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    subscriptions: _containers.RepeatedCompositeFieldContainer[Subscription]
    next_page_token: str
    def __init__(self, subscriptions: _Optional[_Iterable[_Union[Subscription, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateSubscriptionRequest(_message.Message):
    __slots__ = ("id", "plan_id", "billing_email", "plan_version", "effective", "cancel_at_period_end", "spend_cap_cents", "low_balance_alert_cents")
    class Effective(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        EFFECTIVE_UNSPECIFIED: _ClassVar[UpdateSubscriptionRequest.Effective]
        NOW: _ClassVar[UpdateSubscriptionRequest.Effective]
        PERIOD_END: _ClassVar[UpdateSubscriptionRequest.Effective]
    EFFECTIVE_UNSPECIFIED: UpdateSubscriptionRequest.Effective
    NOW: UpdateSubscriptionRequest.Effective
    PERIOD_END: UpdateSubscriptionRequest.Effective
    ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    BILLING_EMAIL_FIELD_NUMBER: _ClassVar[int]
    PLAN_VERSION_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_FIELD_NUMBER: _ClassVar[int]
    CANCEL_AT_PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    SPEND_CAP_CENTS_FIELD_NUMBER: _ClassVar[int]
    LOW_BALANCE_ALERT_CENTS_FIELD_NUMBER: _ClassVar[int]
    id: str
    plan_id: str
    billing_email: str
    plan_version: int
    effective: UpdateSubscriptionRequest.Effective
    cancel_at_period_end: bool
    spend_cap_cents: int
    low_balance_alert_cents: int
    def __init__(self, id: _Optional[str] = ..., plan_id: _Optional[str] = ..., billing_email: _Optional[str] = ..., plan_version: _Optional[int] = ..., effective: _Optional[_Union[UpdateSubscriptionRequest.Effective, str]] = ..., cancel_at_period_end: _Optional[bool] = ..., spend_cap_cents: _Optional[int] = ..., low_balance_alert_cents: _Optional[int] = ...) -> None: ...

class CancelSubscriptionRequest(_message.Message):
    __slots__ = ("id", "at_period_end")
    ID_FIELD_NUMBER: _ClassVar[int]
    AT_PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    id: str
    at_period_end: bool
    def __init__(self, id: _Optional[str] = ..., at_period_end: _Optional[bool] = ...) -> None: ...
