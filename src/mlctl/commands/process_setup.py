"""setup's step for `packages:`, `processes:` and `schedule:` (pure: facts and settings in, the
step out; the survey's part is read by commands/provision.py survey).

Every host gets every unit file, so moving a process between hosts is one setup; each unit is
enabled (and started when a release is there) only on the hosts it is meant for, and stopped and
disabled on the others. Units of entries removed from the inventory are stopped and deleted.
"""

from __future__ import annotations

from mlctl.commands import packages as pkg
from mlctl.commands import processes as proc
from mlctl.commands import setup_steps
from mlctl.core.shell import Cmd, Raw, script

STEP = "processes"
RUNNING = ("active", "activating", "reloading")


def values(cfg) -> dict:
    """What the unit templates need besides the entry itself."""
    return {
        "project": cfg.project["name"],
        "deploy_to": cfg.deploy_to,
        "app_user": cfg.app_user,
        "settings_module": cfg.project["settings_module"],
        "after": "".join(f" {p}.service" for p in cfg.packages),
    }


def wanted_files(cfg) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in proc.declared(cfg.settings):
        out.update(proc.unit_files(p, values(cfg)))
    return out


def survey(cfg) -> Cmd:
    """Packages, the states of their services and of every declared unit, whether a release is
    there, and the unit files of this project found on the host."""
    project = cfg.project["name"]
    units = [f"{p}.service" for p in cfg.packages]
    units += [proc.started_unit(p, project) for p in proc.declared(cfg.settings)]
    parts = [pkg.survey(cfg.packages)] if cfg.packages else []
    parts += [proc.unit_states(units)] if units else []
    current = f"{cfg.deploy_to}/current"
    return Cmd(
        (
            *parts,
            Raw("[ -e"),
            Cmd.of(current),
            Raw("] && echo 'current yes';"),
            *owned_files(project),
        )
    )


def owned_files(project: str) -> list:
    """`file PATH` for each unit file on the host that mlctl wrote for this project (its marker
    line, not its name: another project's name may begin with this one's)."""
    mark = f"^{MARKER.format(project=project)}"
    return [
        Raw("grep -l -e"),
        Cmd.of(mark),
        Raw(f"{proc.UNIT_DIR}/mlctl-*.service {proc.UNIT_DIR}/mlctl-*.timer 2>/dev/null"),
        Raw("| sed 's/^/file /';"),
    ]


MARKER = "# mlctl: project={project} entry="


def step(facts, cfg) -> setup_steps.Step:
    """The packages installed and running, the unit files written, each unit enabled where it
    belongs and disabled elsewhere, stale ones removed."""
    text = facts.processes
    states = proc.parse_states(text)
    found = [ln.split()[1] for ln in text.splitlines() if ln.startswith("file ")]
    wanted = wanted_files(cfg)
    actions = [*package_actions(cfg.packages, states)]
    writes = setup_steps.file_writes(facts.sums, wanted)
    actions += calendar_checks(cfg, writes)
    actions += writes
    stale = [f for f in found if f not in wanted]
    if stale:
        actions.append(setup_steps.Action("remove old units", remove_units(stale)))
    actions += unit_actions(facts.host, cfg, states, bool(writes or stale), "current yes" in text)
    return setup_steps.Step(STEP, bool(actions), tuple(actions))


def package_actions(packages: list[str], states: dict) -> list[setup_steps.Action]:
    missing = [p for p in packages if states.get(p, ("missing", ""))[0] != "installed"]
    off = [
        p
        for p in packages
        if states.get(f"{p}.service", ("none", "none"))[0] != "none"
        and states[f"{p}.service"][1] not in RUNNING
    ]
    out = []
    if missing:
        out.append(
            setup_steps.Action(
                "install packages", pkg.install(missing), refusal=pkg.refusal(missing)
            )
        )
    if missing or off:
        started = pkg.start_services(packages)
        why = f"the services of {', '.join(missing + off)} did not start"
        out.append(setup_steps.Action("start package services", started, refusal=why))
    return out


def calendar_checks(cfg, writes) -> list[setup_steps.Action]:
    """systemd-analyze on the host judges each `on:` before its timer is written."""
    written = {a.label for a in writes}
    out = []
    for p in proc.declared(cfg.settings):
        timer = f"write {proc.UNIT_DIR}/{p.unit(cfg.project['name'])}.timer"
        if p.kind == "schedule" and timer in written:
            why = f"schedule.{p.name}.on: {p.on!r} is not a systemd calendar expression"
            out.append(
                setup_steps.Action(f"check calendar {p.name}", verify_calendar(p.on), refusal=why)
            )
    return out


def unit_actions(host: str, cfg, states: dict, rewritten: bool, has_release: bool) -> list:
    project = cfg.project["name"]
    here, elsewhere = proc.layout_of(cfg.settings, host)
    on = [proc.started_unit(p, project) for p in here]
    off = [proc.started_unit(p, project) for p in elsewhere]
    enabled = all(states.get(u, ("none",))[0] == "enabled" for u in on)
    running = all(
        states.get(u, ("", "none"))[1] in RUNNING
        for u in on
        if has_release or u.endswith(".timer")  # a service needs a release to run
    )
    stray = any(
        states.get(u, ("none", "none"))[0] == "enabled" or states.get(u, ("", ""))[1] in RUNNING
        for u in off
    )
    out = []
    if on and (rewritten or not enabled or not running):
        current = f"{cfg.deploy_to}/current"
        out.append(setup_steps.Action("enable processes", proc.enable(on, current)))
    elif rewritten:
        out.append(setup_steps.Action("reload systemd", Cmd.of("systemctl", "daemon-reload")))
    if off and (stray or rewritten):
        out.append(setup_steps.Action("disable processes not meant here", proc.disable(off)))
    return out


def remove_units(paths: list[str]) -> Cmd:
    """Units of entries no longer declared: stopped, disabled, deleted."""
    names = [p.rsplit("/", 1)[-1] for p in paths]
    return script(
        proc.disable(names), Cmd.of("rm", "-f", *paths), Cmd.of("systemctl", "daemon-reload")
    )


def verify_calendar(on: str) -> Cmd:
    return Cmd.of("systemd-analyze", "calendar", on).quiet()
