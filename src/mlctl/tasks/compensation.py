"""What a failed deploy puts back, and doing it.

`put_back` is the pure decision: from what the deploy had done when it failed (locked, built,
migrated, switched) and what each host served before, which host gets which release back, whose
migration is undone, whose new release is removed. `Compensation` (mixed into `deploy.Deploy`)
carries it out; an error while putting something back is named on the console, and the error that
caused the failure stays the one the run ends with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from mlctl.commands import release as relcmd
from mlctl.core import cancel, console
from mlctl.core.console import clip
from mlctl.core.errors import MlctlError, NeedsOperator
from mlctl.core.shell import mask
from mlctl.tasks import hoststeps, serving
from mlctl.transport import locking

SERVE, OUT_OF_SERVICE, KEEP = "serve", "out of service", "keep"


@dataclass
class PutBack:
    """Per host name: what a failed deploy does to put it back."""

    serve: dict = field(default_factory=dict)  # host → (SERVE, previous) | (OUT_OF_SERVICE, None)
    undo_migration: list = field(default_factory=list)  # hosts whose schema goes back
    discard: list = field(default_factory=list)  # hosts whose new release is removed
    record_failure: list = field(default_factory=list)  # hosts whose history gets the failure


def put_back(hosts, previous: dict, locked, built, migrated, switched, needs_operator) -> PutBack:
    """The decision, from host names: `previous` maps each to the release it served (or None)."""
    plan = PutBack(undo_migration=[h for h in hosts if h in migrated])
    if switched:
        # Every host is put back on what it served (a host not switched yet keeps it); the
        # outcome is recorded with the release's metadata, so no separate failure record.
        for h in hosts:
            if h not in switched:
                plan.serve[h] = (KEEP, previous.get(h))
            elif previous.get(h):
                plan.serve[h] = (SERVE, previous[h])
            else:
                plan.serve[h] = (OUT_OF_SERVICE, None)
        return plan
    if built and not needs_operator:  # a migration that may still run still uses the code
        plan.discard = list(hosts)
    plan.record_failure = [h for h in hosts if h in locked]
    return plan


class Compensation:
    """Failure handling of `deploy.Deploy` (its state: sess, cfg, rid, rel, locked, built,
    migrated, switched, snapshots, stage, needs_operator)."""

    def fail(self, error: BaseException) -> None:
        """Put every host back on the release it served before; nothing half-done stays current."""
        why = cancel.describe(error) if isinstance(error, KeyboardInterrupt) else str(error)
        self.needs_operator = isinstance(error, NeedsOperator)
        sess = self.sess
        sess.journal.record("", "deploy", outcome="failed", stage=self.stage, error=why)
        if isinstance(error, KeyboardInterrupt):  # Ctrl-C, SIGTERM, SIGHUP: stop the step first
            self.still_running(cancel.stop_remote(sess))
        # Cleanup must reach every host: reopen connections a cut link closed.
        sess.each_settled(sess.reconnect, putting_back="the connection")
        plan = self.decide()
        if plan.serve:
            console.warn(revert_message(why, [h.facts.get("current") for h in self.switched]))
        by_name = {h.name: h for h in sess.hosts}

        def hosts(names):
            return [by_name[n] for n in names]

        # before discarding or switching back: reversing needs this release's code
        sess.each_settled(self.undo_migration, hosts(plan.undo_migration), "the database")
        if plan.serve:
            self.revert(plan)
        sess.each_settled(self.discard, hosts(plan.discard), f"the removal of {self.rid}")
        sess.each_settled(
            lambda h: self.record_failure(h, why), hosts(plan.record_failure), "the history"
        )

    def decide(self) -> PutBack:
        def names(hosts) -> list[str]:
            return [h.name for h in hosts]

        return put_back(
            names(self.sess.hosts),
            {h.name: h.facts.get("current") for h in self.sess.hosts},
            locked=names(self.locked),
            built=names(self.built),
            migrated=names(self.migrated),
            switched=names(self.switched),
            needs_operator=self.needs_operator,
        )

    def still_running(self, hosts: list) -> None:
        """Hosts where the interrupted step did not end: a migration there may still be
        running, so its snapshot is not restored under it (an operator decides)."""
        for host in [h for h in hosts if h in self.migrated]:
            self.migrated.remove(host)
            self.needs_operator = True
            console.warn(
                f"{host.name}: the migration may still be running, so the snapshot "
                f"{self.snapshots.get(host.name)} was NOT restored — when it has finished, "
                "inspect the schema, then `mlctl ENV restore SNAPSHOT` or deploy again"
            )

    def record_failure(self, host, why: str) -> None:
        event = {
            "event": "finished",
            "action": "deploy",
            "release": self.rid,
            "outcome": "needs-operator" if self.needs_operator else "failed",
            "stage": self.stage,
            "error": clip(mask(why, self.sess.secrets)),
        }
        hoststeps.record(host, event=event)

    def revert(self, plan: PutBack) -> None:
        def back(host):
            self.back_to_previous(host, *plan.serve[host.name])

        results = self.sess.each_settled(back)
        for host, res in zip(self.sess.hosts, results, strict=True):
            if isinstance(res, MlctlError):  # said here, not only in the JSON log
                console.fail(rollback_failed(host.name, host.facts.get("current"), res.message))

    def back_to_previous(self, host, action: str, previous: str | None) -> None:
        """Serve what the host served before; a host that served nothing (a first deploy) is
        left with no `current` and no app running, and the release is marked failed."""
        status = "bad" if previous else "failed"
        try:
            if action == SERVE:
                serving.serve(host, previous, "switch back", keep_old=0)
            elif action == OUT_OF_SERVICE:
                hoststeps.take_out_of_service(host)
                console.warn(f"{host.name}: no release to go back to; {self.rid} stopped")
        finally:  # the outcome is recorded even when the old release's health check fails too
            event = {
                "event": "finished",
                "action": "deploy",
                "release": self.rid,
                "outcome": status,
                "serving": previous,
            }
            hoststeps.record(host, metas=[self.meta(status)], event=event)

    def undo_migration(self, host) -> None:
        """Reverse this release's migrations with its own code, else restore the snapshot."""
        previous = host.facts.get("current")
        snap = self.snapshots.get(host.name)
        try:
            if previous:
                leaves = hoststeps.release_leaves(host, previous)
                plan = hoststeps.migration_info(host, self.rel, "plan", json.dumps(leaves))
                if not plan["irreversible"]:
                    for app, name in plan["targets"]:
                        hoststeps.migrate(host, self.rel, app, name)
                    return
        except MlctlError as e:
            console.warn(f"{host.name}: reversing migrations failed ({e.message})")
        if snap:
            console.warn(f"{host.name}: restoring database snapshot {snap}")
            hoststeps.restore(host, snap)

    def discard(self, host) -> None:
        removed = {**self.meta("partial"), "removed": True}
        hoststeps.record(host, metas=[removed], then=[relcmd.remove_release(self.lay, self.rid)])

    def unlock_all(self) -> None:
        self.sess.each_settled(locking.unlock, list(self.locked))


def migration_failed(host: str, restored: bool, error: str) -> str:
    if restored:
        return f"{host}: migration failed and the database was restored from its snapshot: {error}"
    return (
        f"{host}: migration failed (there was no database before it, so no snapshot to restore): "
        f"{error}"
    )


def revert_message(why: str, previous: list) -> str:
    """What the automatic rollback will do, truly: back to a release, or nothing to go back to."""
    if all(previous):
        return f"rolling every host back after: {why}"
    if any(previous):
        return f"rolling back the hosts that served a release (the others are stopped) after: {why}"
    return f"no release to go back to; taking the new release out of service after: {why}"


def rollback_failed(host: str, previous: str | None, error: str) -> str:
    if not previous:
        return f"{host}: could not take the failed release out of service: {error}"
    return f"{host}: automatic rollback to {previous} FAILED: {error}"
