"""Envoy's admin interface has no authentication (/quitquitquit stops it, /config_dump shows its
configuration), so it is a Unix socket only the stack's user may open, never a TCP port that
another process, or a tenant's webhook, could reach."""

from __future__ import annotations

import json
import stat

from server import envoy_launcher


def test_the_admin_interface_is_a_unix_socket_only_its_owner_may_open(stack):
    path = envoy_launcher.admin_socket(stack.workdir)
    mode = path.stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    status, dump = envoy_launcher.admin_get(stack.workdir, "/config_dump")
    assert status == 200
    [bootstrap] = [c["bootstrap"] for c in json.loads(dump)["configs"] if c["@type"].endswith("BootstrapConfigDump")]
    admin = bootstrap["admin"]
    assert admin["address"] == {"pipe": {"path": str(path), "mode": 0o600}}


def test_envoy_listens_on_tcp_only_for_rest_and_the_gateway(stack):
    _, listeners = envoy_launcher.admin_get(stack.workdir, "/listeners?format=json")
    ports = {
        listener["name"]: listener["local_address"]["socket_address"]["port_value"]
        for listener in json.loads(listeners)["listener_statuses"]
    }
    assert ports == {"rest": stack.settings.http_port, "gateway": stack.settings.gateway_port}
