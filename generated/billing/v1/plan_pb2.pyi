from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Tier(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIER_UNSPECIFIED: _ClassVar[Tier]
    FREE: _ClassVar[Tier]
    STANDARD: _ClassVar[Tier]
    PREMIUM: _ClassVar[Tier]
    ENTERPRISE: _ClassVar[Tier]
TIER_UNSPECIFIED: Tier
FREE: Tier
STANDARD: Tier
PREMIUM: Tier
ENTERPRISE: Tier

class Plan(_message.Message):
    __slots__ = ("id", "name", "tier", "monthly_fee_cents", "currency", "rate_limit_per_minute", "included_requests", "overage_per_1k_cents")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    MONTHLY_FEE_CENTS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    INCLUDED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    OVERAGE_PER_1K_CENTS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    tier: Tier
    monthly_fee_cents: int
    currency: str
    rate_limit_per_minute: int
    included_requests: int
    overage_per_1k_cents: int
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., tier: _Optional[_Union[Tier, str]] = ..., monthly_fee_cents: _Optional[int] = ..., currency: _Optional[str] = ..., rate_limit_per_minute: _Optional[int] = ..., included_requests: _Optional[int] = ..., overage_per_1k_cents: _Optional[int] = ...) -> None: ...

class ListPlansRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPlansResponse(_message.Message):
    __slots__ = ("plans",)
    PLANS_FIELD_NUMBER: _ClassVar[int]
    plans: _containers.RepeatedCompositeFieldContainer[Plan]
    def __init__(self, plans: _Optional[_Iterable[_Union[Plan, _Mapping]]] = ...) -> None: ...

class GetPlanRequest(_message.Message):
    __slots__ = ("plan_id",)
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    plan_id: str
    def __init__(self, plan_id: _Optional[str] = ...) -> None: ...
