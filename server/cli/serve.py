"""`billing-server`: migrate, seed, and serve gRPC until SIGINT or SIGTERM."""

from __future__ import annotations

import logging
import signal
import sys

from server.bootstrap import EXIT_CONFIG, start
from server.transport.app import create_server

log = logging.getLogger("billing.server")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = start("billing-server", serving=True)
    try:
        server, port = create_server(settings)
    except RuntimeError:  # grpcio: "Failed to bind"
        print(f"billing-server: BILLING_GRPC_PORT {settings.grpc_port} cannot be bound on {settings.bind}",
              file=sys.stderr)
        return EXIT_CONFIG
    server.start()
    log.info("gRPC listening on %s:%d (%s, database %s)", settings.bind, port, settings.grpc_security,
             settings.database_url.split("@")[-1])

    def stop(signum, frame):
        log.info("stopping on signal %d", signum)
        server.stop(grace=5)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.wait_for_termination()
    return 0


if __name__ == "__main__":
    sys.exit(main())
