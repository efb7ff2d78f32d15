"""Readiness for both doors from one probe: billing.v1 HealthService (endpoint 19, REST) and
grpc.health.v1 (load balancers, Envoy's health checks). Every check asks the database
(server/persistence/probe.py), so a lost database shows at once and a returning one recovers."""

from __future__ import annotations

from grpc_health.v1 import health
from grpc_health.v1 import health_pb2 as grpc_health_pb2

from billing.v1 import health_pb2, health_pb2_grpc
from server import __version__
from server.persistence.probe import DatabaseProbe

Response = health_pb2.GetHealthResponse
# Envoy turns a response carrying this header into a 503 (envoy/envoy.yaml.tmpl, Lua filter):
# the transcoder can only send 200 with a body, and load balancers read the status.
NOT_SERVING_HEADER = ("x-billing-not-serving", "1")
OK, UNAVAILABLE = "ok", "unavailable"
SERVING, NOT_SERVING = grpc_health_pb2.HealthCheckResponse.SERVING, grpc_health_pb2.HealthCheckResponse.NOT_SERVING


class Health(health_pb2_grpc.HealthServiceServicer, health.HealthServicer):
    """Both servicers in one: GetHealth, and grpc.health.v1 whose Check first sets all
    `services` (only when the database's state changed) from the same probe."""

    def __init__(self, services: list[str]) -> None:
        super().__init__()
        self._probe = DatabaseProbe()
        self._services = services
        self._serving: bool | None = None
        self._refresh()

    def _refresh(self) -> bool:
        serving = self._probe.ok()
        if serving != self._serving:
            self._serving = serving
            for name in self._services:
                self.set(name, SERVING if serving else NOT_SERVING)
        return serving

    def GetHealth(self, request, context):
        if self._refresh():
            return Response(status=Response.SERVING, database=OK, version=__version__)
        context.send_initial_metadata((NOT_SERVING_HEADER,))
        return Response(status=Response.NOT_SERVING, database=UNAVAILABLE, version=__version__)

    def Check(self, request, context):
        self._refresh()
        return super().Check(request, context)
