import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UsageEvent(_message.Message):
    __slots__ = ("event_id", "endpoint", "count", "timestamp", "event_type", "properties")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    endpoint: str
    count: int
    timestamp: _timestamp_pb2.Timestamp
    event_type: str
    properties: _struct_pb2.Struct
    def __init__(self, event_id: _Optional[str] = ..., endpoint: _Optional[str] = ..., count: _Optional[int] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., event_type: _Optional[str] = ..., properties: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class TrackUsageRequest(_message.Message):
    __slots__ = ("subscription_id", "events")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    events: _containers.RepeatedCompositeFieldContainer[UsageEvent]
    def __init__(self, subscription_id: _Optional[str] = ..., events: _Optional[_Iterable[_Union[UsageEvent, _Mapping]]] = ...) -> None: ...

class RejectedEvent(_message.Message):
    __slots__ = ("index", "event_id", "reason", "message")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    index: int
    event_id: str
    reason: str
    message: str
    def __init__(self, index: _Optional[int] = ..., event_id: _Optional[str] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class TrackUsageResponse(_message.Message):
    __slots__ = ("accepted", "duplicates", "rejected", "rejections")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    duplicates: int
    rejected: int
    rejections: _containers.RepeatedCompositeFieldContainer[RejectedEvent]
    def __init__(self, accepted: _Optional[int] = ..., duplicates: _Optional[int] = ..., rejected: _Optional[int] = ..., rejections: _Optional[_Iterable[_Union[RejectedEvent, _Mapping]]] = ...) -> None: ...

class GetUsageRequest(_message.Message):
    __slots__ = ("subscription_id",)
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    def __init__(self, subscription_id: _Optional[str] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("subscription_id", "period_start", "period_end", "total_requests", "included_requests", "remaining_included", "overage_requests", "estimated_overage_cents", "currency", "accrued_cents", "credit_balance_cents")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    TOTAL_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    INCLUDED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    REMAINING_INCLUDED_FIELD_NUMBER: _ClassVar[int]
    OVERAGE_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_OVERAGE_CENTS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    ACCRUED_CENTS_FIELD_NUMBER: _ClassVar[int]
    CREDIT_BALANCE_CENTS_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    period_start: _timestamp_pb2.Timestamp
    period_end: _timestamp_pb2.Timestamp
    total_requests: int
    included_requests: int
    remaining_included: int
    overage_requests: int
    estimated_overage_cents: int
    currency: str
    accrued_cents: int
    credit_balance_cents: int
    def __init__(self, subscription_id: _Optional[str] = ..., period_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., period_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., total_requests: _Optional[int] = ..., included_requests: _Optional[int] = ..., remaining_included: _Optional[int] = ..., overage_requests: _Optional[int] = ..., estimated_overage_cents: _Optional[int] = ..., currency: _Optional[str] = ..., accrued_cents: _Optional[int] = ..., credit_balance_cents: _Optional[int] = ...) -> None: ...

class GetDailyUsageRequest(_message.Message):
    __slots__ = ("subscription_id", "start_date", "end_date")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    start_date: str
    end_date: str
    def __init__(self, subscription_id: _Optional[str] = ..., start_date: _Optional[str] = ..., end_date: _Optional[str] = ...) -> None: ...

class DailyUsage(_message.Message):
    __slots__ = ("date", "requests")
    DATE_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    date: str
    requests: int
    def __init__(self, date: _Optional[str] = ..., requests: _Optional[int] = ...) -> None: ...

class GetDailyUsageResponse(_message.Message):
    __slots__ = ("days",)
    DAYS_FIELD_NUMBER: _ClassVar[int]
    days: _containers.RepeatedCompositeFieldContainer[DailyUsage]
    def __init__(self, days: _Optional[_Iterable[_Union[DailyUsage, _Mapping]]] = ...) -> None: ...

class GetUsageAnalyticsRequest(_message.Message):
    __slots__ = ("subscription_id", "start_date", "end_date")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    start_date: str
    end_date: str
    def __init__(self, subscription_id: _Optional[str] = ..., start_date: _Optional[str] = ..., end_date: _Optional[str] = ...) -> None: ...

class PeakHour(_message.Message):
    __slots__ = ("hour", "requests")
    HOUR_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    hour: _timestamp_pb2.Timestamp
    requests: int
    def __init__(self, hour: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., requests: _Optional[int] = ...) -> None: ...

class EndpointUsage(_message.Message):
    __slots__ = ("endpoint", "requests")
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    endpoint: str
    requests: int
    def __init__(self, endpoint: _Optional[str] = ..., requests: _Optional[int] = ...) -> None: ...

class UsageAnalytics(_message.Message):
    __slots__ = ("subscription_id", "start_date", "end_date", "total_requests", "average_daily_requests", "peak_day", "peak_hour", "top_endpoints")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_DAILY_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    PEAK_DAY_FIELD_NUMBER: _ClassVar[int]
    PEAK_HOUR_FIELD_NUMBER: _ClassVar[int]
    TOP_ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    start_date: str
    end_date: str
    total_requests: int
    average_daily_requests: float
    peak_day: DailyUsage
    peak_hour: PeakHour
    top_endpoints: _containers.RepeatedCompositeFieldContainer[EndpointUsage]
    def __init__(self, subscription_id: _Optional[str] = ..., start_date: _Optional[str] = ..., end_date: _Optional[str] = ..., total_requests: _Optional[int] = ..., average_daily_requests: _Optional[float] = ..., peak_day: _Optional[_Union[DailyUsage, _Mapping]] = ..., peak_hour: _Optional[_Union[PeakHour, _Mapping]] = ..., top_endpoints: _Optional[_Iterable[_Union[EndpointUsage, _Mapping]]] = ...) -> None: ...
