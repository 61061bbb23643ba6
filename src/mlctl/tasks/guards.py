"""Protected-environment guards: allowed users, typed confirmation, --yes + MLCTL_CONFIRM."""

from __future__ import annotations

import os
import sys

from mlctl.config.inventory import EnvConfig
from mlctl.core import console
from mlctl.core.errors import GuardRefused
from mlctl.transport.journal import local_user

GUARDED = {"deploy", "rollback", "migrate", "bounce", "restore", "setup", "unlock"}
# The operator commands (tasks/operator.py, tasks/maintenance.py); `manage` skips the guard for
# the read-only commands the inventory lists.
GUARDED |= {"manage", "shell", "dbshell", "ssh", "maintenance"}


def confirm(
    cfg: EnvConfig,
    action: str,
    yes: bool = False,
    interactive: bool | None = None,
    ask=console.ask,
    environ=None,
) -> None:
    """Return when `action` may go ahead on `cfg`; raise GuardRefused with the reason otherwise."""
    if not cfg.protected or action not in GUARDED:
        return
    environ = os.environ if environ is None else environ
    user = local_user()
    if cfg.allowed_users and user not in cfg.allowed_users:
        raise GuardRefused(
            f"user {user!r} may not {action} {cfg.name} "
            f"(allowed: {', '.join(cfg.allowed_users)})"
        )
    if cfg.confirm == "none":
        return
    interactive = sys.stdin.isatty() if interactive is None else interactive
    if not interactive:
        if yes and environ.get("MLCTL_CONFIRM") == cfg.name:
            return
        raise GuardRefused(
            f"{action} on protected environment {cfg.name} needs confirmation",
            f"without a terminal pass --yes and set MLCTL_CONFIRM={cfg.name}",
        )
    hosts = ", ".join(cfg.hosts)
    typed = ask(
        f"{action.upper()} {cfg.name.upper()} ({hosts}) — type '{cfg.name}' to go on:", cfg.color
    )
    if typed.strip() != cfg.name:
        raise GuardRefused(f"confirmation did not match {cfg.name!r}; nothing was changed")
