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

class Meter(_message.Message):
    __slots__ = ("id", "name", "event_type", "aggregation", "value_property", "group_by", "filter", "archived", "created_at")
    class Aggregation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        AGGREGATION_UNSPECIFIED: _ClassVar[Meter.Aggregation]
        COUNT: _ClassVar[Meter.Aggregation]
        SUM: _ClassVar[Meter.Aggregation]
        MAX: _ClassVar[Meter.Aggregation]
        UNIQUE_COUNT: _ClassVar[Meter.Aggregation]
        LATEST: _ClassVar[Meter.Aggregation]
    AGGREGATION_UNSPECIFIED: Meter.Aggregation
    COUNT: Meter.Aggregation
    SUM: Meter.Aggregation
    MAX: Meter.Aggregation
    UNIQUE_COUNT: Meter.Aggregation
    LATEST: Meter.Aggregation
    class FilterEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    VALUE_PROPERTY_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    ARCHIVED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    event_type: str
    aggregation: Meter.Aggregation
    value_property: str
    group_by: _containers.RepeatedScalarFieldContainer[str]
    filter: _containers.ScalarMap[str, str]
    archived: bool
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., event_type: _Optional[str] = ..., aggregation: _Optional[_Union[Meter.Aggregation, str]] = ..., value_property: _Optional[str] = ..., group_by: _Optional[_Iterable[str]] = ..., filter: _Optional[_Mapping[str, str]] = ..., archived: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateMeterRequest(_message.Message):
    __slots__ = ("meter",)
    METER_FIELD_NUMBER: _ClassVar[int]
    meter: Meter
    def __init__(self, meter: _Optional[_Union[Meter, _Mapping]] = ...) -> None: ...

class ListMetersRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "include_archived")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_ARCHIVED_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    include_archived: bool
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., include_archived: _Optional[bool] = ...) -> None: ...

class ListMetersResponse(_message.Message):
    __slots__ = ("meters", "next_page_token")
    METERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    meters: _containers.RepeatedCompositeFieldContainer[Meter]
    next_page_token: str
    def __init__(self, meters: _Optional[_Iterable[_Union[Meter, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetMeterRequest(_message.Message):
    __slots__ = ("meter_id",)
    METER_ID_FIELD_NUMBER: _ClassVar[int]
    meter_id: str
    def __init__(self, meter_id: _Optional[str] = ...) -> None: ...

class DeleteMeterRequest(_message.Message):
    __slots__ = ("meter_id",)
    METER_ID_FIELD_NUMBER: _ClassVar[int]
    meter_id: str
    def __init__(self, meter_id: _Optional[str] = ...) -> None: ...

class GetMeterUsageRequest(_message.Message):
    __slots__ = ("subscription_id", "meter_id", "start_time", "end_time", "window_size", "group_by")
    class WindowSize(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        WINDOW_SIZE_UNSPECIFIED: _ClassVar[GetMeterUsageRequest.WindowSize]
        HOUR: _ClassVar[GetMeterUsageRequest.WindowSize]
        DAY: _ClassVar[GetMeterUsageRequest.WindowSize]
        PERIOD: _ClassVar[GetMeterUsageRequest.WindowSize]
    WINDOW_SIZE_UNSPECIFIED: GetMeterUsageRequest.WindowSize
    HOUR: GetMeterUsageRequest.WindowSize
    DAY: GetMeterUsageRequest.WindowSize
    PERIOD: GetMeterUsageRequest.WindowSize
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    METER_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SIZE_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    meter_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    window_size: GetMeterUsageRequest.WindowSize
    group_by: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, subscription_id: _Optional[str] = ..., meter_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window_size: _Optional[_Union[GetMeterUsageRequest.WindowSize, str]] = ..., group_by: _Optional[_Iterable[str]] = ...) -> None: ...

class MeterUsageRow(_message.Message):
    __slots__ = ("window_start", "window_end", "groups", "value")
    class GroupsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    window_start: _timestamp_pb2.Timestamp
    window_end: _timestamp_pb2.Timestamp
    groups: _containers.ScalarMap[str, str]
    value: str
    def __init__(self, window_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., groups: _Optional[_Mapping[str, str]] = ..., value: _Optional[str] = ...) -> None: ...

class GetMeterUsageResponse(_message.Message):
    __slots__ = ("rows",)
    ROWS_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[MeterUsageRow]
    def __init__(self, rows: _Optional[_Iterable[_Union[MeterUsageRow, _Mapping]]] = ...) -> None: ...
