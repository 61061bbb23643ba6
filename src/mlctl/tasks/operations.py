"""Day-to-day operations: bounce, migrate, snapshot, restore, releases, lock, unlock, config."""

from __future__ import annotations

import json
import time

from rich.table import Table

from mlctl.commands import lock as lockcmd
from mlctl.commands import service
from mlctl.config import schema
from mlctl.config.layout import Layout
from mlctl.core import console
from mlctl.core.errors import MlctlError, RemoteCommandFailed, UsageError
from mlctl.core.shell import MASK
from mlctl.tasks import guards, hoststeps, processes
from mlctl.transport import locking
from mlctl.transport.selection import open_session


def _connected(sel, action: str, yes: bool = False, guarded: bool = False):
    sess = open_session(sel, action)
    try:
        if guarded:
            guards.confirm(sess.cfg, action, yes)
        sess.connect()
    except BaseException:
        sess.close()  # the task's own `finally` closes it from here on
        raise
    return sess


def bounce_task(sel, yes=False, process=None) -> int:
    """Restart gunicorn (socket activation queues requests); nginx -t, then reload. `process`:
    restart that process instead, on the hosts it is meant for."""
    if process:
        processes.check_name(sel.config(), process)  # before any connection
    sess = _connected(sel, "bounce", yes, guarded=True)
    try:
        if process:
            sess.each(lambda h: processes.bounce_process(h, process))
            return 0

        def bounce(h):
            if not h.local:
                r = h.run("nginx -t", service.nginx_test(), warn=True)
                if not r.ok:
                    raise RemoteCommandFailed(
                        h.name,
                        "nginx -t",
                        r.code,
                        (r.stderr.strip().splitlines() or [""])[-1],
                        "nginx was NOT reloaded; fix the config first",
                    )
            current = hoststeps.gather_facts(h)["current"]
            hoststeps.restart(h)
            if not h.local:
                h.run("reload nginx", service.nginx_test_and_reload())
            hoststeps.health(h, current)
            console.step(h.name, f"bounced; serving {current}", "green")

        sess.each(bounce)
    finally:
        sess.close()
    return 0


def migrate_task(sel, yes=False) -> int:
    sess = _connected(sel, "migrate", yes, guarded=True)
    try:

        def migrate(h):
            current = hoststeps.gather_facts(h)["current"]
            if not current:
                raise UsageError(f"{h.name}: no release deployed yet")
            rel = Layout(sess.cfg.deploy_to).release(current)
            pending = hoststeps.migration_info(h, rel, "pending")
            if not pending:
                console.step(h.name, "no migration pending")
                return
            stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
            before = hoststeps.snapshot(h, f"{current}-before-migrate-{stamp}")
            try:
                hoststeps.migrate(h, rel)
            except MlctlError:
                hoststeps.restore(h, before)
                raise
            hoststeps.snapshot(h, f"{current}-after-migrate-{stamp}")
            console.step(h.name, f"applied {', '.join(pending)}", "green")

        sess.each(migrate, hoststeps.db_hosts(sess))
    finally:
        sess.close()
    return 0


def snapshot_task(sel) -> int:
    sess = _connected(sel, "snapshot")
    try:
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
        for path in sess.each(
            lambda h: hoststeps.snapshot(h, f"manual-{stamp}"), hoststeps.db_hosts(sess)
        ):
            console.out(path)
    finally:
        sess.close()
    return 0


def restore_task(sel, snapshot=None, yes=False) -> int:
    if not snapshot or "/" in snapshot or snapshot.startswith("."):
        raise UsageError("name a snapshot file from backups/db (see `mlctl ENV releases`)")
    sess = _connected(sel, "restore", yes, guarded=True)
    try:
        path = f"{Layout(sess.cfg.deploy_to).backups}/{snapshot}"
        sess.each(lambda h: hoststeps.restore(h, path), hoststeps.db_hosts(sess))
        console.done(f"restored {snapshot}")
    finally:
        sess.close()
    return 0


def releases_task(sel, json=False) -> int:  # noqa: A002 — the option is called --json
    sess = _connected(sel, "releases")
    try:
        facts = sess.each(hoststeps.gather_facts)
    finally:
        sess.close()
    rows = {h.name: release_rows(f) for h, f in zip(sess.hosts, facts, strict=True)}
    if json:
        console.out(_json.dumps({"env": sess.cfg.name, "hosts": rows}, indent=1))
        return 0
    t = Table(title=f"releases of {sess.cfg.name}")
    for col in ("host", "release", "status", "commit", "who", "when"):
        t.add_column(col)
    for host, items in rows.items():
        for r in items:
            t.add_row(
                host,
                r["id"],
                r["status"],
                (r.get("commit") or "")[:12],
                r.get("user", ""),
                r.get("when", ""),
            )
    console.table(t)
    return 0


_json = json


def release_rows(facts: dict) -> list[dict]:
    out = []
    for rid in sorted(set(facts["releases"]) | set(facts["metas"]), reverse=True):
        meta = facts["metas"].get(rid, {})
        status = "current" if rid == facts["current"] else meta.get("status", "unknown")
        if rid not in facts["releases"]:
            status = f"{status} (removed)"
        out.append({**meta, "id": rid, "status": status})
    return out


def _lock_limits(sess) -> tuple[float, float]:
    t = sess.cfg.timeouts
    return t.lock_stale, t.lock_lease


def lock_task(sel) -> int:
    sess = _connected(sel, "lock")
    try:
        for h in sess.hosts:
            text = h.run("read lock", lockcmd.read(Layout(sess.cfg.deploy_to))).stdout
            holder = locking.parse_holder(text)
            if not holder:
                console.out(f"{h.name}: free")
                continue
            stale = locking.stale_reason(holder, *_lock_limits(sess))
            console.out(
                f"{h.name}: held by {locking.describe_holder(holder)}"
                + (f" — stale: {stale}" if stale else "")
            )
    finally:
        sess.close()
    return 0


def unlock_task(sel, force=False, yes=False) -> int:
    sess = _connected(sel, "unlock", yes, guarded=force)
    lay = Layout(sess.cfg.deploy_to)
    try:
        for h in sess.hosts:
            holder = locking.parse_holder(h.run("read lock", lockcmd.read(lay)).stdout)
            if not holder:
                console.out(f"{h.name}: free")
                continue
            stale = locking.stale_reason(holder, *_lock_limits(sess))
            if not stale and not force:
                raise UsageError(
                    f"{h.name}: lock held by {locking.describe_holder(holder)} may still be alive",
                    "wait, or pass --force",
                )
            h.run("remove lock", lockcmd.take_over(lay, sess.journal.run_id))
            console.out(f"{h.name}: unlocked ({stale or 'forced'})")
    finally:
        sess.close()
    return 0


def config_task(sel, json=False) -> int:  # noqa: A002
    cfg = sel.config()
    data = {
        "environment": cfg.name,
        "targets": sel.hosts or cfg.hosts,  # narrowed by `fab -H <host>` or --host
        "inventory": str(cfg.inventory.path),
        "project": cfg.project,
        "settings": masked(cfg.settings),
        "sources": cfg.sources,
    }
    if json:
        console.out(_json.dumps(data, indent=1, default=str))
    else:
        import yaml

        console.out(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
    return 0


def masked(settings: dict) -> dict:
    return schema.masked(settings, MASK)  # the keys marked secret in the schema
