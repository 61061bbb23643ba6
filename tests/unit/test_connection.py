"""Connections: host entries, host-key policy, fast failure on dead or closed ports."""

from __future__ import annotations

import time

import paramiko
import pytest

from mlctl.config import inventory
from mlctl.core.errors import ConnectError, InventoryError
from mlctl.transport.connection import (
    AcceptNewPolicy,
    _build,
    open_connection,
    parse_host,
    ssh_user_for,
)
from tests.unit.conftest import BASE, one_line

ISOLATED = BASE.replace(
    "  user: deploy\n",
    "  user: deploy\n  ssh_config: ssh_config\n  known_hosts: known_hosts\n"
    "  timeouts: {connect: 1}\n",
)


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("web1", (None, "web1", None)),
        ("deploy@web1", ("deploy", "web1", None)),
        ("deploy@web1.example.internal:2222", ("deploy", "web1.example.internal", 2222)),
        ("10.0.0.5:22", (None, "10.0.0.5", 22)),
        ("[::1]:2200", (None, "::1", 2200)),
        ("u@[fe80::1]", ("u", "fe80::1", None)),
        ("::1", (None, "::1", None)),
    ],
)
def test_parse_host(spec, parsed):
    assert parse_host(spec) == parsed


@pytest.fixture
def settings(write_inventory, tmp_path):
    def resolve(text=ISOLATED, env="test", **flags):
        return inventory.resolve(inventory.load(write_inventory(text)), env, {}, flags).settings

    return resolve


def test_user_resolution_order(settings, tmp_path):
    (tmp_path / "ssh_config").write_text("Host aliased\n  User fromconfig\n")
    s = settings()
    assert ssh_user_for("root@h", s) == "root"
    assert ssh_user_for("h", s) == "deploy"
    s["user"] = ""
    assert ssh_user_for("aliased", s) == "fromconfig"


def test_reject_policy_by_default(settings, tmp_path):
    (tmp_path / "known_hosts").write_text(
        "pinned.example.internal ssh-ed25519 "
        "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"
    )
    conn = _build("deploy@pinned.example.internal:2222", settings())
    assert isinstance(conn.client._policy, paramiko.RejectPolicy)
    assert "pinned.example.internal" in conn.client.get_host_keys()
    assert (conn.user, conn.host, conn.port) == ("deploy", "pinned.example.internal", 2222)
    assert conn.connect_timeout == 1


def test_accept_new_only_when_asked_on_a_non_protected_env(settings, tmp_path):
    text = ISOLATED.replace(
        "    hosts: [t1.example.internal]\n",
        "    hosts: [t1.example.internal]\n    host_keys: accept-new\n",
    )
    conn = _build("t1.example.internal", settings(text))
    assert isinstance(conn.client._policy, AcceptNewPolicy)
    assert conn.client._policy.known_hosts == str(tmp_path / "known_hosts")
    # the same setting, reached by a protected env through defaults, is refused at resolve time
    with pytest.raises(InventoryError) as e:
        settings(
            ISOLATED.replace("  user: deploy\n", "  user: deploy\n  host_keys: accept-new\n"),
            "live",
        )
    assert str(e.value) == (
        "environments.yaml:8: defaults.host_keys: accept-new is "
        "refused for a protected environment (pin the host keys)"
    )


def test_accept_new_refused_through_the_cli(mlctl, write_inventory):
    r = mlctl(
        "-i",
        str(write_inventory(ISOLATED)),
        "live",
        "config",
        env={"MLCTL_HOST_KEYS": "accept-new"},
    )
    assert one_line(r.stderr) == (
        "error: MLCTL_HOST_KEYS: accept-new is refused for a protected "
        "environment (pin the host keys)"
    )
    assert r.returncode == 3


def test_closed_port_fails_fast_with_one_line(settings):
    start = time.monotonic()
    with pytest.raises(ConnectError) as e:
        open_connection("127.0.0.1:1", settings())
    assert time.monotonic() - start < 1.0
    assert str(e.value) == (
        "127.0.0.1:1: cannot connect to 127.0.0.1:1: Connection refused — "
        "is the host up? (timeouts.connect = 1s)"
    )
    assert "\n" not in str(e.value) and e.value.exit_code == 5


def test_unroutable_address_ends_within_the_connect_timeout(settings):
    start = time.monotonic()
    with pytest.raises(ConnectError) as e:
        open_connection("deploy@192.0.2.1", settings())
    assert time.monotonic() - start < 3.0
    assert str(e.value).startswith("deploy@192.0.2.1: cannot connect to 192.0.2.1:22: ")
    assert "\n" not in str(e.value)


def test_unknown_host_name_is_one_line(settings):
    with pytest.raises(ConnectError) as e:
        open_connection("nosuch.invalid", settings())
    assert str(e.value).startswith("nosuch.invalid: cannot connect to nosuch.invalid:22: ")
    assert "\n" not in str(e.value)


# ---------------------------------------------------------- host keys, real handshake


@pytest.fixture(scope="module")
def ssh_server():
    """A paramiko SSH server on 127.0.0.1 that completes the key exchange (and accepts no login)."""
    import socket
    import threading

    key = paramiko.RSAKey.generate(1024)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()
    transports = []

    def serve():
        while not stop.is_set():
            try:
                sock, _ = listener.accept()
            except OSError:
                continue
            t = paramiko.Transport(sock)
            t.add_server_key(key)
            transports.append(t)
            try:
                t.start_server(server=paramiko.ServerInterface())
            except (paramiko.SSHException, EOFError, OSError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], key
    stop.set()
    thread.join(2)
    for t in transports:
        t.close()
    listener.close()


def test_unknown_host_key_is_refused(settings, ssh_server, tmp_path):
    port, _ = ssh_server
    with pytest.raises(ConnectError) as e:
        open_connection(f"deploy@127.0.0.1:{port}", settings())
    assert str(e.value) == (
        f"deploy@127.0.0.1:{port}: unknown host key (not in {tmp_path / 'known_hosts'}) — "
        "add the host's key with ssh-keyscan after verifying its fingerprint"
    )
    assert not (tmp_path / "known_hosts").exists()


def test_changed_host_key_is_refused(settings, ssh_server, tmp_path):
    port, _ = ssh_server
    other = paramiko.RSAKey.generate(1024)
    (tmp_path / "known_hosts").write_text(f"[127.0.0.1]:{port} ssh-rsa {other.get_base64()}\n")
    with pytest.raises(ConnectError) as e:
        open_connection(f"deploy@127.0.0.1:{port}", settings())
    assert str(e.value).startswith(
        f"deploy@127.0.0.1:{port}: host key does not match known_hosts — possible "
        "man-in-the-middle — verify the new key out of band, then update "
    )


def test_accept_new_records_the_key(settings, ssh_server, tmp_path):
    port, key = ssh_server
    text = ISOLATED.replace(
        "    hosts: [t1.example.internal]\n",
        "    hosts: [t1.example.internal]\n    host_keys: accept-new\n",
    )
    with pytest.raises(ConnectError) as e:  # the key is accepted; the login is not
        open_connection(f"deploy@127.0.0.1:{port}", settings(text))
    assert "host key" not in str(e.value)
    assert (tmp_path / "known_hosts").read_text() == (
        f"[127.0.0.1]:{port} ssh-rsa {key.get_base64()}\n"
    )
