"""MeterService: endpoints 20-24, messages to and from server.services.meters."""

from __future__ import annotations

import datetime as dt

from billing.v1 import meter_pb2, meter_pb2_grpc
from server.domain import meters as rules
from server.domain.errors import InvalidArgument, within
from server.persistence.read_models import MeterView
from server.resources import timestamp
from server.services import meters
from server.transport.context import current_principal
from server.transport.convert import now

Aggregation = meter_pb2.Meter.Aggregation
PERIOD = meter_pb2.GetMeterUsageRequest.PERIOD


def meter_message(meter: MeterView) -> meter_pb2.Meter:
    return meter_pb2.Meter(
        id=meter.id,
        name=meter.name,
        event_type=meter.event_type,
        aggregation=Aggregation.Value(meter.aggregation),  # type: ignore[arg-type]  # the stubs want the enum's own type
        value_property=meter.value_property,
        group_by=meter.group_by,
        filter=meter.filter,
        archived=meter.archived_at is not None,
        created_at=timestamp(meter.created_at),
    )


def definition(message: meter_pb2.Meter) -> rules.Meter:
    """The meter a request defines; an unset aggregation is named like any invalid one."""
    aggregation = Aggregation.Name(message.aggregation) if message.aggregation else ""
    try:
        return rules.validate_meter(
            message.id,
            message.name,
            message.event_type,
            aggregation,
            message.value_property,
            list(message.group_by),
            dict(message.filter),
        )
    except InvalidArgument as error:
        raise within(error, "meter") from None


class MeterServicer(meter_pb2_grpc.MeterServiceServicer):
    def CreateMeter(self, request, context):
        principal = current_principal()
        return meter_message(meters.create_meter(principal, definition(request.meter), now=now()))

    def ListMeters(self, request, context):
        found, token = meters.list_meters(
            request.page_size, request.page_token, include_archived=request.include_archived
        )
        return meter_pb2.ListMetersResponse(meters=[meter_message(m) for m in found], next_page_token=token)

    def GetMeter(self, request, context):
        return meter_message(meters.get_meter(request.meter_id))

    def DeleteMeter(self, request, context):
        return meter_message(meters.archive_meter(current_principal(), request.meter_id, now=now()))

    def GetMeterUsage(self, request, context):
        found = meters.meter_usage(
            current_principal(),
            request.subscription_id,
            request.meter_id,
            start=request.start_time.ToDatetime(tzinfo=dt.timezone.utc) if request.HasField("start_time") else None,
            end=request.end_time.ToDatetime(tzinfo=dt.timezone.utc) if request.HasField("end_time") else None,
            window=rules.Window(meter_pb2.GetMeterUsageRequest.WindowSize.Name(request.window_size or PERIOD)),
            group_by=list(request.group_by),
        )
        return meter_pb2.GetMeterUsageResponse(
            rows=[
                meter_pb2.MeterUsageRow(
                    window_start=timestamp(row.window_start),
                    window_end=timestamp(row.window_end),
                    groups=row.groups,
                    value=row.value,
                )
                for row in found
            ]
        )
