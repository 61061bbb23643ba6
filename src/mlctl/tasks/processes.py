"""The processes besides web follow the release the web process serves.

`follow_web(host)` is called once a host serves a release (a deploy's switch, a rollback's, a
failed deploy's put-back): it restarts the host's processes in the release `current` now points
at, and stops any that are not meant for this host (so a scheduler meant for one host never runs
on two, whichever hosts a rolling batch switches). Schedules need nothing: each run starts in
whatever `current` is then.
"""

from __future__ import annotations

from mlctl.commands import processes as proc
from mlctl.core import console
from mlctl.core.errors import UsageError


def units_of(cfg, host: str) -> tuple[list[str], list[str]]:
    """(the process units meant for `host`, those that are not): services only."""
    here, elsewhere = proc.layout_of(cfg.settings, host)
    project = cfg.project["name"]

    def units(entries):
        return [proc.started_unit(p, project) for p in entries if p.kind == "process"]

    return units(here), units(elsewhere)


def follow_web(host) -> None:
    """Restart this host's processes in the release it now serves. A process that does not
    restart is reported, not raised: the web release is served and recorded either way, and
    `check` names the process that is down."""
    cfg = host.session.cfg
    if cfg.service != "systemd" or not cfg.processes:
        return
    on, off = units_of(cfg, host.name)
    if off:
        host.run("stop processes not meant here", proc.disable(off))
    if not on:
        return
    r = host.run("restart processes", proc.restart(on), warn=True)
    if not r.ok:
        why = (r.stderr.strip().splitlines() or [f"exit {r.code}"])[-1]
        console.warn(f"{host.name}: processes did not restart: {why} (see `check`)")
    elif not getattr(host.session, "planning", False):
        console.step(host.name, "restarted " + ", ".join(on), "green")


def check_name(cfg, name: str) -> None:
    if cfg.service != "systemd":
        raise UsageError(f"{cfg.name} runs no processes: they need service: systemd")
    if name not in (cfg.processes or {}):
        known = ", ".join(sorted(cfg.processes or {})) or "none declared"
        raise UsageError(f"no process {name!r} in {cfg.name} (processes: {known})")


def bounce_process(host, name: str) -> None:
    """Restart one process on this host (`bounce --process NAME`), if it is meant for it."""
    cfg = host.session.cfg
    check_name(cfg, name)
    unit = proc.started_unit(proc.Process(name, "-", "all"), cfg.project["name"])
    on, _ = units_of(cfg, host.name)
    if unit not in on:
        console.step(host.name, f"{name} is not meant for this host", "dim")
        return
    host.run(f"restart {name}", proc.restart([unit]))
    console.step(host.name, f"restarted {name}", "green")
