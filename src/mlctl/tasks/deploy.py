"""`deploy`: guards → local preflight → connect → lock → remote preflight → upload → build on every
host → snapshot, migrate, snapshot → switch → restart → health → record → prune → unlock.

Nothing switches until every host has built; a failure after the switch puts every host back on
the release it served before, and the lock is released in `finally`, also on Ctrl-C.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from mlctl.commands import release as relcmd
from mlctl.config.layout import Layout
from mlctl.core import cancel, console
from mlctl.core.errors import (
    ConnectError,
    DeployFailed,
    GuardRefused,
    MlctlError,
    NeedsOperator,
    PreflightFailed,
)
from mlctl.core.shell import Cmd, script
from mlctl.project import source
from mlctl.tasks import guards, hoststeps, prune, serving, setup_hosts
from mlctl.tasks.compensation import Compensation, migration_failed
from mlctl.tasks.deploy_checks import Preflight
from mlctl.tasks.venvbuild import VenvBuild
from mlctl.transport import locking
from mlctl.transport.journal import local_user
from mlctl.transport.selection import open_session


def deploy_task(sel, ref=None, dry_run=False, skip_tests=False, yes=False) -> int:
    with open_session(sel, "deploy") as sess:
        cfg = sess.cfg
        if skip_tests and cfg.protected:
            raise GuardRefused(f"--skip-tests is refused on protected environment {cfg.name}")
        if not dry_run:
            guards.confirm(cfg, "deploy", yes)
        # The hosts are reached (connect, facts) while git works here: neither waits for the
        # other. Leaving the pool waits for a connect still under way (timeouts.connect).
        with ThreadPoolExecutor(max_workers=1) as pool:
            reaching = pool.submit(reach, sess, dry_run)
            src = local_preflight(cfg, ref, skip_tests)
            src.archive()  # made now, while the hosts answer; the upload reuses it
            console.banner(
                cfg.name, cfg.color, f"deploy {src.commit[:12]} ({src.subject[:50]})", cfg.hosts
            )
            reaching.result()
            rid = Deploy(sess, src, dry_run).run()
    if not dry_run:
        console.done(f"{cfg.name}: release {rid} is live on {len(sess.hosts)} host(s)")
    return 0


def reach(sess, dry_run: bool) -> None:
    """Connect to every host and gather its facts (nothing changes on a server; a local
    environment gets its directories and .env first)."""
    sess.connect()
    if sess.cfg.local and not dry_run:
        setup_hosts.prepare_local(sess)
    sess.each(hoststeps.gather_facts)


def local_preflight(cfg, ref: str | None, skip_tests: bool) -> source.Source:
    proj = cfg.project["source"]
    ref = ref or cfg.branch or proj["ref"]
    dirty = source.dirty_files(proj["repo"])
    if dirty and (cfg.protected or cfg.require_tests):
        raise PreflightFailed(
            f"work tree has uncommitted changes ({dirty[0]}…)", "commit or stash them first"
        )
    if dirty:
        console.warn(
            f"uncommitted changes are not deployed ({len(dirty)} file(s)); deploying {ref}"
        )
    src = source.resolve(proj["repo"], proj["subdir"], ref)
    if cfg.require_tests and not skip_tests:
        console.info(f"pytest gate on {src.commit[:12]} …")
        source.run_gate(src, cfg.project["tests"])
    return src


class Deploy(Preflight, VenvBuild, Compensation):
    """One deploy's pipeline and what it has done so far (what a failure puts back)."""

    def __init__(self, sess, src: source.Source, dry_run: bool = False):
        self.sess, self.cfg, self.src, self.dry = sess, sess.cfg, src, dry_run
        self.lay = Layout(self.cfg.deploy_to)
        self.rid = time.strftime("%Y%m%d%H%M%S", time.gmtime()) + "-" + src.commit[:12]
        self.rel = self.lay.release(self.rid)
        self.locked: list = []
        self.built: list = []
        self.switched: list = []
        self.snapshots: dict = {}
        self.migrated: list = []
        self.leaves = None  # this code's leaf migration per app, recorded in its metadata
        self.static = None  # one collected static file the health checks request
        self.stage = "preflight"
        self.needs_operator = False

    # ------------------------------------------------------------ the pipeline

    def run(self) -> str:
        """The pipeline on hosts that `reach` connected and gathered facts from. In a dry run
        every command from here on is printed (and recorded as planned) instead of run."""
        sess = self.sess
        sess.planning = self.dry
        sess.each(self.preflight)
        self.require_settings_env()
        try:
            self.lock_all()
            self.stage = "build"
            sess.each(self.build)
            self.stage = "migrate"
            self.migrate()
            self.stage = "switch"
            self.switch_all()
            self.stage = "done"
            sess.each(self.finish)
            self.tag()
        except BaseException as e:
            with cancel.held(reraise=False):  # a signal now must not cut the cleanup short
                self.fail(e)
            raise
        finally:
            with cancel.held(reraise=False):
                self.unlock_all()
        return self.rid

    def lock_all(self) -> None:
        # Every lock taken must be known, to record its outcome and release it.
        locking.lock_hosts(self.sess, "deploy", self.rid, self.locked)
        self.sess.each(self.clean_partials)

    def clean_partials(self, host) -> None:
        """Remove releases an interrupted run left half-built (never current)."""
        facts = host.facts
        for rid, meta in facts.get("metas", {}).items():
            if meta.get("removed"):
                continue
            if meta.get("status") in ("building", "partial") and rid != facts.get("current"):
                if rid in facts.get("releases", []):
                    console.step(host.name, f"removing partial release {rid}", "yellow")
                marked = {**meta, "id": rid, "status": "partial", "removed": True}
                hoststeps.record(host, metas=[marked], then=[relcmd.remove_release(self.lay, rid)])

    def build(self, host) -> None:
        """One round trip when the venv exists and no before_build hook runs: metadata
        "building", the archive, the tree, the venv link, then collectstatic and the checks in
        one Django process. Otherwise the upload, the hooks and the venv build come first."""
        console.step(host.name, f"build {self.rid}")
        self.built.append(host)  # from here on a failure removes what exists of the release
        cfg = self.cfg
        upload = script(
            relcmd.write_meta(self.lay, self.meta("building")),
            relcmd.extract(self.lay, self.rid),
            relcmd.finish_tree(self.lay, self.rid, cfg.shared_files, cfg.shared_dirs),
        )
        venv = self.existing_venv(host)
        if venv and not cfg.hooks.before_build:
            build = hoststeps.build_command(host, self.rid, venv)
            r = host.stream("upload and build", script(upload, build), self.archive())
        else:
            host.stream("upload", upload, self.archive())
            self.hooks(host, "before_build")
            venv = venv or self.build_venv(host)
            r = host.run("build release", hoststeps.build_command(host, self.rid, venv))
        built = hoststeps.parse_build(r.stdout)
        host.facts["pending"] = built["pending"]
        self.leaves = built["leaves"]
        self.static = built.get("static")
        host.facts.setdefault("static", {})[self.rid] = self.static
        self.hooks(host, "after_build")

    def hooks(self, host, stage: str) -> None:
        """The inventory's `hooks.<stage>` commands, run as root in the new release; a failing
        hook fails the deploy like any other step (after_switch ones trigger the rollback)."""
        for i, hook in enumerate(getattr(self.cfg.hooks, stage)):
            host.run(
                f"hook {stage}[{i}]",
                Cmd.of("sh", "-c", hook).in_dir(self.rel),
            )

    def migrate(self) -> None:
        """Snapshot, migrate, snapshot on each database host with migrations pending. A dry run
        cannot know them (the release is not built): it shows the steps run when there are."""
        for host in hoststeps.db_hosts(self.sess):
            names = host.facts["pending"]
            if self.dry:
                console.out(f"[{host.name}] when migrations are pending:")
            elif not names:
                console.step(host.name, "no migration pending; snapshot skipped")
                continue
            else:
                more = f" and {len(names) - 4} more" if len(names) > 4 else ""
                console.step(host.name, f"migrating: {', '.join(names[:4])}{more}")
            self.migrate_one(host)

    def migrate_one(self, host) -> None:
        self.snapshots[host.name] = hoststeps.snapshot(host, f"{self.rid}-before-migrate")
        try:
            self.migrated.append(host)
            hoststeps.migrate(host, self.rel)
        except ConnectError as e:
            # The migration may still be running on the host: restoring the snapshot under
            # it (or reversing it) could corrupt the database. Stop; an operator decides.
            self.migrated.remove(host)
            raise NeedsOperator(
                f"{e.message}; the migration may still be running, so the snapshot "
                f"{self.snapshots[host.name]} was NOT restored and nothing was switched",
                "when it has finished, inspect the schema, then `mlctl ENV restore "
                "SNAPSHOT` or deploy again",
            ) from None
        except MlctlError as e:
            snap = self.snapshots[host.name]
            if snap:
                console.warn(f"{host.name}: migration failed; restoring {snap}")
                hoststeps.restore(host, snap)
            self.migrated.remove(host)
            raise DeployFailed(migration_failed(host.name, bool(snap), e.message)) from None
        hoststeps.snapshot(host, f"{self.rid}-after-migrate")

    def switch_all(self) -> None:
        batch = self.cfg.rolling.batch or len(self.sess.hosts)
        hosts = self.sess.hosts
        for i in range(0, len(hosts), batch):
            group = hosts[i : i + batch]
            self.sess.each(self.switch_one, group)

    def switch_one(self, host) -> None:
        # Counted as switched before the command: if the connection drops during it, the link
        # may have moved, and putting it back (idempotent) is always right.
        self.switched.append(host)
        serving.serve(host, self.rid)
        self.hooks(host, "after_switch")
        if not self.dry:
            console.step(host.name, f"serving {self.rid}", "green")

    def finish(self, host) -> None:
        """Mark the release good, record it, prune and unlock: one round trip."""
        event = {
            "event": "finished",
            "action": "deploy",
            "release": self.rid,
            "commit": self.src.commit,
            "outcome": "good",
        }
        keep = self.cfg.keep_releases
        r = hoststeps.record(
            host,
            metas=[self.meta("good")],
            event=event,
            then=prune.commands(self.lay, host.facts, self.rid, keep),
            unlock=True,
        )
        self.locked.remove(host)
        if prune.FAILED in r.stderr:
            console.warn(f"{host.name}: {prune.FAILED}; the deploy itself succeeded")

    def tag(self) -> None:
        if not self.cfg.tag_deploys:
            return
        name = f"deploy/{self.cfg.name}/{self.rid}"
        if self.dry:  # a local git command, not a host's
            console.out(f"then: git tag {name} {self.src.commit}")
            return
        try:
            source.git(self.src.repo, "tag", name, self.src.commit)
        except PreflightFailed as e:
            console.warn(f"git tag {name} not created: {e.message}")

    # ------------------------------------------------------------ helpers

    def archive(self) -> bytes:
        return self.src.archive()

    def meta(self, status: str) -> dict:
        leaves = {"leaves": self.leaves} if self.leaves is not None else {}
        return {
            "id": self.rid,
            "commit": self.src.commit,
            "ref": self.src.ref,
            "branch": self.src.branch,
            "subject": self.src.subject,
            "user": local_user(),
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "status": status,
            "run_id": self.sess.journal.run_id,
            **leaves,
            **({"static": self.static} if self.static else {}),
        }
