"""The processes besides web (`processes:`) and the periodic commands (`schedule:`): which hosts
run each one, and the systemd units and commands that run them (pure builders).

A process is one long-running systemd service per host it is meant for; a schedule entry is a
timer and a oneshot service. Both run in DEPLOY_TO/current as the app user, with the release's
venv and the shared .env exported by the same rules as every other command (commands/db.py
load_env: a value is data, never shell), so a restart after the web cutover runs the new code.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from importlib.resources import files

from mlctl.commands.db import load_env
from mlctl.core.shell import Cmd, Raw, script

UNIT_DIR = "/etc/systemd/system"


@dataclass(frozen=True)
class Process:
    """One entry of `processes:` (kind "process") or `schedule:` (kind "schedule")."""

    name: str
    command: str
    hosts: object  # "all", a count (the first N inventory hosts) or a list of host entries
    kind: str = "process"
    stop_timeout: int = 30
    on: str = ""  # a schedule's systemd calendar expression

    def unit(self, project: str) -> str:
        """The systemd unit's name without its suffix (the timer and its service share it)."""
        return unit_of(project, self.name)


def unit_of(project: str, name: str) -> str:
    return f"mlctl-{project}-{name}"


def placement(hosts, inventory: list[str]) -> list[str]:
    """The hosts meant to run a process, in inventory order: "all"; a count N, the first N
    inventory hosts (so `hosts: 1`, a scheduler, is always the same host and never two, whatever
    a rolling batch or a rollback switches); a list, those hosts."""
    if hosts == "all":
        return list(inventory)
    if isinstance(hosts, int) and not isinstance(hosts, bool):
        return list(inventory[: max(hosts, 0)])
    wanted = set(hosts or ())
    return [h for h in inventory if h in wanted]


def declared(settings: dict) -> list[Process]:
    """The environment's processes, then its schedule entries, by name (defaults filled in)."""
    procs = [
        Process(name, p["command"], p.get("hosts", "all"), stop_timeout=p.get("stop_timeout", 30))
        for name, p in sorted((settings.get("processes") or {}).items())
    ]
    scheds = [
        Process(name, s["command"], s.get("hosts", 1), "schedule", on=s.get("on", "daily"))
        for name, s in sorted((settings.get("schedule") or {}).items())
    ]
    return procs + scheds


def layout_of(settings: dict, host: str) -> tuple[list[Process], list[Process]]:
    """(the processes and schedules meant for `host`, those that are not)."""
    here, elsewhere = [], []
    for p in declared(settings):
        (here if host in placement(p.hosts, settings["hosts"]) else elsewhere).append(p)
    return here, elsewhere


# ---------------------------------------------------------------- what a unit runs


def argv_of(command: str, current: str) -> list[str]:
    """The command's words, its program found in the release: a first word without a slash is
    the venv's (`celery` -> current/.venv/bin/celery), a Python file of the release (`manage.py
    clearsessions`) runs with the venv's python; a path is taken as it is."""
    words = shlex.split(command)
    first, rest = words[0], words[1:]
    venv_bin = f"{current}/.venv/bin"
    if "/" in first:
        return words
    if first.endswith(".py"):
        return [f"{venv_bin}/python", first, *rest]
    return [f"{venv_bin}/{first}", *rest]


def in_release(command: str, current: str) -> Cmd:
    """The shell command a unit runs: the .env exported, then the process in its place (exec:
    systemd's TERM reaches the program itself, so a worker's warm shutdown runs)."""
    return Cmd((load_env("./.env"), Raw("&& exec"), Cmd.of(*argv_of(command, current))))


def systemd_word(text: str) -> str:
    """One word of a unit file's Exec line: quoted, with systemd's own escapes (backslash and
    double quote) and its expansions ($ and % specifiers) turned off."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("%", "%%").replace("$", "$$") + '"'


def exec_start(command: str, current: str) -> str:
    return "/bin/sh -c " + systemd_word(in_release(command, current).render())


# ---------------------------------------------------------------- unit files


def _render(template: str, **values) -> str:
    return files("mlctl").joinpath("templates", template).read_text().format(**values)


def unit_values(p: Process, cfg_values: dict) -> dict:
    """`cfg_values`: project, deploy_to, app_user, settings_module, after (package services)."""
    current = f"{cfg_values['deploy_to']}/current"
    return {
        **cfg_values,
        "name": p.name,
        "unit": p.unit(cfg_values["project"]),
        "exec_start": exec_start(p.command, current),
        "stop_timeout": p.stop_timeout,
        "on": p.on,
    }


def unit_files(p: Process, cfg_values: dict) -> dict[str, str]:
    """path -> content of the process's service, or the schedule's timer and its service."""
    v = unit_values(p, cfg_values)
    base = f"{UNIT_DIR}/{v['unit']}"
    if p.kind == "process":
        return {f"{base}.service": _render("process.service", **v)}
    return {
        f"{base}.service": _render("schedule.service", **v),
        f"{base}.timer": _render("schedule.timer", **v),
    }


def started_unit(p: Process, project: str) -> str:
    """The unit enabled and started where the entry belongs: the service, or the timer."""
    return p.unit(project) + (".service" if p.kind == "process" else ".timer")


# ---------------------------------------------------------------- commands


def enable(units: list[str], current: str) -> Cmd:
    """Enable the units; (re)start the timers, and the services when a release is there to run
    (a first setup has none yet: the first deploy starts them)."""
    services = [u for u in units if not u.endswith(".timer")]
    timers = [u for u in units if u.endswith(".timer")]
    cmds = [Cmd.of("systemctl", "daemon-reload"), Cmd.of("systemctl", "enable", *units)]
    if timers:
        cmds.append(Cmd.of("systemctl", "restart", *timers))
    if services:
        restart = Cmd.of("systemctl", "restart", *services)
        cmds.append(Cmd((Raw("if [ -e"), Cmd.of(current), Raw("]; then"), restart, Raw("; fi"))))
    return script(*cmds)


def disable(units: list[str]) -> Cmd:
    """Stop and disable units on a host they are not meant for (a missing one is no error)."""
    return Cmd((Cmd.of("systemctl", "disable", "--now", *units), Raw("2>/dev/null || true")))


def restart(units: list[str]) -> Cmd:
    """Restart processes in the release `current` now points at, first clearing a start rate
    limit a crash loop may have hit; the stop waits up to each unit's stop_timeout."""
    reset = Cmd.of("systemctl", "reset-failed", *units)
    return Cmd((reset, Raw("2>/dev/null || true;"), Cmd.of("systemctl", "restart", *units)))


def unit_states(units: list[str]) -> Cmd:
    """`unit enabled-state active-state` per unit, one line each ("none" when systemd has none)."""
    return Cmd(
        (
            Raw("for u in"),
            Cmd.of(*units),
            Raw(
                '; do e=$(systemctl is-enabled "$u" 2>/dev/null); a=$(systemctl is-active "$u"'
                ' 2>/dev/null); echo "unit $u ${e:-none} ${a:-none}"; done;'
            ),
        )
    )


def parse_states(text: str) -> dict[str, tuple[str, str]]:
    """unit_states' and packages' lines: unit -> (enabled, active); package -> (status, "")."""
    out = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 3 and words[0] in ("unit", "pkg"):
            out[words[1]] = (words[2], words[3] if len(words) > 3 else "")
    return out
