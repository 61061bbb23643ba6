"""Client-side files in the farm's working directory.

Everything a test (or the deploy tool) needs to talk to the hosts lives here:
the client key, the pinned host keys, an ssh_config with short host aliases and
the tool's inventory.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path

import yaml

from .system import run

REPO_ROOT = Path(__file__).resolve().parents[2]


def create_client_key(path: Path) -> str:
    """A fresh ed25519 key pair at path (+ .pub); returns the public key line."""
    for stale in (path, path.with_name(path.name + ".pub")):
        stale.unlink(missing_ok=True)
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mlctl-farm-client", "-f", path)
    return path.with_name(path.name + ".pub").read_text().strip()


def known_hosts_text(host_keys: dict[str, str]) -> str:
    """address -> 'ssh-ed25519 AAAA... comment' into pinned known_hosts lines."""
    lines = []
    for address, public_key in host_keys.items():
        key_type, key_data = public_key.split()[:2]
        lines.append(f"{address} {key_type} {key_data}")
    return "\n".join(lines) + "\n"


def ssh_config_text(hosts: dict[str, str], identity: Path, known_hosts: Path) -> str:
    """Aliases h1, h2... plus the bare addresses, all with strict host key checking.

    KexAlgorithms skips OpenSSH's default post-quantum hybrid exchange, which
    costs ~0.1 s of client CPU per connection here; tests open many.
    """
    blocks = []
    for name, address in hosts.items():
        blocks.append(
            f"Host {name} {address}\n"
            f"    HostName {address}\n"
            "    User deploy\n"
            f"    IdentityFile {identity}\n"
            "    IdentitiesOnly yes\n"
            f"    UserKnownHostsFile {known_hosts}\n"
            "    GlobalKnownHostsFile /dev/null\n"
            "    StrictHostKeyChecking yes\n"
            "    BatchMode yes\n"
            "    ConnectTimeout 5\n"
            "    KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org\n"
            "    LogLevel ERROR\n"
        )
    return "\n".join(blocks)


def inventory(addresses: list[str], identity: Path, known_hosts: Path) -> dict:
    """The deploy tool's inventory: first host is 'test', the rest 'live'."""
    environments: dict = {"test": {"hosts": addresses[:1]}}
    if addresses[1:]:
        environments["live"] = {
            "hosts": addresses[1:],
            "protected": True,
            "allowed_users": [getpass.getuser()],
        }
    return {
        "project": {
            "name": "djangoapp",
            "source": {"repo": str(REPO_ROOT), "subdir": "examples/djangoapp"},
            "settings_module": "djangoapp.settings",
            "wsgi": "djangoapp.wsgi:application",
            "requirements": "requirements.txt",
        },
        "defaults": {
            "user": "deploy",
            "deploy_to": "/srv/djangoapp",
            "app_user": "www-data",
            "python": "/usr/bin/python3",
            "known_hosts": str(known_hosts),
            "identity_file": str(identity),
            "database": {"engine": "postgresql", "name": "djangoapp", "user": "djangoapp"},
        },
        "environments": environments,
    }


def inventory_text(data: dict) -> str:
    # Flow style for leaf collections matches how the inventory is hand-written.
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


def write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Write atomically so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)
