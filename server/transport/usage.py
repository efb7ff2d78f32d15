"""UsageService: endpoints 8-11. Translates messages and calls server.services.usage."""

from __future__ import annotations

import datetime as dt

from billing.v1 import usage_pb2, usage_pb2_grpc
from server.domain.usage import RawEvent
from server.resources import timestamp
from server.services import usage
from server.transport.context import current_principal
from server.transport.convert import now


def _raw(event: usage_pb2.UsageEvent) -> RawEvent:
    return RawEvent(
        event_id=event.event_id,
        endpoint=event.endpoint,
        count=event.count if event.HasField("count") else None,
        timestamp=event.timestamp.ToDatetime(tzinfo=dt.timezone.utc) if event.HasField("timestamp") else None,
        event_type=event.event_type,
        # Struct's own mapping: strings, floats, bools, None, and nested Struct / ListValue, which
        # the domain refuses by name.
        properties=dict(event.properties.items()) if event.properties else {},
    )


class UsageServicer(usage_pb2_grpc.UsageServiceServicer):
    def TrackUsage(self, request, context):
        result = usage.track(current_principal(), request.subscription_id, [_raw(e) for e in request.events], now=now())
        return usage_pb2.TrackUsageResponse(
            accepted=result.accepted,
            duplicates=result.duplicates,
            rejected=len(result.rejections),
            rejections=[
                usage_pb2.RejectedEvent(index=r.index, event_id=r.event_id, reason=r.reason, message=r.message)
                for r in result.rejections
            ],
        )

    def GetUsage(self, request, context):
        summary = usage.usage(current_principal(), request.subscription_id, now=now())
        return usage_pb2.Usage(
            subscription_id=summary.subscription_id,
            period_start=timestamp(summary.period_start),
            period_end=timestamp(summary.period_end),
            total_requests=summary.total_requests,
            included_requests=summary.included_requests,
            remaining_included=summary.remaining_included,
            overage_requests=summary.overage_requests,
            estimated_overage_cents=summary.estimated_overage_cents,
            currency=summary.currency,
            accrued_cents=summary.accrued_cents,
            credit_balance_cents=summary.credit_balance_cents,
        )

    def GetDailyUsage(self, request, context):
        days = usage.daily(current_principal(), request.subscription_id, request.start_date, request.end_date)
        return usage_pb2.GetDailyUsageResponse(
            days=[usage_pb2.DailyUsage(date=day.isoformat(), requests=n) for day, n in days]
        )

    def GetUsageAnalytics(self, request, context):
        first, last, result = usage.analytics(
            current_principal(), request.subscription_id, request.start_date, request.end_date
        )
        return usage_pb2.UsageAnalytics(
            subscription_id=request.subscription_id,
            start_date=first.isoformat(),
            end_date=last.isoformat(),
            total_requests=result.total_requests,
            average_daily_requests=result.average_daily_requests,
            peak_day=(
                usage_pb2.DailyUsage(date=result.peak_day[0].isoformat(), requests=result.peak_day[1])
                if result.peak_day
                else None
            ),
            peak_hour=(
                usage_pb2.PeakHour(hour=timestamp(result.peak_hour[0]), requests=result.peak_hour[1])
                if result.peak_hour
                else None
            ),
            top_endpoints=[usage_pb2.EndpointUsage(endpoint=name, requests=n) for name, n in result.top_endpoints],
        )
