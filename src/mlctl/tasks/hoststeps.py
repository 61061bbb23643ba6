"""Per-host steps shared by deploy, rollback and the operations tasks.

Each function takes a `Host` (whose `.c` is an Invoke Context or a Fabric Connection) and runs one
batched remote command through `host.run`, so it works the same locally and over SSH.
"""

from __future__ import annotations

import json
import time

from mlctl import remote
from mlctl.commands import db as dbcmd
from mlctl.commands import facts as factcmd
from mlctl.commands import lock as lockcmd
from mlctl.commands import release as relcmd
from mlctl.commands import service
from mlctl.commands.db import ENV_PUBLIC as PUBLIC
from mlctl.config import healthpaths
from mlctl.config.layout import (  # noqa: F401 — sqlite_path: steps' API
    SLOTS,
    AppSlots,
    Layout,
    sqlite_path,
)
from mlctl.core import console
from mlctl.core.console import clip
from mlctl.core.errors import DeployFailed, MlctlError, PreflightFailed, RemoteCommandFailed
from mlctl.core.shell import Cmd, mask, script
from mlctl.transport.journal import local_user


def layout(host) -> Layout:
    return Layout.of(host.session.cfg)


def gather_facts(host) -> dict:
    """The host's facts in one round trip. The shared .env's values (SECRET_KEY, PGPASSWORD, …)
    come along and go straight into the mask: a failing step's output may show them, and the
    inventory alone does not know the generated ones."""
    cfg = host.session.cfg
    slots = AppSlots(cfg.project["name"])
    where = () if cfg.service == "pidfile" else (slots.base, slots.upstream_file)
    read = factcmd.read_facts(cfg.python, remote.source("facts"), cfg.deploy_to, PUBLIC, where)
    r = host.run("facts", read, warn=True)
    if r.code == 127:  # the shell found no such program
        raise PreflightFailed(
            f"{host.name}: python {cfg.python} not found", "install it or set `python:`"
        )
    if not r.ok:
        raise RemoteCommandFailed(host.name, "facts", r.code, last_line(r.stderr))
    facts = json.loads(r.stdout)
    host.session.add_secrets(facts.pop("env_values", []))
    host.facts = facts
    return facts


# ---------------------------------------------------------------- history and metadata


def history_record(host, event: dict) -> dict:
    return {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "run_id": host.session.journal.run_id,
        "user": local_user(),
        "env": host.session.cfg.name,
        **event,
    }


def record(host, metas=(), event: dict | None = None, then=(), unlock: bool = False):
    """Release metadata, a history line, then `then` commands and the unlock: one round trip.
    The unlock comes last, so a run whose records failed still holds (and later frees) its lock."""
    lay = layout(host)
    history = history_record(host, event) if event else None
    free = lockcmd.release(lay, host.session.journal.run_id) if unlock else None
    return host.run("record", relcmd.record(lay, metas, history, then, free))


# ---------------------------------------------------------------- service and health


def restart(host) -> None:
    """Restart the app. A dev (pidfile) server is first stopped only when the pidfile names this
    environment's own gunicorn, and never started on a port another process holds."""
    cfg = host.session.cfg
    lay = layout(host)
    if cfg.service == "pidfile":
        r = host.run("stop gunicorn", pidfile_stop(cfg, lay), warn=True)
        if r.code == PORT_HELD:
            raise DeployFailed(f"{host.name}: {last_line(r.stderr)}", PORT_HINT)
        if not r.ok:
            raise RemoteCommandFailed(host.name, "stop gunicorn", r.code, last_line(r.stderr))
        if r.stderr.strip():
            console.warn(f"{host.name}: {last_line(r.stderr)}")
        stopped = r.stdout.strip().splitlines()  # its last line: the log's size, for the gate
        host.facts["log_offset"] = json.loads(stopped[-1])["log_size"] if stopped else 0
        start = service.pidfile_start(
            lay.current,
            f"{lay.run}/gunicorn.pid",
            cfg.bind,
            cfg.project["wsgi"],
            dev_log(lay),
            cfg.gunicorn.workers,
            cfg.gunicorn.preload,
        )
        host.run("start gunicorn", service.start_in(lay.run, start))
    else:
        host.run("restart gunicorn", systemd_restart(live_unit(host)))


def live_unit(host) -> str:
    """The unit of the slot nginx sends to (gunicorn-P@blue)."""
    live = (host.facts.get("slots") or {}).get("live") or SLOTS[0]
    return AppSlots(host.session.cfg.project["name"]).unit(live)


PORT_HELD = 75  # remote/pidfile.py: the port is held by a process that is not ours
PORT_HINT = "stop that process, or give this environment its own port (bind, health.url)"


def dev_log(lay: Layout) -> str:
    return f"{lay.shared}/logs/gunicorn.log"


def pidfile_stop(cfg, lay: Layout, action: str = "stop") -> Cmd:
    """Stop this environment's dev gunicorn (never a stale pidfile's pid); then the port must be
    free (`check` only looks at the port)."""
    return service.pidfile_control(
        cfg.python,
        remote.source("pidfile"),
        action,
        lay.run,
        deploy_to=cfg.deploy_to,
        bind=cfg.bind,
        log=dev_log(lay),
    )


def take_out_of_service(host) -> None:
    """No `current` and no app running: what a host that never served a good release is left
    with when its first release fails."""
    cfg = host.session.cfg
    lay = layout(host)
    if cfg.service == "pidfile":
        stop = pidfile_stop(cfg, lay, "halt")
    else:
        slots = AppSlots(cfg.project["name"])
        stop = script(*(service.systemd_stop(slots.unit(s)) for s in SLOTS))
    host.run("take out of service", service.out_of_service(lay.current, stop))


def check_port(host) -> None:
    """Before anything changes: the dev port is free or held by this environment's gunicorn."""
    r = host.run("port", pidfile_stop(host.session.cfg, layout(host), "check"), warn=True)
    if r.code == PORT_HELD:
        raise PreflightFailed(f"{host.name}: {last_line(r.stderr)}", PORT_HINT)


systemd_restart = service.reset_and_restart


UNHEALTHY = 69  # remote/health.py's exit code when the release is not served in time
APP_LOG = service.APP_LOG_MARK


def static_of(host, release: str | None) -> str | None:
    """The URL path of one collected static file of `release` (recorded when it was built)."""
    if not release:
        return None
    built = host.facts.get("static", {})
    if release in built:
        return built[release]
    return host.facts.get("metas", {}).get(release, {}).get("static")


def health_probe(cfg, release: str | None, wait: float, static: str | None = None) -> Cmd:
    plan = healthpaths.requests(cfg.settings, release, static)
    config = {**plan, "timeout": wait, "once": False}
    return service.health_probe(cfg.python, remote.source("health"), config)


def app_log_since(host) -> Cmd:
    """The app's own output since the restart began ($t0, or the log size $size for dev)."""
    cfg = host.session.cfg
    if cfg.service == "pidfile":
        start = host.facts.get("log_offset", 0) + 1
        return service.dev_log_since(dev_log(layout(host)), start)
    return service.unit_log_since_start(live_unit(host))


def health(host, release: str | None, timeout: float | None = None) -> None:
    """Wait until the app serves `release` and every health path answers as expected."""
    cfg = host.session.cfg
    wait = timeout if timeout is not None else cfg.timeouts.health
    probe = health_probe(cfg, release, wait, static_of(host, release))
    cmd = service.probe_or_explain(probe, app_log_since(host))
    r = host.run("health check", cmd, timeout=wait + 15, warn=True)
    if not r.ok:
        raise unhealthy(host, wait, r.stderr, r.code, release, r.stdout)


def unhealthy(
    host, wait: float, stderr: str, code: int | None = UNHEALTHY, release=None, stdout=""
) -> DeployFailed:
    """The gate's error: the request that failed, and the app's own last traceback line (from
    its log, else from replaying a request that answered 500 in the release's own code)."""
    failed = next((r for r in _results(stdout) if (r.get("status") or 0) >= 500), None)
    probe_out, _, log = mask(stderr, host.session.secrets).partition(APP_LOG + "\n")
    detail = last_line(probe_out) or (f"exit {code}" if code != UNHEALTHY else "no answer")
    error, trace = healthpaths.app_error(log)
    if not error and release and failed:
        error, trace = replay(host, release, failed)
    host.session.journal.record(
        host.name, "health check", outcome="failed", detail=detail, traceback=trace or None
    )
    env = host.session.cfg.name
    where = f"see `mlctl {env} logs` (timeouts.health = {wait:g}s)"
    return DeployFailed(f"{host.name}: health check failed: {detail}; {where}", error)


def _results(stdout: str) -> list:
    try:
        return json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return []


def replay(host, release: str, request: dict) -> tuple[str, str]:
    """(exception line, traceback) of `request` replayed in the release's own code, or ("", "")."""
    cfg = host.session.cfg
    code = remote.source("replay")
    args = (cfg.project["settings_module"], request["path"], request.get("host", ""))
    cmd = relcmd.python_in(layout(host).release(release), code, *args)
    user = None if host.local else cfg.app_user
    try:
        r = host.run("replay request", cmd, root=False, user=user, timeout=120, warn=True)
    except MlctlError:
        return "", ""
    return healthpaths.app_error(mask(r.stdout, host.session.secrets))


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return clip(lines[-1]) if lines else ""


# ---------------------------------------------------------------- database


def snapshot(host, target: str) -> str | None:
    """Dump and verify the database; None when there is nothing to keep (no SQLite file yet)."""
    cfg = host.session.cfg
    lay = layout(host)
    if cfg.database.engine == "sqlite":
        if not host.run("database file", factcmd.nonempty(sqlite_path(cfg)), warn=True).ok:
            console.step(host.name, "no database file yet; snapshot skipped")
            return None
    path = f"{lay.backups}/{target}.{dbcmd.EXTENSIONS[cfg.database.engine]}"
    dump = dbcmd.snapshot(
        cfg.database.engine,
        lay.env_file,
        path,
        sqlite_path(cfg),
        cfg.python,
        cfg.database.dump_options,
    )
    host.run(f"snapshot {target}", factcmd.in_new_dir(lay.backups, dump))
    return path


def restore(host, path: str) -> None:
    cfg = host.session.cfg
    lay = layout(host)
    host.run(
        "restore snapshot",
        dbcmd.restore(cfg.database.engine, lay.env_file, path, sqlite_path(cfg), cfg.python),
    )


def db_hosts(sess) -> list:
    """Hosts whose database migrate/snapshot act on: one shared server, or each host's own."""
    db = sess.cfg.database
    per_host = db.engine == "sqlite" or db.host in ("", "localhost", "127.0.0.1", "::1")
    return list(sess.hosts) if per_host else sess.hosts[:1]


def build_command(host, rid: str, venv: str) -> Cmd:
    """Link the venv, then one Django process (remote/build.py): collectstatic as root, and as the
    app user check --deploy, a read check, the WSGI import and the migration plan."""
    cfg = host.session.cfg
    lay = layout(host)
    project = cfg.project
    user = "" if host.local else cfg.app_user
    code = remote.source("build")
    return relcmd.build_release(
        lay, rid, venv, code, project["settings_module"], project["wsgi"], user
    )


def parse_build(stdout: str) -> dict:
    """{"pending": [migrations the release would apply], "leaves": {app: leaf migration}}."""
    lines = stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else {"pending": [], "leaves": None}  # a --dry-run


def release_leaves(host, rid: str) -> dict:
    """A release's leaf migration per app: recorded at its deploy, else asked of its code."""
    leaves = host.facts.get("metas", {}).get(rid, {}).get("leaves")
    if leaves is None:
        leaves = migration_info(host, layout(host).release(rid), "leaves")
    return leaves


def migration_info(host, rel: str, *args: str):
    """Ask a release's own code about migrations (leaves, pending, backwards plan)."""
    settings = host.session.cfg.project["settings_module"]
    cmd = relcmd.python_in(rel, remote.source("migrations"), settings, *args)
    r = host.run(f"migrations {args[0]}", cmd, root=False, user=host.session.cfg.app_user)
    return json.loads(r.stdout.strip().splitlines()[-1])


def migrate(host, rel: str, *targets: str) -> None:
    host.run(
        "migrate",
        relcmd.manage(rel, "migrate", "--noinput", *targets),
        root=False,
        user=host.session.cfg.app_user,
    )
