"""Settings: one validated structure, read from the environment once at start-up."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import urllib.parse

DEFAULT_CATALOGUE = pathlib.Path(__file__).parent / "catalogue" / "plans.json"


class ConfigError(ValueError):
    """A setting is malformed; the message names the variable."""


def _port(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name, str(default))
    try:
        port = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a port number, got {raw!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{name} must be between 0 and 65535, got {port}")
    return port


def _upstream(url: str | None) -> str | None:
    """BILLING_UPSTREAM_URL must be plain http://host[:port] (the gateway adds no path prefix)."""
    if url is None:
        return None
    try:
        parsed = urllib.parse.urlsplit(url)
        parsed.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        parsed = None
    if parsed is None or parsed.scheme != "http" or not parsed.hostname or parsed.path not in ("", "/"):
        raise ConfigError(f"BILLING_UPSTREAM_URL must look like http://host:port, got {url!r}")
    return url


@dataclasses.dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///billing.db"
    redis_url: str | None = None
    bind: str = "127.0.0.1"
    grpc_port: int = 50051
    http_port: int = 8080
    envoy_admin_port: int = 9901
    grpc_threads: int = 16
    bootstrap_admin_key: str | None = None
    smtp_url: str | None = None
    outbox_dir: pathlib.Path = pathlib.Path("outbox")
    catalogue_path: pathlib.Path = DEFAULT_CATALOGUE
    usage_retention_days: int = 35
    gateway_port: int = 8000
    # The platform's API behind the gateway, "http://host:port"; None: `make run` starts the demo.
    upstream_url: str | None = None
    demo_upstream_port: int = 8081

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        threads = env.get("BILLING_GRPC_THREADS", "16")
        retention = env.get("BILLING_USAGE_RETENTION_DAYS", "35")
        if not threads.isdigit() or int(threads) < 1:
            raise ConfigError(f"BILLING_GRPC_THREADS must be a positive integer, got {threads!r}")
        if not retention.isdigit() or int(retention) < 1:
            raise ConfigError(f"BILLING_USAGE_RETENTION_DAYS must be a positive integer, got {retention!r}")
        return cls(
            database_url=env.get("DATABASE_URL") or cls.database_url,
            redis_url=env.get("REDIS_URL") or None,
            bind=env.get("BILLING_BIND") or cls.bind,
            grpc_port=_port(env, "BILLING_GRPC_PORT", cls.grpc_port),
            http_port=_port(env, "BILLING_HTTP_PORT", cls.http_port),
            envoy_admin_port=_port(env, "BILLING_ENVOY_ADMIN_PORT", cls.envoy_admin_port),
            grpc_threads=int(threads),
            bootstrap_admin_key=env.get("BILLING_BOOTSTRAP_ADMIN_KEY") or None,
            smtp_url=env.get("SMTP_URL") or None,
            outbox_dir=pathlib.Path(env.get("OUTBOX_DIR") or cls.outbox_dir),
            catalogue_path=pathlib.Path(env.get("BILLING_CATALOGUE") or cls.catalogue_path),
            usage_retention_days=int(retention),
            gateway_port=_port(env, "BILLING_GATEWAY_PORT", cls.gateway_port),
            upstream_url=_upstream(env.get("BILLING_UPSTREAM_URL") or None),
            demo_upstream_port=_port(env, "BILLING_DEMO_UPSTREAM_PORT", cls.demo_upstream_port),
        )

    def upstream_address(self) -> tuple[str, int]:
        """The gateway's upstream as (host, port): BILLING_UPSTREAM_URL, else the demo upstream."""
        if self.upstream_url is None:
            return "127.0.0.1", self.demo_upstream_port
        parsed = urllib.parse.urlsplit(self.upstream_url)
        return parsed.hostname, parsed.port or 80
