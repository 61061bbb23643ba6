"""The vocabulary of setup's plan (commands/provision_plan.py): a step of actions, each one
command; the files a step writes; the site's enabling. Shared by the planner and the modules that
plan their own steps (commands/provision_tls.py, commands/process_setup.py)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from mlctl.commands import provision as pv
from mlctl.commands import sites
from mlctl.commands.release import write_file
from mlctl.core.shell import Cmd


@dataclass(frozen=True)
class Action:
    """One command of a step; `stdin` is streamed to it; a failing command with a `refusal`
    stops setup with that message (and the command's last line of stderr as the hint)."""

    label: str
    cmd: Cmd
    stdin: bytes | None = None
    refusal: str = ""


@dataclass(frozen=True)
class Step:
    name: str
    changed: bool
    actions: tuple[Action, ...] = ()


def digest(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()


def file_writes(sums: dict, wanted: dict[str, str]) -> tuple[Action, ...]:
    """Write each wanted file whose content differs from the host's (or is missing)."""
    return tuple(
        Action(f"write {path}", write_file(path), content.encode())
        for path, content in wanted.items()
        if sums.get(path) != digest(content)
    )


NGINX_REFUSED = "nginx -t rejected the site; nginx was not reloaded"


def enable_actions(avail: str, enabled: str, default_on: bool) -> tuple[Action, ...]:
    link = sites.enable(avail, enabled, default_on)
    return Action("enable nginx site", link, refusal=NGINX_REFUSED), Action(
        "reload nginx", pv.reload_nginx()
    )
