"""Readiness for both doors: HealthService (endpoint 19, REST) and grpc.health.v1, each asking
the database on every check, so a lost database shows at once and a returning one recovers."""

from __future__ import annotations

from billing.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1 import health, health_pb2 as grpc_health_pb2

from server import __version__
from server.services.health import OK, database_status

Response = health_pb2.GetHealthResponse
# Envoy turns a response carrying this header into a 503 (envoy/envoy.yaml.tmpl, Lua filter):
# the transcoder can only send 200 with a body, and load balancers read the status.
NOT_SERVING_HEADER = ("x-billing-not-serving", "1")


class HealthServicer(health_pb2_grpc.HealthServiceServicer):
    def GetHealth(self, request, context):
        database = database_status()
        if database != OK:
            context.send_initial_metadata((NOT_SERVING_HEADER,))
        status = Response.SERVING if database == OK else Response.NOT_SERVING
        return Response(status=status, database=database, version=__version__)


class DatabaseHealth(health.HealthServicer):
    """grpc.health.v1 whose every Check first sets all `services` from the database's state."""

    def __init__(self, services: list[str]) -> None:
        super().__init__()
        self._services = services
        self._refresh()

    def _refresh(self) -> None:
        serving = grpc_health_pb2.HealthCheckResponse.SERVING
        status = serving if database_status() == OK else grpc_health_pb2.HealthCheckResponse.NOT_SERVING
        for name in self._services:
            self.set(name, status)

    def Check(self, request, context):
        self._refresh()
        return super().Check(request, context)
