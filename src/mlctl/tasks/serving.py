"""How a host comes to serve a release: deploy, rollback and a failed deploy's put-back all call
`serve`.

Three ways, by the environment's settings:
- pidfile (a dev host): stop the dev gunicorn, switch `current`, start it, health gate;
- `cutover: restart`: the live slot's link and `current` move, the slot restarts in place with
  the health gate running through nginx (requests wait on the socket during the restart);
- `cutover: nginx` (the default): the release starts in the idle slot and passes the health gate
  on that slot's own socket while the live slot keeps serving; only then is nginx pointed at it
  (`nginx -t`, graceful reload), `current` switched and the gate's requests made again through
  nginx. The slot left keeps running for `cutover.keep_old` seconds, so going back to it (a
  rollback, a failed deploy's put-back) is a switch, not a start.
"""

from __future__ import annotations

from mlctl import remote
from mlctl.commands import cutover as cut
from mlctl.commands import release as relcmd
from mlctl.commands import service
from mlctl.config import healthpaths
from mlctl.config.layout import SLOTS, AppSlots, Layout
from mlctl.core.errors import PreflightFailed, RemoteCommandFailed
from mlctl.core.shell import mask, script
from mlctl.tasks import hoststeps

WARM, START, RESTART = "switch to the running slot", "start in the idle slot", "restart in place"


def choose(slots: dict, release: str, mode: str) -> tuple[str, str]:
    """(how, which slot) for a host whose slots are `slots` (remote/facts.py) to serve `release`:
    a slot already running it is switched to; else the idle slot starts it (the live one when it
    serves nothing yet)."""
    live = slots.get("live") or SLOTS[0]
    if mode == "restart":
        return RESTART, live
    for slot in (live, AppSlots.other(live)):
        state = slots.get(slot) or {}
        if state.get("release") == release and state.get("active"):
            return WARM, slot
    serving = (slots.get(live) or {}).get("release")
    return START, AppSlots.other(live) if serving else live


def require_slots(host) -> dict:
    """A server's slot facts; a host set up by an earlier mlctl (one gunicorn unit) must run
    `setup` first, which moves it to two slots without downtime."""
    slots = host.facts.get("slots")
    if slots is None:
        env = host.session.cfg.name
        raise PreflightFailed(
            f"{host.name}: the app runs as one gunicorn unit set up by an earlier mlctl",
            f"run `mlctl {env} setup` first: it moves the host to two app slots without downtime",
        )
    return slots


def serve(host, release: str, step: str = "", keep_old=None) -> None:
    """Make `host` serve `release`, gated by the health checks (see the module's docstring).
    `step`: how the steps are named ("switch back"); `keep_old`: seconds the slot left keeps
    running (default cutover.keep_old)."""
    cfg = host.session.cfg
    if cfg.service == "pidfile":
        return serve_dev(host, release, step or "switch and restart")
    slots = require_slots(host)
    how, slot = choose(slots, release, cfg.cutover.mode)
    if how == RESTART:
        return restart_slot(host, slot, release, step or "switch and restart")
    if how == START:
        start_slot(host, slot, release)
    keep = cfg.cutover.keep_old if keep_old is None else keep_old
    # a slot found running the release (not the live one) is asked on its socket first, as a
    # started one was by start_slot
    on_socket = how == START or slot == slots.get("live")
    switch_nginx(
        host,
        slot,
        release,
        slots.get("live"),
        keep,
        f"{step or 'cutover'} to slot {slot}",
        on_socket,
    )
    return None


def serve_dev(host, release: str, step: str) -> None:
    host.run(step, relcmd.switch(hoststeps.layout(host), release))
    hoststeps.restart(host)
    hoststeps.health(host, release)


def gate_probe(host, release: str, slot: str | None = None):
    """The health gate's probe: through nginx, or (`slot`) on that slot's own socket."""
    cfg = host.session.cfg
    wait = cfg.timeouts.health
    static = hoststeps.static_of(host, release)
    if slot is None:
        return hoststeps.health_probe(cfg, release, wait, static)
    sock = AppSlots(cfg.project["name"]).socket(slot)
    rel = hoststeps.layout(host).release(release)
    plan = healthpaths.slot_requests(cfg.settings, release, static, sock, rel)
    return service.health_probe(cfg.python, remote.source("health"), {**plan, "timeout": wait})


def run_gated(host, step: str, cmd, release: str) -> None:
    """Run a command that ends with the health probe; a failed probe is the gate's own error."""
    cfg = host.session.cfg
    wait = cfg.timeouts.health
    r = host.run(step, cmd, timeout=cfg.timeouts.command + wait, warn=True)
    if r.code == hoststeps.UNHEALTHY:
        raise hoststeps.unhealthy(host, wait, r.stderr, r.code, release, r.stdout)
    if not r.ok:
        why = hoststeps.last_line(mask(r.stderr, host.session.secrets))
        raise RemoteCommandFailed(host.name, step, r.code, why)


def start_slot(host, slot: str, release: str) -> None:
    """Start `release` in `slot` and gate it there; nginx still sends to the live slot."""
    lay, slots = hoststeps.layout(host), AppSlots(host.session.cfg.project["name"])
    cmd = cut.start_and_gate(slots, lay, slot, release, gate_probe(host, release, slot))
    mark(host, slot, release, active=False)  # a failed start leaves it stopped
    run_gated(host, f"start in slot {slot}", cmd, release)
    mark(host, slot, release, active=True)


def switch_nginx(
    host, slot: str, release: str, old, keep: float, step: str, on_socket: bool
) -> None:
    """nginx and `current` to `slot`, then the gate's requests again, through nginx; unless
    `on_socket` (it passed the gate on its own socket already, or it is the live slot), first
    the gate on the slot's own socket."""
    cfg = host.session.cfg
    lay, slots = Layout(cfg.deploy_to), AppSlots(cfg.project["name"])
    log = service.unit_log_since_start(slots.unit(slot))
    first = () if on_socket else (service.probe_or_explain(gate_probe(host, release, slot), log),)
    cmd = script(
        service.mark_start(),
        *first,
        cut.cutover(slots, lay, slot, release, old, keep),
        service.probe_or_explain(gate_probe(host, release), log),
    )
    run_gated(host, step, cmd, release)
    host.facts["slots"]["live"] = slot


def restart_slot(host, slot: str, release: str, step: str) -> None:
    """`cutover: restart`: the live slot restarts in place with `release`."""
    cfg = host.session.cfg
    lay, slots = Layout(cfg.deploy_to), AppSlots(cfg.project["name"])
    move = cut.restart_in_place(slots, lay, slot, release)
    cmd = service.switch_restart_and_probe(move, slots.unit(slot), gate_probe(host, release))
    run_gated(host, step, cmd, release)
    mark(host, slot, release, active=True)


def mark(host, slot: str, release: str, active: bool) -> None:
    host.facts.setdefault("slots", {})[slot] = {"release": release, "active": active}
