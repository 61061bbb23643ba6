"""The nginx cutover's commands (pure builders): start a release in an app slot and gate it on
the slot's own socket; point nginx at a slot (`nginx -t`, then a graceful reload); retire the slot
left behind after `cutover.keep_old` seconds.

Two files name the live slot, both included by the project's nginx site: the upstream (the slot's
socket) and the static root (the slot's release's staticfiles/). They are written together and
tested by `nginx -t` before the reload; a refused config is put back before anything reloads.
"""

from __future__ import annotations

from mlctl.commands.release import present, switch
from mlctl.commands.service import (
    drain_nginx,
    mark_start,
    restart_and_probe,
    unit_log_since_start,
    unit_log_tail,
)
from mlctl.config.layout import AppSlots, Layout
from mlctl.core.shell import Cmd, Raw, script

NGINX_REFUSED = 78  # EX_CONFIG: `nginx -t` refused the switched site; nothing was reloaded
LIVE_MARK = "# Managed by mlctl: written at each cutover, names the live app slot.\n"


def upstream_text(slots: AppSlots, slot: str) -> str:
    return LIVE_MARK + f"server unix:{slots.socket(slot)} fail_timeout=0;\n"


def static_text(lay: Layout, slot: str) -> str:
    return LIVE_MARK + f"alias {lay.slot(slot)}/staticfiles/;\n"


def write_live(slots: AppSlots, lay: Layout, slot: str) -> Cmd:
    """Both included files name `slot`, each written aside and renamed into place."""
    files = (
        (slots.upstream_file, upstream_text(slots, slot)),
        (slots.static_file, static_text(lay, slot)),
    )
    cmds = [Cmd.of("mkdir", "-p", slots.upstream_file.rsplit("/", 1)[0])]
    for path, text in files:
        cmds.append(Cmd.of("printf", "%s", text).redirect(path + ".new"))
    cmds += [Cmd.of("mv", "-f", path + ".new", path) for path, _ in files]
    return script(*cmds)


def point_nginx(slots: AppSlots, lay: Layout, slot: str, old: str | None) -> Cmd:
    """nginx serves `slot` from now on: the files, `nginx -t`, a graceful reload (old workers
    finish their requests). A refused config gets the old slot's files back, exit 78."""
    back = write_live(slots, lay, old) if old else script(Cmd.of("true"))  # ends with ";"
    refused = Cmd(
        (
            Raw('out=$(nginx -t -q 2>&1) || { echo "$out" >&2;'),
            back,
            Raw(f"exit {NGINX_REFUSED}; }}"),
        )
    )
    return script(write_live(slots, lay, slot), refused, Cmd.of("systemctl", "reload", "nginx"))


def best_effort(*cmds: Cmd) -> Cmd:
    """Commands whose failure (a unit that is not loaded, not failed) must not end a `set -e`
    script: `{ a; b; } 2>/dev/null || true`."""
    body: list = [Raw("{")]
    for c in cmds:
        body += [c, Raw(";")]
    return Cmd((*body, Raw("} 2>/dev/null || true")))


def cancel_retire(slots: AppSlots, slot: str) -> Cmd:
    """A slot about to serve (again) is no longer retired."""
    r = slots.retire_unit(slot)
    units = (f"{r}.timer", f"{r}.service")
    return best_effort(
        Cmd.of("systemctl", "stop", *units), Cmd.of("systemctl", "reset-failed", *units)
    )


def link_slot(lay: Layout, slot: str, rid: str) -> Cmd:
    """slots/<slot> -> ../releases/<rid>, atomically (a new link renamed over the old one)."""
    tmp = f"{lay.slots}/.{slot}.new"
    return script(
        present(lay, rid),
        Cmd.of("mkdir", "-p", lay.slots),
        Cmd.of("ln", "-sfn", f"../releases/{rid}", tmp),
        Cmd.of("mv", "-Tf", tmp, lay.slot(slot)),
    )


def stop_slot(slots: AppSlots, slot: str) -> Cmd:
    """Stopped, and not left "failed" (monitor would alert on a unit nobody needs)."""
    units = (f"{slots.unit(slot)}.socket", f"{slots.unit(slot)}.service")
    return best_effort(
        Cmd.of("systemctl", "stop", *units), Cmd.of("systemctl", "reset-failed", *units)
    )


def start_and_gate(slots: AppSlots, lay: Layout, slot: str, rid: str, probe: Cmd) -> Cmd:
    """Start `rid` in the idle `slot` with the gate's probe already running against the slot's
    socket; a slot that fails to start or fails the gate is stopped again (nginx never saw it),
    its own log on stderr after the marker line."""
    unit = slots.unit(slot)
    reset = Cmd(
        (
            Cmd.of("systemctl", "reset-failed", f"{unit}.service", f"{unit}.socket"),
            Raw("2>/dev/null || true;"),
        )
    )
    restart = Cmd((reset, Cmd.of("systemctl", "restart", f"{unit}.service")))
    explain = Cmd((Raw("{"), unit_log_tail(unit), Raw(";"), stop_slot(slots, slot), Raw("; }")))
    app_log = Cmd(
        (Raw("{"), unit_log_since_start(unit), Raw(";"), stop_slot(slots, slot), Raw("; }"))
    )
    return script(
        cancel_retire(slots, slot),
        link_slot(lay, slot, rid),
        mark_start(),
        restart_and_probe(restart, probe, explain, app_log),
    )


def retire(slots: AppSlots, slot: str, after: float) -> Cmd:
    """In `after` seconds (a transient systemd timer, so no connection has to stay open): wait
    until nginx's old workers have finished their requests, then stop the slot and take its
    socket off the boot list. Starting the slot again cancels it (cancel_retire)."""
    unit = slots.unit(slot)
    drain = (
        f"{drain_nginx().render()}; systemctl disable --quiet --no-reload {unit}.socket;"
        f" systemctl stop {unit}.socket {unit}.service"
    )
    timer = Cmd.of(
        "systemd-run",
        "--quiet",
        "--collect",
        f"--unit={slots.retire_unit(slot)}",
        f"--on-active={max(1, round(after))}s",
        "--timer-property=AccuracySec=1s",
        "/bin/sh",
        "-c",
        drain,
    )
    return script(cancel_retire(slots, slot), timer)


def cutover(slots: AppSlots, lay: Layout, slot: str, rid: str, old: str | None, keep: float) -> Cmd:
    """nginx and `current` move to `slot` (already running `rid`); its socket is the one started
    at boot; the slot left (`old`) retires after `keep` seconds."""
    unit = slots.unit(slot)
    steps = [
        present(lay, rid),  # before nginx moves: nginx never points at a release that is gone
        cancel_retire(slots, slot),
        Cmd.of("systemctl", "start", f"{unit}.service"),  # a no-op unless it was retired meanwhile
        point_nginx(slots, lay, slot, old),
        switch(lay, rid),
        Cmd.of("systemctl", "enable", "--quiet", "--no-reload", f"{unit}.socket"),
    ]
    if old and old != slot:
        steps.append(retire(slots, old, keep))
    return script(*steps)


def restart_in_place(slots: AppSlots, lay: Layout, slot: str, rid: str) -> Cmd:
    """`cutover: restart`: the live slot's link and `current` move to `rid`, then the slot is
    restarted (see service.switch_restart_and_probe, which runs the probe through nginx)."""
    return script(cancel_retire(slots, slot), link_slot(lay, slot, rid), switch(lay, rid))
