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
    __slots__ = ("id", "name", "tier", "monthly_fee_cents", "currency", "rate_limit_per_minute", "included_requests", "overage_per_1k_cents", "version", "trial_days", "billing", "private", "archived", "charges", "route_costs", "created_at")
    class Billing(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        BILLING_UNSPECIFIED: _ClassVar[Plan.Billing]
        POSTPAID: _ClassVar[Plan.Billing]
        PREPAID: _ClassVar[Plan.Billing]
    BILLING_UNSPECIFIED: Plan.Billing
    POSTPAID: Plan.Billing
    PREPAID: Plan.Billing
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    MONTHLY_FEE_CENTS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    INCLUDED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    OVERAGE_PER_1K_CENTS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TRIAL_DAYS_FIELD_NUMBER: _ClassVar[int]
    BILLING_FIELD_NUMBER: _ClassVar[int]
    PRIVATE_FIELD_NUMBER: _ClassVar[int]
    ARCHIVED_FIELD_NUMBER: _ClassVar[int]
    CHARGES_FIELD_NUMBER: _ClassVar[int]
    ROUTE_COSTS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    tier: Tier
    monthly_fee_cents: int
    currency: str
    rate_limit_per_minute: int
    included_requests: int
    overage_per_1k_cents: int
    version: int
    trial_days: int
    billing: Plan.Billing
    private: bool
    archived: bool
    charges: _containers.RepeatedCompositeFieldContainer[Charge]
    route_costs: _containers.RepeatedCompositeFieldContainer[RouteCost]
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., tier: _Optional[_Union[Tier, str]] = ..., monthly_fee_cents: _Optional[int] = ..., currency: _Optional[str] = ..., rate_limit_per_minute: _Optional[int] = ..., included_requests: _Optional[int] = ..., overage_per_1k_cents: _Optional[int] = ..., version: _Optional[int] = ..., trial_days: _Optional[int] = ..., billing: _Optional[_Union[Plan.Billing, str]] = ..., private: _Optional[bool] = ..., archived: _Optional[bool] = ..., charges: _Optional[_Iterable[_Union[Charge, _Mapping]]] = ..., route_costs: _Optional[_Iterable[_Union[RouteCost, _Mapping]]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Charge(_message.Message):
    __slots__ = ("id", "meter_id", "display_name", "filter", "included", "model", "unit_price", "unit_size", "package_size", "tiers", "hard_limit")
    class Model(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        MODEL_UNSPECIFIED: _ClassVar[Charge.Model]
        PER_UNIT: _ClassVar[Charge.Model]
        PACKAGE: _ClassVar[Charge.Model]
        GRADUATED: _ClassVar[Charge.Model]
        VOLUME: _ClassVar[Charge.Model]
    MODEL_UNSPECIFIED: Charge.Model
    PER_UNIT: Charge.Model
    PACKAGE: Charge.Model
    GRADUATED: Charge.Model
    VOLUME: Charge.Model
    class FilterEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    METER_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    INCLUDED_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    UNIT_SIZE_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    HARD_LIMIT_FIELD_NUMBER: _ClassVar[int]
    id: str
    meter_id: str
    display_name: str
    filter: _containers.ScalarMap[str, str]
    included: int
    model: Charge.Model
    unit_price: str
    unit_size: int
    package_size: int
    tiers: _containers.RepeatedCompositeFieldContainer[PriceTier]
    hard_limit: bool
    def __init__(self, id: _Optional[str] = ..., meter_id: _Optional[str] = ..., display_name: _Optional[str] = ..., filter: _Optional[_Mapping[str, str]] = ..., included: _Optional[int] = ..., model: _Optional[_Union[Charge.Model, str]] = ..., unit_price: _Optional[str] = ..., unit_size: _Optional[int] = ..., package_size: _Optional[int] = ..., tiers: _Optional[_Iterable[_Union[PriceTier, _Mapping]]] = ..., hard_limit: _Optional[bool] = ...) -> None: ...

class PriceTier(_message.Message):
    __slots__ = ("up_to", "unit_price", "flat_cents")
    UP_TO_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    FLAT_CENTS_FIELD_NUMBER: _ClassVar[int]
    up_to: str
    unit_price: str
    flat_cents: int
    def __init__(self, up_to: _Optional[str] = ..., unit_price: _Optional[str] = ..., flat_cents: _Optional[int] = ...) -> None: ...

class RouteCost(_message.Message):
    __slots__ = ("method", "path_prefix", "cost")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PATH_PREFIX_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    method: str
    path_prefix: str
    cost: int
    def __init__(self, method: _Optional[str] = ..., path_prefix: _Optional[str] = ..., cost: _Optional[int] = ...) -> None: ...

class ListPlansRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPlansResponse(_message.Message):
    __slots__ = ("plans",)
    PLANS_FIELD_NUMBER: _ClassVar[int]
    plans: _containers.RepeatedCompositeFieldContainer[Plan]
    def __init__(self, plans: _Optional[_Iterable[_Union[Plan, _Mapping]]] = ...) -> None: ...

class GetPlanRequest(_message.Message):
    __slots__ = ("plan_id", "version")
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    plan_id: str
    version: int
    def __init__(self, plan_id: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class CreatePlanRequest(_message.Message):
    __slots__ = ("plan",)
    PLAN_FIELD_NUMBER: _ClassVar[int]
    plan: Plan
    def __init__(self, plan: _Optional[_Union[Plan, _Mapping]] = ...) -> None: ...

class UpdatePlanRequest(_message.Message):
    __slots__ = ("plan_id", "plan")
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    plan_id: str
    plan: Plan
    def __init__(self, plan_id: _Optional[str] = ..., plan: _Optional[_Union[Plan, _Mapping]] = ...) -> None: ...

class DeletePlanRequest(_message.Message):
    __slots__ = ("plan_id",)
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    plan_id: str
    def __init__(self, plan_id: _Optional[str] = ...) -> None: ...
