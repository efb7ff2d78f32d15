"""Usage-based API billing service: gRPC server, scheduler sidecar and their shared domain."""

__version__ = "0.1.0"
