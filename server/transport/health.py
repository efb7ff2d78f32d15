"""HealthService (endpoint 19): the REST face of readiness."""

from __future__ import annotations

from billing.v1 import health_pb2, health_pb2_grpc

from server import __version__
from server.services.health import database_status

Response = health_pb2.GetHealthResponse


class HealthServicer(health_pb2_grpc.HealthServiceServicer):
    def GetHealth(self, request, context):
        database = database_status()
        status = Response.SERVING if database == "ok" else Response.NOT_SERVING
        return Response(status=status, database=database, version=__version__)
