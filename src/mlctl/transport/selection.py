"""Which environment and hosts a task runs on, however it was invoked.

`mlctl live deploy`, `fab live deploy`, `fab -H live deploy` and `fab -H <host of live> deploy` all
produce the same Selection; `open_session` turns it into a Session with the resolved settings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from mlctl.config import inventory
from mlctl.core.errors import UnknownEnvironment, UsageError
from mlctl.transport.connection import parse_host


@dataclass
class Selection:
    env: str | None = None
    hosts: list[str] | None = None  # a subset of the environment's hosts
    inventory_path: str | None = None
    overrides: dict = field(default_factory=dict)
    log_dir: str | None = None
    debug: bool = False

    def load(self):
        return inventory.load(inventory.find(self.inventory_path))

    def config(self):
        inv = self.load()
        if not self.env:
            raise UsageError(
                f"name an environment: mlctl ENV TASK (known: {', '.join(inv.environments)})"
            )
        return inventory.resolve(inv, self.env, os.environ, self.overrides)


def open_session(sel: Selection, action: str):
    from mlctl.transport.session import Session

    cfg = sel.config()
    return Session(cfg, action, only_hosts=sel.hosts, log_dir=sel.log_dir)


def from_host_arg(inv, host: str) -> Selection:
    """`-H X`: X names an environment (all its hosts) or one host of exactly one environment."""
    envs = inv.data["environments"]
    if host in envs:
        return Selection(env=host)
    owners = [
        (name, entry)
        for name, env in envs.items()
        for entry in (env.get("hosts") or [])
        if entry == host or parse_host(entry)[1] == parse_host(host)[1]
    ]
    names = sorted({n for n, _ in owners})
    if not owners:
        known = ", ".join(envs)
        raise UnknownEnvironment(
            f"{host!r} is neither an environment ({known}) nor one of their hosts"
        )
    if len(names) > 1:
        raise UsageError(
            f"host {host!r} belongs to several environments ({', '.join(names)})",
            "name the environment instead",
        )
    return Selection(env=names[0], hosts=[owners[0][1]])
