"""Settings: one validated structure, read from the environment once at start-up."""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import itertools
import os
import pathlib
import re
import urllib.parse
from collections.abc import Callable
from typing import Any

from server.domain import urls, webhooks
from server.domain.issuer import Issuer

DEFAULT_CATALOGUE = pathlib.Path(__file__).parent / "catalogue" / "plans.json"
MIN_BOOTSTRAP_KEY = 16
MIN_PORTAL_SECRET = 32
DEFAULT_GATEWAY_AUTHZ_PORT = 50151


DATABASE_SCHEMES = ("sqlite", "postgres", "postgresql", "postgres+pool", "postgresql+pool")
_CREDENTIALS = re.compile(r"//[^/?#]*@")
EXAMPLE_DATABASE = "sqlite:///billing.db or postgresql://user:password@host:5432/billing"


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


def _shown(url: str) -> str:
    """The value for a message: without a `user:password@` part, at most 80 characters."""
    return repr(_CREDENTIALS.sub("//", url, count=1)[:80])


def _url(
    name: str,
    url: str | None,
    example: str,
    schemes: tuple[str, ...],
    *,
    credentials: bool = False,
    host_required: bool = True,
    path: bool = True,
    query: bool = True,
) -> str | None:
    """A URL setting (None: unset) that passes the URL syntax rules (server/domain/urls.py) and
    has a path, query or fragment only where allowed; else a ConfigError naming it."""
    if not url:
        return None
    problem = urls.url_problem(url, schemes, credentials=credentials, host_required=host_required)
    if problem is None:
        parsed = urllib.parse.urlsplit(url)
        if not path and parsed.path not in ("", "/"):
            problem = "must have no path"
        elif (not query and parsed.query) or parsed.fragment:
            problem = "must have no query or fragment"
    if problem:
        raise ConfigError(f"{name} {problem}: it must look like {example}, got {_shown(url)}")
    return url


def _webhook_allow(env: dict[str, str]) -> frozenset[webhooks.Target]:
    """BILLING_WEBHOOKS_ALLOW: comma-separated IP:port (IPv6 in brackets). An IP, not a name: a
    name could resolve anywhere, and the list says exactly which listeners a tenant may reach."""
    targets = set()
    for entry in (part.strip() for part in env.get(webhooks.ALLOW_SETTING, "").split(",")):
        if not entry:
            continue
        url = f"http://{entry}"  # the URL syntax rules (server/domain/urls.py), then IP:port only
        try:
            if urls.url_problem(url, ("http",)):
                raise ValueError(entry)
            parsed = urllib.parse.urlsplit(url)
            if not parsed.port or parsed.path or parsed.query or parsed.fragment:
                raise ValueError(entry)
            targets.add(webhooks.target(parsed.hostname or "", parsed.port))
        except ValueError:
            raise ConfigError(
                f"{webhooks.ALLOW_SETTING} must be a comma-separated list of IP:port "
                f"(like 127.0.0.1:9000 or [::1]:9000), got {entry!r}"
            ) from None
    return frozenset(targets)


# Settings that no longer exist, refused rather than ignored: each did something the operator
# must now ask for differently.
RETIRED = {
    "BILLING_WEBHOOKS_ALLOW_PRIVATE": f"list each receiver webhooks may reach in {webhooks.ALLOW_SETTING}=IP:port",
    "BILLING_ENVOY_ADMIN_PORT": "Envoy's admin interface is a Unix socket now; billing-stack prints its path",
}


def _refuse_retired(env: dict[str, str]) -> None:
    for name, instead in RETIRED.items():
        if env.get(name):
            raise ConfigError(f"{name} is no longer supported: {instead}")


def _database_url(url: str) -> str:
    """DATABASE_URL: sqlite:///path (a file path may hold spaces), or PostgreSQL's URL."""
    if not url.startswith("sqlite:"):
        return (
            _url("DATABASE_URL", url, EXAMPLE_DATABASE, DATABASE_SCHEMES, credentials=True, host_required=False) or url
        )
    parsed = urllib.parse.urlsplit(url)
    if parsed.netloc or not parsed.path.strip("/"):
        raise ConfigError(f"DATABASE_URL must look like sqlite:///path/to/billing.db, got {_shown(url)}")
    return url


def _public_url(url: str | None) -> str | None:
    """BILLING_PUBLIC_URL: http(s)://host[:port][/prefix], kept without a trailing slash."""
    checked = _url("BILLING_PUBLIC_URL", url, "https://host[:port][/prefix]", ("http", "https"), query=False)
    return checked.rstrip("/") if checked else None


# (env, variable name, the field's default) -> the field's value, or a ConfigError naming the variable.
Parse = Callable[[dict[str, str], str, Any], Any]


def _positive(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name, str(default))
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"{name} must be a positive integer, got {raw!r}")
    return int(raw)


def _secret(minimum: int) -> Parse:
    """A secret of at least `minimum` characters, or None (unset)."""

    def parse(env: dict[str, str], name: str, default: None) -> str | None:
        value = env.get(name) or None
        if value is not None and len(value) < minimum:
            raise ConfigError(f"{name} must be at least {minimum} characters")
        return value

    return parse


def _text(env: dict[str, str], name: str, default: str) -> str:
    return env.get(name) or default


def _path(env: dict[str, str], name: str, default: pathlib.Path) -> pathlib.Path:
    return pathlib.Path(env.get(name) or default)


def _url_of(example: str, schemes: tuple[str, ...], **rules: bool) -> Parse:
    """A URL setting by _url's rules; None when unset."""
    return lambda env, name, default: _url(name, env.get(name), example, schemes, **rules)


def _issuer(env: dict[str, str], default: Issuer) -> Issuer:
    return Issuer(
        name=env.get("BILLING_ISSUER_NAME") or default.name,
        address=env.get("BILLING_ISSUER_ADDRESS", ""),
        tax_id=env.get("BILLING_ISSUER_TAX_ID", ""),
    )


# The settings read one variable each: (Settings field, variable, parse). The issuer, TLS and the
# webhook allow-list read several variables together (Settings.from_env).
VARIABLES: tuple[tuple[str, str, Parse], ...] = (
    ("grpc_threads", "BILLING_GRPC_THREADS", _positive),
    ("usage_retention_days", "BILLING_USAGE_RETENTION_DAYS", _positive),
    ("bootstrap_admin_key", "BILLING_BOOTSTRAP_ADMIN_KEY", _secret(MIN_BOOTSTRAP_KEY)),
    ("portal_secret", "BILLING_PORTAL_SECRET", _secret(MIN_PORTAL_SECRET)),
    ("metrics_port", "BILLING_METRICS_PORT", _port),
    ("scheduler_metrics_port", "BILLING_SCHEDULER_METRICS_PORT", _port),
    ("shutdown_grace_s", "BILLING_SHUTDOWN_GRACE_S", functools.partial(_number, minimum=0, maximum=3600)),
    ("replicas", "BILLING_REPLICAS", functools.partial(_number, minimum=1, maximum=64, integer=True)),
    # The environment's default differs from the dataclass's 0 (in-process servers of tests choose theirs).
    (
        "gateway_authz_port",
        "BILLING_GATEWAY_AUTHZ_PORT",
        lambda env, name, _: _port(env, name, DEFAULT_GATEWAY_AUTHZ_PORT),
    ),
    ("database_url", "DATABASE_URL", lambda env, name, default: _database_url(env.get(name) or default)),
    ("redis_url", "REDIS_URL", _url_of("redis://host:6379/0", ("redis", "rediss"), credentials=True)),
    ("bind", "BILLING_BIND", _text),
    ("grpc_port", "BILLING_GRPC_PORT", _port),
    ("http_port", "BILLING_HTTP_PORT", _port),
    ("smtp_url", "SMTP_URL", _url_of("smtp://host:port", ("smtp",), path=False, query=False)),
    ("outbox_dir", "OUTBOX_DIR", _path),
    ("catalogue_path", "BILLING_CATALOGUE", _path),
    ("mail_from", "BILLING_MAIL_FROM", _text),
    ("gateway_port", "BILLING_GATEWAY_PORT", _port),
    ("upstream_url", "BILLING_UPSTREAM_URL", _url_of("http://host:port", ("http",), path=False, query=False)),
    ("demo_upstream_port", "BILLING_DEMO_UPSTREAM_PORT", _port),
    ("public_url", "BILLING_PUBLIC_URL", lambda env, name, default: _public_url(env.get(name))),
)


@dataclasses.dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///billing.db"
    redis_url: str | None = None
    bind: str = "127.0.0.1"
    grpc_port: int = 50051
    http_port: int = 8080
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
    # The only loopback or private (address, port)s webhooks may reach, over http:// or https://.
    webhooks_allow: frozenset[webhooks.Target] = frozenset()
    # Prometheus /metrics of the server (replica i of `make run` adds i) and of the scheduler; 0: none.
    metrics_port: int = 9464
    scheduler_metrics_port: int = 9465
    # SIGTERM: seconds in-flight calls may take to finish before the server exits.
    shutdown_grace_s: float = 10.0
    # Server processes `make run` starts behind Envoy, on BILLING_GRPC_PORT, +1, ...
    replicas: int = 1
    # Each server's gateway admission listener (loopback only; replica i adds i); 0: none (the
    # dataclass default, so in-process servers of tests and benches choose theirs).
    gateway_authz_port: int = 0

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

    def authz_ports(self, replicas: int) -> list[int]:
        """The gateway admission listener of each of `replicas` servers (BILLING_GATEWAY_AUTHZ_PORT,
        +1, …); none when it is 0."""
        return [self.gateway_authz_port + i for i in range(replicas)] if self.gateway_authz_port else []

    def replica_ports(self) -> list[tuple[int, int]]:
        """(gRPC port, metrics port) of each server replica `make run` starts: the configured ports,
        then the next ones; metrics ports skip the scheduler's (9464, 9466, … beside 9465)."""
        metrics = (port for port in itertools.count(self.metrics_port) if port != self.scheduler_metrics_port)
        return [(self.grpc_port + i, next(metrics) if self.metrics_port else 0) for i in range(self.replicas)]

    def own_ports(self) -> dict[int, str]:
        """The ports this service listens on (and the gateway's upstream), each with the setting
        that chose it; 0 (none, or any free port) left out."""
        ports = {
            self.upstream_address()[1]: "the gateway's upstream (BILLING_UPSTREAM_URL or BILLING_DEMO_UPSTREAM_PORT)",
            self.scheduler_metrics_port: "BILLING_SCHEDULER_METRICS_PORT",
            self.http_port: "BILLING_HTTP_PORT",
            self.gateway_port: "BILLING_GATEWAY_PORT",
        }
        for i, (grpc_port, metrics_port) in enumerate(self.replica_ports()):
            ports[grpc_port] = f"BILLING_GRPC_PORT (replica {i})"
            ports[metrics_port] = f"BILLING_METRICS_PORT (replica {i})"
        for i, authz_port in enumerate(self.authz_ports(self.replicas)):
            ports[authz_port] = f"BILLING_GATEWAY_AUTHZ_PORT (replica {i})"
        ports.pop(0, None)
        return ports

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
        """The settings from the environment (or `env`): each variable by its row of VARIABLES, in
        order (the first malformed one is the error), then those read together, then the checks
        across settings."""
        env = dict(os.environ if env is None else env)
        _refuse_retired(env)
        parsed = {field: parse(env, name, getattr(cls, field)) for field, name, parse in VARIABLES}
        settings = cls(
            **parsed, issuer=_issuer(env, cls.issuer), **_tls_settings(env), webhooks_allow=_webhook_allow(env)
        )
        _check_replicas(settings)
        _check_webhook_allow(settings)
        return settings

    def upstream_address(self) -> tuple[str, int]:
        """The gateway's upstream as (host, port): BILLING_UPSTREAM_URL, else the demo upstream."""
        if self.upstream_url is None:
            return "127.0.0.1", self.demo_upstream_port
        parsed = urllib.parse.urlsplit(self.upstream_url)
        if parsed.hostname is None:  # _url refuses such a URL when the settings are read
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


def _check_webhook_allow(settings: Settings) -> None:
    """No allow-list entry may name a port of this service, on any address: a tenant's webhook
    must never reach the service itself (its admin, its metrics, its doors from the inside)."""
    own = settings.own_ports()
    for address, port in sorted(settings.webhooks_allow):
        if port in own:
            shown = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
            raise ConfigError(
                f"{webhooks.ALLOW_SETTING} lists {shown}, a port of this service ({own[port]}): "
                "webhooks must never reach the service itself"
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
