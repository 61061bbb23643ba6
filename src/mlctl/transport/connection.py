"""Opening connections: one per host, host keys verified, low per-command latency.

Two latency sinks are removed: paramiko's socket without TCP_NODELAY (Nagle delays small packets)
and Invoke's 10 ms input/wait polling; together they cost ~45 ms per remote command.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import paramiko
from fabric import Config, Connection
from fabric.runners import Remote
from invoke import Context
from invoke.runners import Local

from mlctl.core.errors import ConnectError

POLL = 0.001  # seconds between checks for output/exit; the default 0.01 adds ~10-40 ms a command


class FastRemote(Remote):
    input_sleep = POLL

    def wait(self) -> None:
        """Sleep on the channel's exit-status event instead of polling: woken the moment the
        command ends, and no CPU spent meanwhile (several hosts share the control machine)."""
        while not (self.process_is_finished or self.has_dead_threads):
            self.channel.status_event.wait(0.05)


class FastLocal(Local):
    input_sleep = POLL


def parse_host(spec: str) -> tuple[str | None, str, int | None]:
    """`user@host:port` → (user, host, port); an ssh_config alias → (None, alias, None)."""
    user, _, rest = spec.rpartition("@")
    host, port = rest, None
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port = int(tail[1:]) if tail.startswith(":") else None
    elif rest.count(":") == 1:
        host, p = rest.split(":")
        port = int(p)
    return (user or None), host, port


def local_context() -> Context:
    from invoke import Config as InvokeConfig

    return Context(config=InvokeConfig(overrides={"runners": {"local": FastLocal}}))


class AcceptNewPolicy(paramiko.MissingHostKeyPolicy):
    """Like OpenSSH's accept-new: remember unknown hosts; changed keys are still refused."""

    def __init__(self, known_hosts: str):
        self.known_hosts = known_hosts

    def missing_host_key(self, client, hostname, key):
        client.get_host_keys().add(hostname, key.get_name(), key)
        Path(self.known_hosts).parent.mkdir(parents=True, exist_ok=True)
        with open(self.known_hosts, "a") as fh:
            fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


def ssh_user_for(spec: str, settings: dict) -> str:
    """The login user a host entry resolves to (entry > inventory `user` > ssh_config > local)."""
    user, host, _ = parse_host(spec)
    if user:
        return user
    if settings.get("user"):
        return settings["user"]
    lookup = _ssh_config(settings).lookup(host)
    return lookup.get("user") or os.environ.get("USER") or "root"


def _ssh_config(settings: dict) -> paramiko.SSHConfig:
    path = Path(settings.get("ssh_config") or "~/.ssh/config").expanduser()
    return paramiko.SSHConfig.from_path(str(path)) if path.is_file() else paramiko.SSHConfig()


def open_connection(spec: str, settings: dict) -> Connection:
    """Open (and authenticate) one connection, or raise ConnectError with the reason."""
    conn = _build(spec, settings)
    try:
        _connect(conn, settings)
    except ConnectError:
        raise
    except paramiko.BadHostKeyException:
        raise ConnectError(
            f"{spec}: host key does not match known_hosts — possible man-in-the-middle",
            "verify the new key out of band, then update " + settings["known_hosts"],
        ) from None
    except paramiko.AuthenticationException as e:
        raise ConnectError(
            f"{spec}: authentication failed ({e})", "check user and identity_file"
        ) from None
    except paramiko.SSHException as e:
        text = str(e)
        if "not found in known_hosts" in text:
            raise ConnectError(
                f"{spec}: unknown host key (not in {settings['known_hosts']})",
                "add the host's key with ssh-keyscan after verifying its fingerprint",
            ) from None
        raise ConnectError(f"{spec}: ssh error: {text}") from None
    except (OSError, EOFError) as e:
        reason = (
            "timed out" if isinstance(e, TimeoutError | socket.timeout) else (e.strerror or str(e))
        )
        raise ConnectError(
            f"{spec}: cannot connect to {conn.host}:{conn.port}: {reason}",
            # names the setting, so the one line says what to raise when it timed out
            f"is the host up? (timeouts.connect = {settings['timeouts']['connect']:g}s)",
        ) from None
    return conn


def _build(spec: str, settings: dict) -> Connection:
    user, host, port = parse_host(spec)
    config = Config(
        overrides={
            "runners": {"remote": FastRemote},
            "timeouts": {"connect": int(max(1, settings["timeouts"]["connect"]))},
        }
    )
    ssh_config = Path(settings.get("ssh_config") or "~/.ssh/config").expanduser()
    if ssh_config.is_file():
        config.set_runtime_ssh_path(str(ssh_config))
        config.load_ssh_config()
    kwargs: dict = {"banner_timeout": settings["timeouts"]["connect"]}
    kwargs["auth_timeout"] = settings["timeouts"]["connect"]
    if settings.get("identity_file"):
        kwargs["key_filename"] = [settings["identity_file"]]
    conn = Connection(
        host,
        user=user or settings.get("user") or None,
        port=port,
        config=config,
        connect_kwargs=kwargs,
    )
    _pin_host_keys(conn, settings)
    return conn


def _pin_host_keys(conn: Connection, settings: dict) -> None:
    """Load known_hosts and refuse unknown keys (Fabric's default would accept any key)."""
    files = [settings["known_hosts"]]
    extra = conn.ssh_config.get("userknownhostsfile")
    if extra:
        files += [os.path.expanduser(f) for f in extra.split()]
    for f in files:
        if os.path.isfile(f):
            conn.client.load_host_keys(f)
    if settings["host_keys"] == "accept-new" and not settings["protected"]:
        conn.client.set_missing_host_key_policy(AcceptNewPolicy(settings["known_hosts"]))
    else:
        conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())


def _connect(conn: Connection, settings: dict) -> None:
    if not conn.gateway and "proxycommand" not in conn.ssh_config:
        sock = socket.create_connection((conn.host, conn.port), timeout=conn.connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.connect_kwargs["sock"] = sock
    try:
        conn.open()
    except BaseException:
        # A failed handshake must not leave the socket or paramiko's transport thread behind
        # (Connection.close() does nothing when it never got connected).
        conn.client.close()
        sock = conn.connect_kwargs.pop("sock", None)
        if sock is not None:
            sock.close()
        raise
    conn.transport.set_keepalive(settings["timeouts"]["keepalive"])
