"""Settings: one validated structure, read from the environment once at start-up."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import pathlib
import urllib.parse

from server.domain.issuer import Issuer

DEFAULT_CATALOGUE = pathlib.Path(__file__).parent / "catalogue" / "plans.json"
MIN_BOOTSTRAP_KEY = 16
MIN_PORTAL_SECRET = 32


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


def _number(
    env: dict[str, str], name: str, default: float, *, minimum: float, maximum: float, integer: bool = False
) -> float:
    raw = env.get(name) or str(default)
    kind = "an integer" if integer else "a number"
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be {kind} from {minimum:g} to {maximum:g}, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be {kind} from {minimum:g} to {maximum:g}, got {raw!r}")
    return value


def _pem_file(env: dict[str, str], name: str) -> pathlib.Path | None:
    raw = env.get(name)
    if not raw:
        return None
    path = pathlib.Path(raw)
    if not path.is_file():
        raise ConfigError(f"{name} must be a readable PEM file, got {raw!r}")
    return path.resolve()


def _pair(env: dict[str, str], cert_name: str, key_name: str) -> tuple[pathlib.Path | None, pathlib.Path | None]:
    """A certificate and its key come together or not at all."""
    cert, key = _pem_file(env, cert_name), _pem_file(env, key_name)
    if (cert is None) != (key is None):
        missing, present = (key_name, cert_name) if key is None else (cert_name, key_name)
        raise ConfigError(f"{missing} must be set together with {present}")
    return cert, key


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def _flag(env: dict[str, str], name: str) -> bool:
    raw = env.get(name, "")
    if raw not in ("", "0", "1"):
        raise ConfigError(f"{name} must be 1 or 0, got {raw!r}")
    return raw == "1"


def _split_url(url: str) -> urllib.parse.SplitResult | None:
    """The URL's parts, or None if it does not parse (a malformed port included)."""
    try:
        parsed = urllib.parse.urlsplit(url)
        parsed.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return None
    return parsed


def _upstream(url: str | None) -> str | None:
    """BILLING_UPSTREAM_URL must be plain http://host[:port] (the gateway adds no path prefix)."""
    if url is None:
        return None
    parsed = _split_url(url)
    if parsed is None or parsed.scheme != "http" or not parsed.hostname or parsed.path not in ("", "/"):
        raise ConfigError(f"BILLING_UPSTREAM_URL must look like http://host:port, got {url!r}")
    return url


def _public_url(url: str | None) -> str | None:
    """BILLING_PUBLIC_URL: http(s)://host[:port][/prefix], kept without a trailing slash."""
    if url is None:
        return None
    parsed = _split_url(url)
    if (
        parsed is None
        or parsed.scheme not in ("http", "https")
        or not parsed.hostname
        or parsed.query
        or parsed.fragment
    ):
        raise ConfigError(f"BILLING_PUBLIC_URL must look like https://host[:port][/prefix], got {url!r}")
    return url.rstrip("/")


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
    issuer: Issuer = Issuer(name="API Platform", address="", tax_id="")  # noqa: RUF009 - frozen, so one shared default is safe
    mail_from: str = "billing@localhost"
    # TLS: Envoy's listeners and the gRPC port serve this certificate when both are set.
    tls_cert: pathlib.Path | None = None
    tls_key: pathlib.Path | None = None
    # mTLS on the gRPC port: client certificates must chain to this CA.
    grpc_client_ca: pathlib.Path | None = None
    # What Envoy presents to the gRPC port under mTLS (default: tls_cert and tls_key).
    envoy_client_cert: pathlib.Path | None = None
    envoy_client_key: pathlib.Path | None = None
    allow_plaintext: bool = False
    gateway_port: int = 8000
    # The platform's API behind the gateway, "http://host:port"; None: `make run` starts the demo.
    upstream_url: str | None = None
    demo_upstream_port: int = 8081
    # Where browsers reach the REST listener, for portal links; None: this machine's REST listener.
    public_url: str | None = None
    # HMAC key of portal links; None: a random one the first replica stores in the database.
    portal_secret: str | None = None
    # http:// webhook URLs to loopback or private addresses (local development; `make run` sets it).
    webhooks_allow_private: bool = False
    # Prometheus /metrics of the server (replica i of `make run` adds i) and of the scheduler; 0: none.
    metrics_port: int = 9464
    scheduler_metrics_port: int = 9465
    # SIGTERM: seconds in-flight calls may take to finish before the server exits.
    shutdown_grace_s: float = 10.0
    # Server processes `make run` starts behind Envoy, on BILLING_GRPC_PORT, +1, ...
    replicas: int = 1

    @property
    def database_label(self) -> str:
        """DATABASE_URL without its credentials, for logs and messages."""
        return self.database_url.split("@")[-1]

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def tls_files(self) -> tuple[pathlib.Path, pathlib.Path]:
        """(certificate, key), for callers that checked `tls` (the settings take both or neither)."""
        if self.tls_cert is None or self.tls_key is None:
            raise ConfigError("TLS is off: no certificate and key are set")
        return self.tls_cert, self.tls_key

    @property
    def grpc_security(self) -> str:
        return "mTLS" if self.grpc_client_ca else "TLS" if self.tls else "plaintext"

    @property
    def portal_base_url(self) -> str:
        """BILLING_PUBLIC_URL, else the REST listener on loopback (https when it serves TLS)."""
        scheme = "https" if self.tls else "http"
        return self.public_url or f"{scheme}://127.0.0.1:{self.http_port}"

    def refuse_plaintext_exposure(self) -> None:
        """Every call carries a bearer key: a listener off loopback must not speak clear text
        unless the operator says TLS is terminated in front of it."""
        if not is_loopback(self.bind) and not self.tls and not self.allow_plaintext:
            raise ConfigError(
                f"BILLING_BIND={self.bind} is not loopback: set BILLING_TLS_CERT and BILLING_TLS_KEY, "
                "or BILLING_ALLOW_PLAINTEXT=1 if TLS is terminated in front of this service"
            )

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        threads = env.get("BILLING_GRPC_THREADS", "16")
        retention = env.get("BILLING_USAGE_RETENTION_DAYS", "35")
        if not threads.isdigit() or int(threads) < 1:
            raise ConfigError(f"BILLING_GRPC_THREADS must be a positive integer, got {threads!r}")
        if not retention.isdigit() or int(retention) < 1:
            raise ConfigError(f"BILLING_USAGE_RETENTION_DAYS must be a positive integer, got {retention!r}")
        bootstrap_key = env.get("BILLING_BOOTSTRAP_ADMIN_KEY") or None
        if bootstrap_key is not None and len(bootstrap_key) < MIN_BOOTSTRAP_KEY:
            raise ConfigError(f"BILLING_BOOTSTRAP_ADMIN_KEY must be at least {MIN_BOOTSTRAP_KEY} characters")
        portal_secret = env.get("BILLING_PORTAL_SECRET") or None
        if portal_secret is not None and len(portal_secret) < MIN_PORTAL_SECRET:
            raise ConfigError(f"BILLING_PORTAL_SECRET must be at least {MIN_PORTAL_SECRET} characters")
        settings = cls(
            metrics_port=_port(env, "BILLING_METRICS_PORT", cls.metrics_port),
            scheduler_metrics_port=_port(env, "BILLING_SCHEDULER_METRICS_PORT", cls.scheduler_metrics_port),
            shutdown_grace_s=_number(env, "BILLING_SHUTDOWN_GRACE_S", cls.shutdown_grace_s, minimum=0, maximum=3600),
            replicas=int(_number(env, "BILLING_REPLICAS", cls.replicas, minimum=1, maximum=64, integer=True)),
            database_url=env.get("DATABASE_URL") or cls.database_url,
            redis_url=env.get("REDIS_URL") or None,
            bind=env.get("BILLING_BIND") or cls.bind,
            grpc_port=_port(env, "BILLING_GRPC_PORT", cls.grpc_port),
            http_port=_port(env, "BILLING_HTTP_PORT", cls.http_port),
            envoy_admin_port=_port(env, "BILLING_ENVOY_ADMIN_PORT", cls.envoy_admin_port),
            grpc_threads=int(threads),
            bootstrap_admin_key=bootstrap_key,
            smtp_url=env.get("SMTP_URL") or None,
            outbox_dir=pathlib.Path(env.get("OUTBOX_DIR") or cls.outbox_dir),
            catalogue_path=pathlib.Path(env.get("BILLING_CATALOGUE") or cls.catalogue_path),
            usage_retention_days=int(retention),
            issuer=Issuer(
                name=env.get("BILLING_ISSUER_NAME") or cls.issuer.name,
                address=env.get("BILLING_ISSUER_ADDRESS", ""),
                tax_id=env.get("BILLING_ISSUER_TAX_ID", ""),
            ),
            mail_from=env.get("BILLING_MAIL_FROM") or cls.mail_from,
            **_tls_settings(env),
            gateway_port=_port(env, "BILLING_GATEWAY_PORT", cls.gateway_port),
            upstream_url=_upstream(env.get("BILLING_UPSTREAM_URL") or None),
            demo_upstream_port=_port(env, "BILLING_DEMO_UPSTREAM_PORT", cls.demo_upstream_port),
            public_url=_public_url(env.get("BILLING_PUBLIC_URL") or None),
            portal_secret=portal_secret,
            webhooks_allow_private=_flag(env, "BILLING_WEBHOOKS_ALLOW_PRIVATE"),
        )
        _check_replicas(settings)
        return settings

    def upstream_address(self) -> tuple[str, int]:
        """The gateway's upstream as (host, port): BILLING_UPSTREAM_URL, else the demo upstream."""
        if self.upstream_url is None:
            return "127.0.0.1", self.demo_upstream_port
        parsed = urllib.parse.urlsplit(self.upstream_url)
        if parsed.hostname is None:  # _upstream refuses such a URL when the settings are read
            raise ConfigError(f"BILLING_UPSTREAM_URL has no host: {self.upstream_url!r}")
        return parsed.hostname, parsed.port or 80


def _check_replicas(settings: Settings) -> None:
    """More than one replica needs REDIS_URL: each replica's in-process limiter would count alone,
    so exact limits and quota caps would admit up to N times what they allow. Replicas listen on
    BILLING_GRPC_PORT and the ports after it (metrics likewise, skipping the scheduler's): the
    whole range must exist, and port 0 (any free port) cannot start a range."""
    if settings.replicas == 1:
        return
    if settings.redis_url is None:
        raise ConfigError(
            f"BILLING_REPLICAS={settings.replicas} needs REDIS_URL: without a shared limiter each replica "
            "enforces rate limits and quota caps on its own share of the traffic"
        )
    if settings.grpc_port == 0:
        raise ConfigError(f"BILLING_REPLICAS={settings.replicas} needs a fixed BILLING_GRPC_PORT, not 0")
    for name, first, extra in (
        ("BILLING_GRPC_PORT", settings.grpc_port, 0),
        ("BILLING_METRICS_PORT", settings.metrics_port, 1),  # one more: the scheduler's port is skipped
    ):
        last = first + settings.replicas - 1 + extra
        if first and last > 65535:
            raise ConfigError(
                f"BILLING_REPLICAS={settings.replicas} from {name}={first} needs ports up to {last}, above 65535"
            )


def _tls_settings(env: dict[str, str]) -> dict:
    tls_cert, tls_key = _pair(env, "BILLING_TLS_CERT", "BILLING_TLS_KEY")
    client_ca = _pem_file(env, "BILLING_GRPC_CLIENT_CA")
    envoy_cert, envoy_key = _pair(env, "BILLING_ENVOY_CLIENT_CERT", "BILLING_ENVOY_CLIENT_KEY")
    if tls_cert is None and (client_ca or envoy_cert):
        name = "BILLING_GRPC_CLIENT_CA" if client_ca else "BILLING_ENVOY_CLIENT_CERT"
        raise ConfigError(f"{name} needs BILLING_TLS_CERT and BILLING_TLS_KEY: client certificates only work over TLS")
    return dict(
        tls_cert=tls_cert,
        tls_key=tls_key,
        grpc_client_ca=client_ca,
        envoy_client_cert=envoy_cert,
        envoy_client_key=envoy_key,
        allow_plaintext=_flag(env, "BILLING_ALLOW_PLAINTEXT"),
    )
