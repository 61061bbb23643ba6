"""Per-host steps shared by deploy, rollback and the operations tasks.

Each function takes a `Host` (whose `.c` is an Invoke Context or a Fabric Connection) and runs one
batched remote command through `host.run`, so it works the same locally and over SSH.
"""

from __future__ import annotations

import json
import socket
import time

from . import console, remote
from .commands import db as dbcmd
from .commands import lock as lockcmd
from .commands import release as relcmd
from .commands import service
from .errors import DeployFailed, LockHeld
from .journal import local_user
from .layout import Layout, unit_name
from .shell import Cmd, Raw


def layout(host) -> Layout:
    return Layout(host.session.cfg["deploy_to"])


def gather_facts(host) -> dict:
    cfg = host.session.cfg
    r = host.run("facts", Cmd.of(cfg["python"], "-c", remote.source("facts"), cfg["deploy_to"]))
    host.facts = json.loads(r.stdout)
    return host.facts


# Names, users and paths in the shared .env are not secret; every other value is treated as one.
ENV_PUBLIC = (
    "DEBUG",
    "ALLOWED_HOSTS",
    "MEDIA_ROOT",
    "STATIC_ROOT",
    "PGHOST",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "TIME_ZONE",
    "LOG_LEVEL",
)


def learn_env_secrets(host) -> None:
    """Add the shared .env's values (SECRET_KEY, PGPASSWORD, …) to the mask: a failing step's
    output may show them, and the inventory alone does not know the generated ones."""
    lay = layout(host)
    r = host.run(
        "read .env secrets", Cmd((Cmd.of("cat", lay.env_file), Raw("2>/dev/null || true")))
    )
    values = []
    for line in r.stdout.splitlines():
        key, eq, value = line.partition("=")
        if eq and not key.startswith("#") and key.strip().upper() not in ENV_PUBLIC:
            values.append(value.strip())
    host.session.add_secrets(values)


# ---------------------------------------------------------------- lock and history


def holder_record(host, action: str, release: str = "") -> dict:
    sess = host.session
    return {
        "event": "started",
        "action": action,
        "run_id": sess.journal.run_id,
        "user": local_user(),
        "pid": _pid(),
        "host": socket.gethostname(),
        "time": time.time(),
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "release": release,
        "env": sess.cfg.name,
    }


def _pid() -> int:
    import os

    return os.getpid()


def lock(host, action: str, release: str = "") -> None:
    """Take the host's deploy lock, taking over a stale one and waiting up to
    timeouts.lock_wait for a live holder; LockHeld names a live holder."""
    lay = layout(host)
    record = holder_record(host, action, release)
    data = (json.dumps(record) + "\n").encode()
    timeouts = host.session.cfg["timeouts"]
    deadline = time.monotonic() + timeouts["lock_wait"]
    took_over = False
    while True:
        r = _try_lock(host, lay, data)
        if r is None:
            return
        holder = _parse(r)
        stale = stale_reason(holder, timeouts["lock_stale"])
        if stale and not took_over:
            _take_over(host, lay, holder, stale)
            took_over = True
            continue
        if not stale and time.monotonic() < deadline:
            time.sleep(1)  # a live holder: wait for it, as long as lock_wait allows
            continue
        waited = f" after waiting {timeouts['lock_wait']:g}s" if timeouts["lock_wait"] else ""
        raise LockHeld(
            f"{host.name}: deploy lock held by {describe_holder(holder)}{waited}",
            "wait for it to finish (timeouts.lock_wait), or `mlctl ENV unlock` if it is stale",
        )


def _take_over(host, lay: Layout, holder: dict, stale: str) -> None:
    host.session.journal.record(host.name, "lock", outcome="stale-taken-over", holder=holder)
    console.warn(f"{host.name}: taking over stale lock of {describe_holder(holder)} ({stale})")
    host.run("remove stale lock", lockcmd.take_over(lay, host.session.journal.run_id))


def _try_lock(host, lay: Layout, data: bytes):
    try:
        host.stream("lock", lockcmd.acquire(lay), data)
        return None
    except Exception as e:  # noqa: BLE001 — exit HELD is the expected "someone holds it"
        from .errors import RemoteCommandFailed

        if isinstance(e, RemoteCommandFailed) and e.code == lockcmd.HELD:
            r = host.run("read lock", lockcmd.read(lay))
            return r.stdout
        raise


def _parse(text: str) -> dict:
    try:
        return json.loads(text.strip().splitlines()[0]) if text.strip() else {}
    except (ValueError, IndexError):
        return {}


def stale_reason(holder: dict, max_age: float) -> str:
    """Why a lock is stale ('' if its holder may be alive)."""
    if not holder:
        return "no holder recorded"
    age = time.time() - float(holder.get("time") or 0)
    if holder.get("host") == socket.gethostname() and not _alive(int(holder.get("pid") or 0)):
        return f"process {holder.get('pid')} on {holder.get('host')} is gone"
    if max_age and age > max_age:
        return f"older than {max_age:g}s"
    return ""


def _alive(pid: int) -> bool:
    import os

    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe_holder(h: dict) -> str:
    if not h:
        return "an unknown holder"
    since = time.strftime("%H:%M:%S", time.localtime(float(h.get("time") or 0)))
    return (
        f"{h.get('user')}@{h.get('host')} pid {h.get('pid')} ({h.get('action')} "
        f"{h.get('release') or ''}, since {since})"
    ).replace(" ,", ",")


def unlock(host) -> None:
    host.run("unlock", lockcmd.release(layout(host), host.session.journal.run_id), warn=True)


def history(host, event: dict) -> None:
    rec = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "run_id": host.session.journal.run_id,
        "user": local_user(),
        "env": host.session.cfg.name,
        **event,
    }
    host.stream("history", relcmd.append_history(layout(host)), (json.dumps(rec) + "\n").encode())


def write_meta(host, meta: dict) -> None:
    lay = layout(host)
    host.stream(
        "release metadata",
        Cmd.of("mkdir", "-p", lay.metas).then(relcmd.write_file(lay.meta(meta["id"]))),
        (json.dumps(meta, indent=1) + "\n").encode(),
    )


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
                )
            ),
        )
    else:
        host.run("restart gunicorn", systemd_restart(unit_name(cfg.project["name"])))


def systemd_restart(unit: str) -> Cmd:
    """Restart, first clearing systemd's start rate limit: a deploy, its automatic rollback and a
    bounce restart within seconds, and a unit that hit the limit refuses to start (all 502s)."""
    reset = Cmd.of("systemctl", "reset-failed", f"{unit}.service", f"{unit}.socket")
    return Cmd((reset, Raw("2>/dev/null;"), service.systemd_restart(unit)))


def health(host, release: str | None, timeout: float | None = None) -> None:
    cfg = host.session.cfg
    h = cfg["health"]
    wait = timeout if timeout is not None else cfg["timeouts"]["health"]
    cmd = Cmd.of(
        cfg["python"],
        "-c",
        remote.source("health"),
        h["url"],
        h["host_header"],
        str(h["expect_status"]),
        release or "",
        str(wait),
    )
    r = host.run("health check", cmd, root=False, timeout=wait + 15, warn=True)
    if not r.ok:
        detail = (r.stderr.strip().splitlines() or ["no answer"])[-1]
        raise DeployFailed(
            f"{host.name}: health check of {h['url']} failed after {wait:g}s " f"({detail})",
            "see `mlctl ENV logs` (timeouts.health)",
        )


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


def verify_release(host, rel: str) -> list[str]:
    """check --deploy, the WSGI import and the pending migrations, in one Django process run as
    the app user; returns the migrations this release would apply."""
    project = host.session.cfg.project
    cmd = relcmd.python_in(
        rel, remote.source("verify"), project["settings_module"], project["wsgi"]
    )
    r = host.run("verify release", cmd, root=False, user=host.session.cfg["app_user"])
    lines = r.stdout.strip().splitlines()
    return json.loads(lines[-1])["pending"] if lines else []  # no output: a --dry-run


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
