"""The gRPC server factory: servicers, interceptors, grpc.health.v1 and reflection, and the
gateway's Envoy services (the access-log sink, and the grants' HTTP listener)."""

from __future__ import annotations

from concurrent import futures

import grpc
from grpc_health.v1 import health_pb2 as grpc_health_pb2
from grpc_health.v1 import health_pb2_grpc as grpc_health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from billing.v1 import (
    credit_pb2,
    credit_pb2_grpc,
    health_pb2,
    health_pb2_grpc,
    invoice_pb2,
    invoice_pb2_grpc,
    meter_pb2,
    meter_pb2_grpc,
    plan_pb2,
    plan_pb2_grpc,
    portal_pb2,
    portal_pb2_grpc,
    rate_limit_pb2,
    rate_limit_pb2_grpc,
    subscription_pb2,
    subscription_pb2_grpc,
    usage_pb2,
    usage_pb2_grpc,
    webhook_pb2,
    webhook_pb2_grpc,
)
from server.config import Settings
from server.ratelimit.factory import build_limiter
from server.services.gateway import Gateway
from server.transport import gateway, initial_metadata
from server.transport.credits import CreditServicer
from server.transport.health import Health
from server.transport.interceptors import default_interceptors
from server.transport.invoices import InvoiceServicer
from server.transport.meters import MeterServicer
from server.transport.plans import PlanServicer
from server.transport.portal import PortalServicer
from server.transport.rate_limits import RateLimitServicer
from server.transport.subscriptions import SubscriptionServicer
from server.transport.usage import UsageServicer
from server.transport.webhooks import WebhookServicer

# Bytes of a gRPC request message, and of a REST body (Envoy answers 413 past it): the largest
# valid track call, 1,000 events with 4 KiB of properties each, is about 4.5 MB either way.
MAX_REQUEST_BYTES = 8 * 1024 * 1024

SERVICE_NAMES = [
    module.DESCRIPTOR.services_by_name[name].full_name
    for module, name in [
        (plan_pb2, "PlanService"),
        (subscription_pb2, "SubscriptionService"),
        (usage_pb2, "UsageService"),
        (invoice_pb2, "InvoiceService"),
        (rate_limit_pb2, "RateLimitService"),
        (health_pb2, "HealthService"),
        (portal_pb2, "PortalService"),
        (webhook_pb2, "WebhookService"),
        (meter_pb2, "MeterService"),
        (credit_pb2, "CreditService"),
    ]
]


# gRPC's default soft limit (8 KiB) answered a REST request with a long path RESOURCE_EXHAUSTED,
# which the transcoder turned into a 429 naming internal headers: Envoy passes up to its 8 KiB of
# request line and headers (envoy_launcher.MAX_REQUEST_HEADERS_KB) plus the path again in
# x-envoy-original-path and headers of its own, all well under this.
MAX_METADATA_BYTES = 64 * 1024


def create_server(
    settings: Settings, address: str | None = None, *, rate_limits: bool = True
) -> tuple[grpc.Server, int]:
    """A configured, unstarted server bound to `address` (default: bind and grpc_port); returns
    it with the bound port, so tests can pass port 0 and let the OS choose. `rate_limits=False`
    leaves the tier rate-limit interceptor out (benchmarks compare against it)."""
    limiter = build_limiter(settings)
    initial_metadata.install()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.grpc_threads, thread_name_prefix="grpc"),
        interceptors=default_interceptors(limiter if rate_limits else None),
        options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
            ("grpc.max_metadata_size", MAX_METADATA_BYTES),
            ("grpc.absolute_max_metadata_size", MAX_METADATA_BYTES),
        ],
        maximum_concurrent_rpcs=settings.grpc_threads * 64,
    )
    plan_pb2_grpc.add_PlanServiceServicer_to_server(PlanServicer(), server)
    subscription_pb2_grpc.add_SubscriptionServiceServicer_to_server(SubscriptionServicer(), server)
    usage_pb2_grpc.add_UsageServiceServicer_to_server(UsageServicer(), server)
    invoice_pb2_grpc.add_InvoiceServiceServicer_to_server(InvoiceServicer(settings.issuer), server)
    rate_limit_pb2_grpc.add_RateLimitServiceServicer_to_server(RateLimitServicer(limiter), server)
    health = Health(["", *SERVICE_NAMES])
    health_pb2_grpc.add_HealthServiceServicer_to_server(health, server)
    portal_pb2_grpc.add_PortalServiceServicer_to_server(PortalServicer(settings), server)
    webhook_pb2_grpc.add_WebhookServiceServicer_to_server(WebhookServicer(allowed=settings.webhooks_allow), server)
    meter_pb2_grpc.add_MeterServiceServicer_to_server(MeterServicer(), server)
    credit_pb2_grpc.add_CreditServiceServicer_to_server(CreditServicer(), server)
    gateway.add_to_server(server, Gateway(), settings.gateway_authz_port)

    grpc_health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        [*SERVICE_NAMES, grpc_health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server,
    )

    address = address or f"{settings.bind}:{settings.grpc_port}"
    credentials = server_credentials(settings)
    port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    return server, port


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS from the same PEM files as Envoy's listeners (read once: a new certificate needs a
    restart here); with a client CA, a client certificate from it is required (mTLS)."""
    if not settings.tls:
        return None
    cert, key = settings.tls_files()
    client_ca = settings.grpc_client_ca.read_bytes() if settings.grpc_client_ca else None
    return grpc.ssl_server_credentials(
        [(key.read_bytes(), cert.read_bytes())], root_certificates=client_ca, require_client_auth=client_ca is not None
    )
