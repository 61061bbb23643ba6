"""Per-host steps shared by deploy, rollback and the operations tasks.

Each function takes a `Host` (whose `.c` is an Invoke Context or a Fabric Connection) and runs one
batched remote command through `host.run`, so it works the same locally and over SSH.
"""

from __future__ import annotations

import json
import time

from . import console, remote
from .commands import db as dbcmd
from .commands import lock as lockcmd
from .commands import release as relcmd
from .commands import service
from .commands.db import ENV_PUBLIC as PUBLIC
from .errors import DeployFailed, RemoteCommandFailed
from .journal import local_user
from .layout import Layout, unit_name
from .shell import Cmd, Raw, script


def layout(host) -> Layout:
    return Layout(host.session.cfg["deploy_to"])


def gather_facts(host) -> dict:
    """The host's facts in one round trip. The shared .env's values (SECRET_KEY, PGPASSWORD, …)
    come along and go straight into the mask: a failing step's output may show them, and the
    inventory alone does not know the generated ones."""
    cfg = host.session.cfg
    argv = [cfg["python"], "-c", remote.source("facts"), cfg["deploy_to"], ",".join(PUBLIC)]
    facts = json.loads(host.run("facts", Cmd.of(*argv)).stdout)
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
    cmds = [relcmd.write_meta(lay, m) for m in metas]
    if event:
        cmds.append(relcmd.append_history(lay, history_record(host, event)))
    cmds += list(then)
    if unlock:
        cmds.append(lockcmd.release(lay, host.session.journal.run_id))
    return host.run("record", script(*cmds))


# ---------------------------------------------------------------- service and health


def restart(host) -> None:
    cfg = host.session.cfg
    lay = layout(host)
    if cfg["service"] == "pidfile":
        pid = f"{lay.run}/gunicorn.pid"
        host.run("stop gunicorn", service.pidfile_stop(pid))
        host.run(
            "start gunicorn",
            Cmd.of("mkdir", "-p", lay.run).then(
                service.pidfile_start(
                    lay.current,
                    pid,
                    cfg["bind"],
                    cfg.project["wsgi"],
                    f"{lay.shared}/logs/gunicorn.log",
                    cfg["gunicorn"]["workers"],
                    cfg["gunicorn"]["preload"],
                )
            ),
        )
    else:
        host.run("restart gunicorn", systemd_restart(unit_name(cfg.project["name"])))


def systemd_restart(unit: str) -> Cmd:
    """Restart, first clearing systemd's start rate limit: a deploy, its automatic rollback and a
    bounce restart within seconds, and a unit that hit the limit refuses to start (all 502s)."""
    reset = Cmd.of("systemctl", "reset-failed", f"{unit}.service", f"{unit}.socket")
    return Cmd((reset, Raw("2>/dev/null || true;"), service.systemd_restart(unit)))


UNHEALTHY = 69  # remote/health.py's exit code when the release is not served in time


def health_probe(cfg, release: str | None, wait: float) -> Cmd:
    h = cfg["health"]
    return Cmd.of(
        cfg["python"],
        "-c",
        remote.source("health"),
        h["url"],
        h["host_header"],
        str(h["expect_status"]),
        release or "",
        str(wait),
    )


def health(host, release: str | None, timeout: float | None = None) -> None:
    cfg = host.session.cfg
    wait = timeout if timeout is not None else cfg["timeouts"]["health"]
    cmd = health_probe(cfg, release, wait)
    r = host.run("health check", cmd, root=False, timeout=wait + 15, warn=True)
    if not r.ok:
        raise unhealthy(host, wait, (r.stderr.strip().splitlines() or ["no answer"])[-1])


def unhealthy(host, wait: float, detail: str) -> DeployFailed:
    url = host.session.cfg["health"]["url"]
    return DeployFailed(
        f"{host.name}: health check of {url} failed after {wait:g}s ({detail or 'no answer'})",
        "see `mlctl ENV logs` (timeouts.health)",
    )


def serve(host, release: str, step: str = "switch and restart") -> None:
    """Point `current` at `release`, restart the app and wait until it serves that release.
    Under systemd that is one round trip; a failing health probe raises its own error."""
    cfg = host.session.cfg
    lay = layout(host)
    if cfg["service"] == "pidfile":
        host.run(step, relcmd.switch(lay, release))
        restart(host)
        health(host, release)
        return
    wait = cfg["timeouts"]["health"]
    unit = unit_name(cfg.project["name"])
    restart_and_probe = service.restart_and_probe(
        systemd_restart(unit), health_probe(cfg, release, wait), service.unit_log_tail(unit)
    )
    cmd = script(relcmd.switch(lay, release), restart_and_probe)
    try:
        host.run(step, cmd, timeout=cfg["timeouts"]["command"] + wait)
    except RemoteCommandFailed as e:
        if e.code == UNHEALTHY:
            raise unhealthy(host, wait, e.detail) from None
        raise


# ---------------------------------------------------------------- database


def sqlite_path(cfg) -> str:
    name = cfg["database"]["name"]
    return name if name.startswith("/") else f"{Layout(cfg['deploy_to']).shared}/{name}"


def snapshot(host, target: str) -> str | None:
    """Dump and verify the database; None when there is nothing to keep (no SQLite file yet)."""
    cfg = host.session.cfg
    lay = layout(host)
    if cfg["database"]["engine"] == "sqlite":
        if not host.run("database file", Cmd.of("test", "-s", sqlite_path(cfg)), warn=True).ok:
            console.step(host.name, "no database file yet; snapshot skipped")
            return None
    path = f"{lay.backups}/{target}.{dbcmd.EXTENSIONS[cfg['database']['engine']]}"
    host.run(
        f"snapshot {target}",
        Cmd.of("mkdir", "-p", lay.backups).then(
            dbcmd.snapshot(
                cfg["database"]["engine"], lay.env_file, path, sqlite_path(cfg), cfg["python"]
            )
        ),
    )
    return path


def restore(host, path: str) -> None:
    cfg = host.session.cfg
    lay = layout(host)
    host.run(
        "restore snapshot",
        dbcmd.restore(
            cfg["database"]["engine"], lay.env_file, path, sqlite_path(cfg), cfg["python"]
        ),
    )


def db_hosts(sess) -> list:
    """Hosts whose database migrate/snapshot act on: one shared server, or each host's own."""
    db = sess.cfg["database"]
    per_host = db["engine"] == "sqlite" or db["host"] in ("", "localhost", "127.0.0.1", "::1")
    return list(sess.hosts) if per_host else sess.hosts[:1]


def build_command(host, rid: str, venv: str) -> Cmd:
    """Link the venv, then one Django process (remote/build.py): collectstatic as root, and as the
    app user check --deploy, a read check, the WSGI import and the migration plan."""
    cfg = host.session.cfg
    lay = layout(host)
    project = cfg.project
    user = "" if host.local else cfg["app_user"]
    code = remote.source("build")
    return script(
        relcmd.link_venv(lay, rid, venv),
        relcmd.python_in(lay.release(rid), code, project["settings_module"], project["wsgi"], user),
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
    r = host.run(f"migrations {args[0]}", cmd, root=False, user=host.session.cfg["app_user"])
    return json.loads(r.stdout.strip().splitlines()[-1])


def migrate(host, rel: str, *targets: str) -> None:
    host.run(
        "migrate",
        relcmd.manage(rel, "migrate", "--noinput", *targets),
        root=False,
        user=host.session.cfg["app_user"],
    )
