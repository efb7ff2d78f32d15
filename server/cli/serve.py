"""`billing-server`: serve gRPC until SIGINT or SIGTERM, on a schema that is up to date;
`billing-server migrate`: bring the schema up to date, under a lock, and exit."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from server import collector
from server.bootstrap import EXIT_CONFIG, serve_metrics, start
from server.persistence import db
from server.transport.app import create_server

log = logging.getLogger("billing.server")


def migrate() -> int:
    """Apply pending migrations (prepare does, under the lock) and say what was done."""
    start("billing-server migrate", migrate=True)
    db.close()
    log.info("schema up to date")
    return 0


def serve() -> int:
    settings = start("billing-server", serving=True)
    try:
        server, port = create_server(settings)
    except RuntimeError:  # grpcio: "Failed to bind"
        print(
            f"billing-server: BILLING_GRPC_PORT {settings.grpc_port} cannot be bound on {settings.bind}",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    serve_metrics("billing-server", "BILLING_METRICS_PORT", settings.metrics_port, settings.bind)
    collector.tune_for_serving()
    server.start()
    log.info(
        "gRPC listening on %s:%d (%s, database %s, metrics on port %d)",
        settings.bind,
        port,
        settings.grpc_security,
        settings.database_label,
        settings.metrics_port,
    )

    def stop(signum, frame):
        # New calls are refused at once (Envoy retries them on another replica); calls in flight
        # get the grace period to finish, then are cancelled.
        log.info("stopping on signal %d: in-flight calls have %gs to finish", signum, settings.shutdown_grace_s)
        server.stop(grace=settings.shutdown_grace_s)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.wait_for_termination()
    db.close()
    log.info("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="billing-server", description=__doc__.splitlines()[0])
    parser.add_argument(
        "command", nargs="?", choices=["serve", "migrate"], default="serve", help="serve (the default) or migrate"
    )
    args = parser.parse_args(argv)
    return migrate() if args.command == "migrate" else serve()


if __name__ == "__main__":
    sys.exit(main())
