"""`billing-server`: migrate, seed, and serve gRPC until SIGINT or SIGTERM."""

from __future__ import annotations

import logging
import signal
import sys

from server.bootstrap import prepare
from server.config import ConfigError, Settings
from server.transport.app import create_server

log = logging.getLogger("billing.server")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = Settings.from_env()
        settings.refuse_plaintext_exposure()
    except ConfigError as error:
        print(f"billing-server: {error}", file=sys.stderr)
        return 2
    prepare(settings)
    server, port = create_server(settings)
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
