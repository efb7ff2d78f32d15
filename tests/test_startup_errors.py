"""Start-up problems are one line naming the setting and exit status 2, never a traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest

from processes import BIN, migrate


@pytest.fixture
def bound_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize(
    "program, env, setting",
    [
        ("billing-server", {"BILLING_GRPC_PORT": "fifty"}, "BILLING_GRPC_PORT"),
        ("billing-server", {"BILLING_BOOTSTRAP_ADMIN_KEY": "short"}, "BILLING_BOOTSTRAP_ADMIN_KEY"),
        ("billing-server", {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"}, "DATABASE_URL"),
        ("billing-server", {"DATABASE_URL": "sqlite:////no/such/folder/billing.db"}, "DATABASE_URL"),
        ("billing-server", {"DATABASE_URL": "nosuchdb://x"}, "DATABASE_URL"),
        ("billing-server", {"BILLING_CATALOGUE": "/no/such/plans.json"}, "BILLING_CATALOGUE"),
        ("billing-keys", {"BILLING_GRPC_THREADS": "0"}, "BILLING_GRPC_THREADS"),
        ("billing-scheduler", {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"}, "DATABASE_URL"),
        ("billing-server", {"BILLING_LOG_FORMAT": "xml"}, "BILLING_LOG_FORMAT"),
        ("billing-stack", {"BILLING_REPLICAS": "0"}, "BILLING_REPLICAS"),
        ("billing-stack", {"BILLING_WEBHOOKS_ALLOW": "127.0.0.1:8080"}, "BILLING_WEBHOOKS_ALLOW"),
        ("billing-stack", {"BILLING_WEBHOOKS_ALLOW_PRIVATE": "1"}, "BILLING_WEBHOOKS_ALLOW"),
        ("billing-scheduler", {"BILLING_WEBHOOKS_ALLOW": "localhost:9000"}, "BILLING_WEBHOOKS_ALLOW"),
        ("billing-stack", {"REDIS_URL": "notaurl"}, "REDIS_URL"),
        ("billing-server", {"REDIS_URL": "redis://127.0.0.1:99999/0"}, "REDIS_URL"),
        ("billing-scheduler", {"SMTP_URL": "smtp://mail host:25"}, "SMTP_URL"),
        ("billing-server", {"DATABASE_URL": "postgresql://u:pw@db:70000/x"}, "DATABASE_URL"),
        ("billing-stack", {"BILLING_UPSTREAM_URL": "http://a b:80"}, "BILLING_UPSTREAM_URL"),
        ("billing-stack", {"BILLING_PUBLIC_URL": "https://billing\r\n.example.com"}, "BILLING_PUBLIC_URL"),
        ("billing-stack", {"BILLING_REPLICAS": "2", "BILLING_GRPC_PORT": "50051"}, "REDIS_URL"),
    ],
)
def test_bad_setting_is_one_line_and_exit_2(tmp_path, program, env, setting):
    args = {"billing-keys": ["create", "--admin"], "billing-scheduler": ["run-once", "daily_rollup"]}.get(program, [])
    base = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'billing.db'}", "BILLING_GRPC_PORT": "0"}
    done = subprocess.run(
        [str(BIN / program), *args], env={**base, **env}, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{program}: ") and setting in lines[0], done.stderr


@pytest.mark.parametrize("setting", ["BILLING_GRPC_PORT", "BILLING_METRICS_PORT"])
def test_port_in_use_is_one_line_and_exit_2(tmp_path, bound_port, setting):
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'billing.db'}",
        "BILLING_GRPC_PORT": "0",
        setting: str(bound_port),
    }
    migrate(env)
    done = subprocess.run([str(BIN / "billing-server")], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(f"billing-server: {setting}")
    assert "Traceback" not in done.stderr


def test_catalogue_terms_the_meters_refuse_are_one_line_naming_the_plan_and_field(tmp_path):
    """The file's charges are checked against the meters once the database is open (seeding)."""
    catalogue = tmp_path / "plans.json"
    charge = {"id": "t", "meter_id": "no-such-meter", "model": "PER_UNIT", "unit_price": "1"}
    plan = {"id": "x", "tier": "TIER_UNSPECIFIED", "name": "X", "rate_limit_per_minute": 10, "charges": [charge]}
    catalogue.write_text(json.dumps({"plans": [plan]}))
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'billing.db'}",
        "BILLING_GRPC_PORT": "0",
        "BILLING_CATALOGUE": str(catalogue),
    }
    migrate({**env, "BILLING_CATALOGUE": ""})
    done = subprocess.run([str(BIN / "billing-server")], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert (
        line.startswith("billing-server: BILLING_CATALOGUE") and "plan 'x': charges[0].meter_id names no meter" in line
    )
