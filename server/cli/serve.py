"""`billing-server`: serve gRPC until SIGINT or SIGTERM, on a schema that is up to date;
`billing-server migrate`: bring the schema up to date, under a lock, and exit;
`billing-server reaggregate --meter ID`: rebuild a meter's figures of the open periods from the raw events kept."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import signal
import sys

from server import collector
from server.bootstrap import EXIT_CONFIG, serve_metrics, start
from server.domain.errors import NotFound
from server.persistence import db
from server.services import metering
from server.transport.app import create_server

log = logging.getLogger("billing.server")


def migrate() -> int:
    """Apply pending migrations (prepare does, under the lock) and say what was done."""
    start("billing-server migrate", migrate=True)
    db.close()
    log.info("schema up to date")
    return 0


def reaggregate(meter_id: str) -> int:
    settings = start("billing-server reaggregate")
    try:
        with db.session():
            done = metering.reaggregate(
                meter_id, now=dt.datetime.now(dt.timezone.utc), retention_days=settings.usage_retention_days
            )
    except NotFound as error:
        print(f"billing-server reaggregate: {error.message}", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        db.close()
    log.info(
        "meter %s reaggregated: %d period(s), %d event(s) counted, %d without a valid value left out",
        meter_id,
        done.periods,
        done.events,
        done.skipped,
    )
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
    except OSError as error:  # the gateway admission listener
        print(
            f"billing-server: BILLING_GATEWAY_AUTHZ_PORT {settings.gateway_authz_port} cannot be bound: {error}",
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
        "command",
        nargs="?",
        choices=["serve", "migrate", "reaggregate"],
        default="serve",
        help="serve (the default), migrate, or reaggregate --meter ID",
    )
    parser.add_argument("--meter", help="reaggregate: the meter to rebuild")
    args = parser.parse_args(argv)
    if args.command == "reaggregate":
        if not args.meter:
            parser.error("reaggregate needs --meter ID")
        return reaggregate(args.meter)
    if args.meter:
        parser.error("--meter goes with reaggregate")
    return migrate() if args.command == "migrate" else serve()


if __name__ == "__main__":
    sys.exit(main())
