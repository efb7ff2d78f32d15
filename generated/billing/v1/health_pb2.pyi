from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetHealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetHealthResponse(_message.Message):
    __slots__ = ("status", "database", "version")
    class ServingStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        SERVING_STATUS_UNSPECIFIED: _ClassVar[GetHealthResponse.ServingStatus]
        SERVING: _ClassVar[GetHealthResponse.ServingStatus]
        NOT_SERVING: _ClassVar[GetHealthResponse.ServingStatus]
    SERVING_STATUS_UNSPECIFIED: GetHealthResponse.ServingStatus
    SERVING: GetHealthResponse.ServingStatus
    NOT_SERVING: GetHealthResponse.ServingStatus
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DATABASE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    status: GetHealthResponse.ServingStatus
    database: str
    version: str
    def __init__(self, status: _Optional[_Union[GetHealthResponse.ServingStatus, str]] = ..., database: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...
