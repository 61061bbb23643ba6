"""`rollback`: back to the previous good release (or --to), database per policy.

auto       reverse the migrations the rolled-back release applied when they are reversible, else
           stop and offer `restore` or `code-only`
reverse    reverse them, or fail if any is irreversible
restore    restore the rolled-back release's before-migrate snapshot (loses writes since)
code-only  switch code only; the schema stays as it is
Reversing uses the rolled-back release's own code and venv (it holds the newer migration files),
before the switch.
"""

from __future__ import annotations

import json

from mlctl.commands.facts import nonempty
from mlctl.config.layout import Layout, check_release_id
from mlctl.core import cancel, console
from mlctl.core.errors import MlctlError, NeedsOperator, RollbackFailed
from mlctl.tasks import guards, hoststeps, serving
from mlctl.tasks.releases import rollback_target
from mlctl.transport import locking
from mlctl.transport.selection import open_session


def rollback_task(sel, to=None, db="auto", yes=False) -> int:
    with open_session(sel, "rollback") as sess:
        cfg = sess.cfg
        if to is not None:  # `--to ""` is a bad id, not "the previous release"
            check_release_id(to)
        guards.confirm(cfg, "rollback", yes)
        sess.connect()
        sess.each(hoststeps.gather_facts)
        target = choose_target(sess, to)
        console.banner(cfg.name, cfg.color, f"rollback to {target} (db: {db})", cfg.hosts)
        locked: list = []
        try:
            locking.lock_hosts(sess, "rollback", target, locked)
            run(sess, target, db, locked)
        except BaseException as e:
            with cancel.held(reraise=False):  # a signal now must not cut the cleanup short
                record_failure(locked, target, db, e)
            raise
        finally:
            with cancel.held(reraise=False):
                sess.each_settled(locking.unlock, locked)
    console.done(f"{cfg.name}: serving {target}")
    return 0


def record_failure(hosts: list, target: str, db: str, error: BaseException) -> None:
    """Every "started" record gets its outcome, also when the rollback fails."""
    why = cancel.describe(error) if isinstance(error, KeyboardInterrupt) else str(error)
    event = {
        "event": "finished",
        "action": "rollback",
        "release": target,
        "db": db,
        "outcome": "failed",
        "error": why,
    }
    for h in hosts:
        try:
            hoststeps.record(h, event=event)
        except MlctlError:
            pass  # the host is unreachable: the error itself is what the user must see


def choose_target(sess, to: str | None) -> str:
    """The release every host goes back to (see releases.rollback_target)."""
    return rollback_target({h.name: h.facts for h in sess.hosts}, to)


def run(sess, target: str, db: str, locked: list) -> None:
    """Database first (per policy), then per host two round trips: switch, restart and health;
    metadata, history and unlock."""
    lay = Layout(sess.cfg.deploy_to)
    leaving = {h.name: h.facts["current"] for h in sess.hosts}
    if db != "code-only":
        for h in hoststeps.db_hosts(sess):
            database(h, lay, leaving[h.name], target, db)

    def switch(h):
        try:
            serving.serve(h, target)
        except MlctlError:
            back_to(h, leaving[h.name])
            raise
        metas = served_metas(h.facts["metas"], target, leaving[h.name])
        event = {
            "event": "finished",
            "action": "rollback",
            "release": target,
            "from": leaving[h.name],
            "db": db,
            "outcome": "good",
        }
        hoststeps.record(h, metas=metas, event=event, unlock=True)
        locked.remove(h)
        console.step(h.name, f"serving {target}", "green")

    sess.each(switch)


def served_metas(metas: dict, target: str, leaving: str | None) -> list[dict]:
    """The metadata a host records once it serves `target`: the target good again, the release
    it left (if another one) rolled back."""
    out = [{**metas.get(target, {}), "id": target, "status": "good"}]
    if leaving and leaving != target:
        out.append({**metas.get(leaving, {}), "id": leaving, "status": "rolled-back"})
    return out


def back_to(host, release: str | None) -> None:
    """A host whose switch to the target failed serves what it served before (best effort: the
    switch's own error is the one reported)."""
    if not release:
        return
    try:
        serving.serve(host, release, "switch back", keep_old=0)
        console.warn(f"{host.name}: rollback failed here; serving {release} again")
    except MlctlError as e:
        console.warn(f"{host.name}: could not switch back to {release}: {e.message}")


def database(host, lay: Layout, leaving: str | None, target: str, policy: str) -> None:
    if not leaving or leaving == target:
        return
    if policy == "restore":
        return restore_snapshot(host, lay, leaving)
    leaves = hoststeps.release_leaves(host, target)
    if leaves == host.facts.get("metas", {}).get(leaving, {}).get("leaves"):
        console.step(host.name, "no migration to reverse (same migrations in both releases)")
        return None
    plan = hoststeps.migration_info(host, lay.release(leaving), "plan", json.dumps(leaves))
    if not plan["unapply"]:
        console.step(host.name, "no migration to reverse")
        return None
    if plan["irreversible"]:
        raise NeedsOperator(
            f"{host.name}: irreversible migration(s) {', '.join(plan['irreversible'])}",
            "choose --db restore (restores the before-migrate snapshot, losing writes since) "
            "or --db code-only (keeps the newer schema)",
        )
    console.step(host.name, f"reversing {', '.join(plan['unapply'])}")
    for app, name in plan["targets"]:
        hoststeps.migrate(host, lay.release(leaving), app, name)
    return None


def restore_snapshot(host, lay: Layout, leaving: str) -> None:
    from mlctl.commands.db import EXTENSIONS

    ext = EXTENSIONS[host.session.cfg.database.engine]
    path = f"{lay.backups}/{leaving}-before-migrate.{ext}"
    exists = host.run("snapshot exists", nonempty(path), warn=True).ok
    if not exists:
        raise RollbackFailed(
            f"{host.name}: no before-migrate snapshot of {leaving}",
            "use --db code-only or --db reverse",
        )
    console.warn(f"{host.name}: restoring {path}; writes since that deploy are lost")
    hoststeps.restore(host, path)
