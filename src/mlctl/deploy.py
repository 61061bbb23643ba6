"""`deploy`: guards → local preflight → connect → lock → remote preflight → upload → build on every
host → snapshot, migrate, snapshot → switch → restart → health → record → prune → unlock.

Nothing switches until every host has built; a failure after the switch puts every host back on
the release it served before, and the lock is released in `finally`, also on Ctrl-C.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

from . import (
    cancel,
    console,
    guards,
    installset,
    locking,
    pipfail,
    prune,
    pyversion,
    settings_scan,
    setup,
    source,
    steps,
    wheelhouse,
)
from .commands import release as relcmd
from .console import clip
from .errors import (
    ConnectError,
    DeployFailed,
    GuardRefused,
    MlctlError,
    NeedsOperator,
    PreflightFailed,
    RemoteCommandFailed,
)
from .journal import local_user
from .layout import Layout
from .selection import open_session
from .session import Result
from .shell import Cmd, mask, script

MIN_FREE = 300 * 1024 * 1024  # a venv build needs about this much


def deploy_task(sel, ref=None, dry_run=False, skip_tests=False, yes=False) -> int:
    sess = open_session(sel, "deploy")
    cfg = sess.cfg
    if skip_tests and cfg["protected"]:
        raise GuardRefused(f"--skip-tests is refused on protected environment {cfg.name}")
    if not dry_run:
        guards.confirm(cfg, "deploy", yes)
    # The hosts are reached (connect, facts) while git works here: neither waits for the other.
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        reaching = pool.submit(reach, sess, dry_run)
        src = local_preflight(cfg, ref, skip_tests)
        src.archive()  # made now, while the hosts answer; the upload reuses it
        console.banner(
            cfg.name, cfg.color, f"deploy {src.commit[:12]} ({src.subject[:50]})", cfg.hosts
        )
        reaching.result()
        rid = Deploy(sess, src, dry_run).run()
    finally:
        pool.shutdown(wait=True)  # a connect still under way ends within timeouts.connect
        sess.close()
    if not dry_run:
        console.done(f"{cfg.name}: release {rid} is live on {len(sess.hosts)} host(s)")
    return 0


def reach(sess, dry_run: bool) -> None:
    """Connect to every host and gather its facts (nothing changes on a server; a local
    environment gets its directories and .env first)."""
    sess.connect()
    if sess.cfg.local and not dry_run:
        setup.prepare_local(sess)
    sess.each(steps.gather_facts)


def local_preflight(cfg, ref: str | None, skip_tests: bool) -> source.Source:
    proj = cfg.project["source"]
    ref = ref or cfg["branch"] or proj["ref"]
    dirty = source.dirty_files(proj["repo"])
    if dirty and (cfg["protected"] or cfg["require_tests"]):
        raise PreflightFailed(
            f"work tree has uncommitted changes ({dirty[0]}…)", "commit or stash them first"
        )
    if dirty:
        console.warn(
            f"uncommitted changes are not deployed ({len(dirty)} file(s)); deploying {ref}"
        )
    src = source.resolve(proj["repo"], proj["subdir"], ref)
    if cfg["require_tests"] and not skip_tests:
        console.info(f"pytest gate on {src.commit[:12]} …")
        source.run_gate(src, cfg.project["tests"])
    return src


class Deploy:
    def __init__(self, sess, src: source.Source, dry_run: bool = False):
        self.sess, self.cfg, self.src, self.dry = sess, sess.cfg, src, dry_run
        self.lay = Layout(self.cfg["deploy_to"])
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
        """The pipeline on hosts that `reach` connected and gathered facts from."""
        sess = self.sess
        sess.each(self.preflight)
        self.require_settings_env()
        if self.dry:
            for h in sess.hosts:  # from here on every step prints its command instead
                h.run = _printer(h)
                h.stream = _printer(h, streamed=True)
        try:
            self.lock_all()
            self.stage = "build"
            sess.each(self.build)
            self.stage = "migrate"
            self.migrate()
            self.stage = "switch"
            self.switch_all()
            if self.dry:
                tag = (
                    f"tag deploy/{self.cfg.name}/{self.rid}, "
                    if self.cfg.get("tag_deploys", True)
                    else ""
                )
                console.out(
                    f"then: mark the release good, record history, {tag}prune old releases, unlock"
                )
                return self.rid
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

    def preflight(self, host) -> None:
        facts = host.facts  # gathered by `reach`
        name = self.cfg.name
        if facts["marker"] and facts["marker"] != name:
            raise PreflightFailed(
                f"{host.name}: this server belongs to {facts['marker']!r}, " f"not {name!r}",
                "check the inventory's hosts",
            )
        if not facts["env_file"] and not self.cfg.local:
            raise PreflightFailed(
                f"{host.name}: not set up (no shared .env)", f"run `mlctl {name} setup` first"
            )
        pyversion.check(host.name, facts.get("python_version", ""), self.python_need())
        if facts["free_bytes"] < MIN_FREE:
            free = facts["free_bytes"] // (1024 * 1024)
            raise PreflightFailed(
                f"{host.name}: only {free} MiB free in {self.cfg['deploy_to']}",
                f"free at least {MIN_FREE // (1024 * 1024)} MiB",
            )
        if self.cfg["service"] == "pidfile" and not self.dry:
            steps.check_port(host)

    def require_settings_env(self) -> None:
        """Every variable the settings read without a default (through their imports, at this
        commit) is set: in the inventory's env:/secrets: or each host's shared .env. All the
        missing ones are named at once, before anything changes on a host."""
        needed = settings_env_needed(self.src, self.cfg.project["settings_module"])
        if not needed:
            return
        inventory = {k for k, v in setup.inventory_env(self.cfg).items() if v != ""}
        on_hosts = {h.name: set(h.facts.get("env_keys", [])) for h in self.sess.hosts}
        missing = [
            n for n in needed if n not in inventory and any(n not in k for k in on_hosts.values())
        ]
        if missing:
            raise PreflightFailed(
                f"missing environment variables for the settings: {', '.join(missing)}",
                "set them under env:/secrets: in environments.yaml",
            )
        for host, keys in on_hosts.items():
            unwritten = [n for n in needed if n not in keys]
            if unwritten and not self.cfg.local:  # a local deploy writes its .env each time
                raise PreflightFailed(
                    f"{host}: the shared .env lacks {', '.join(unwritten)} (set in the "
                    "inventory since the last setup)",
                    f"run `mlctl {self.cfg.name} setup` to write them",
                )

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
                steps.record(host, metas=[marked], then=[relcmd.remove_release(self.lay, rid)])

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
            relcmd.finish_tree(self.lay, self.rid, cfg["shared_files"], cfg["shared_dirs"]),
        )
        venv = self.existing_venv(host)
        if venv and not cfg["hooks"]["before_build"]:
            build = steps.build_command(host, self.rid, venv)
            r = host.stream("upload and build", script(upload, build), self.archive())
        else:
            host.stream("upload", upload, self.archive())
            self.hooks(host, "before_build")
            venv = venv or self.build_venv(host)
            r = host.run("build release", steps.build_command(host, self.rid, venv))
        built = steps.parse_build(r.stdout)
        host.facts["pending"] = built["pending"]
        self.leaves = built["leaves"]
        self.static = built.get("static")
        host.facts.setdefault("static", {})[self.rid] = self.static
        self.hooks(host, "after_build")

    def hooks(self, host, stage: str) -> None:
        """The inventory's `hooks.<stage>` commands, run as root in the new release; a failing
        hook fails the deploy like any other step (after_switch ones trigger the rollback)."""
        for i, hook in enumerate(self.cfg["hooks"][stage]):
            host.run(
                f"hook {stage}[{i}]",
                Cmd.of("sh", "-c", hook).in_dir(self.rel),
            )

    def python_need(self) -> tuple[str, str] | None:
        """The project's Python constraint: the inventory's, else the commit's own files."""
        return pyversion.needed(self.cfg.project["requires_python"], self.src.text)

    def install_set(self):
        iset = self.src.install_set(self.cfg.project["requirements"])
        return installset.with_server(iset, self.cfg["build"]["server"])

    def venv_hash(self, host) -> str:
        facts = host.facts
        return self.install_set().key(facts["python"], facts["platform"])

    def existing_venv(self, host) -> str | None:
        """The complete venv for these requirements on this host, if there is one."""
        req_hash = self.venv_hash(host)
        if req_hash not in host.facts.get("venvs", []):
            return None
        console.step(host.name, f"venv {req_hash} reused")
        return self.lay.venv(req_hash)

    def build_venv(self, host) -> str:
        facts = host.facts
        iset = self.install_set()
        req_hash = self.venv_hash(host)
        venv = self.lay.venv(req_hash)
        console.step(host.name, f"building venv {req_hash} from {iset.origin}")
        # The install set goes up with the wheels (or alone, when the host resolves them):
        # pip installs that copy, includes and generated lock exports alike.
        wh = self.lay.wheelhouse(req_hash)
        offline = self.cfg["build"]["install"] == "local"
        payload = iset.tarball()
        if offline and not self.dry:
            local = wheelhouse.build(
                req_hash, iset, facts["python"], facts["machine"], facts["libc"]
            )
            payload = wheelhouse.tarball(local, tuple(sorted(iset.files)))
        receive = relcmd.receive_wheelhouse(wh, self.rid)
        host.stream("upload wheelhouse" if offline else "upload requirements", receive, payload)
        find_links = wh if offline else None
        requirements = f"{wh}/{iset.top}"
        server = f"{wh}/{iset.extra}" if iset.extra else None
        cmd = relcmd.build_venv(
            self.cfg["python"], venv, find_links, requirements, self.rid, server, iset.complete
        )
        r = host.run("build venv", cmd, warn=True)
        if not r.ok:  # pip's last line is a "note:"; say which package and why instead
            why = pipfail.reason(mask(r.stderr or r.stdout, self.sess.secrets))
            raise RemoteCommandFailed(host.name, "build venv", r.code, why)
        return venv

    def migrate(self) -> None:
        hosts = steps.db_hosts(self.sess)
        if self.dry:
            for h in hosts:
                console.out(f"[{h.name}] when migrations are pending: snapshot, migrate, snapshot")
                steps.snapshot(h, f"{self.rid}-before-migrate")
                steps.migrate(h, self.rel)
            return
        for host, names in [(h, h.facts["pending"]) for h in hosts]:
            if not names:
                console.step(host.name, "no migration pending; snapshot skipped")
                continue
            shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
            console.step(host.name, f"migrating: {shown}")
            self.snapshots[host.name] = steps.snapshot(host, f"{self.rid}-before-migrate")
            try:
                self.migrated.append(host)
                steps.migrate(host, self.rel)
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
                    steps.restore(host, snap)
                self.migrated.remove(host)
                raise DeployFailed(migration_failed(host.name, bool(snap), e.message)) from None
            steps.snapshot(host, f"{self.rid}-after-migrate")

    def switch_all(self) -> None:
        batch = self.cfg["rolling"]["batch"] or len(self.sess.hosts)
        hosts = self.sess.hosts
        for i in range(0, len(hosts), batch):
            group = hosts[i : i + batch]
            self.sess.each(self.switch_one, group)

    def switch_one(self, host) -> None:
        # Counted as switched before the command: if the connection drops during it, the link
        # may have moved, and putting it back (idempotent) is always right.
        self.switched.append(host)
        steps.serve(host, self.rid)
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
        keep = self.cfg["keep_releases"]
        r = steps.record(
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
        if self.dry or not self.cfg.get("tag_deploys", True):
            return
        name = f"deploy/{self.cfg.name}/{self.rid}"
        try:
            source.git(self.src.repo, "tag", name, self.src.commit)
        except PreflightFailed as e:
            console.warn(f"git tag {name} not created: {e.message}")

    # ------------------------------------------------------------ failure handling

    def fail(self, error: BaseException) -> None:
        """Put every host back on the release it served before; nothing half-done stays current."""
        why = cancel.describe(error) if isinstance(error, KeyboardInterrupt) else str(error)
        self.needs_operator = isinstance(error, NeedsOperator)
        self.sess.journal.record("", "deploy", outcome="failed", stage=self.stage, error=why)
        if self.dry:
            return
        if isinstance(error, KeyboardInterrupt):  # Ctrl-C, SIGTERM, SIGHUP: stop the step first
            self.still_running(cancel.stop_remote(self.sess))
        # Cleanup must reach every host: reopen connections a cut link closed.
        self.sess.each_settled(self.sess.reconnect)
        if self.switched:
            self.revert(why)
            return
        if self.migrated:  # before discarding: reversing needs this release's code
            self.sess.each_settled(self.undo_migration, self.migrated)
        if self.built and not self.needs_operator:  # its migration may still be using the code
            self.sess.each_settled(self.discard)
        # Every run that took a lock leaves its outcome next to its "started" record.
        self.sess.each_settled(lambda h: self.record_failure(h, why), list(self.locked))

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
        steps.record(host, event=event)

    def revert(self, why: str) -> None:
        console.warn(revert_message(why, [h.facts.get("current") for h in self.switched]))
        if self.migrated:
            self.sess.each_settled(self.undo_migration, self.migrated)
        results = self.sess.each_settled(self.back_to_previous)
        for host, res in zip(self.sess.hosts, results, strict=True):
            if isinstance(res, MlctlError):  # said here, not only in the JSON log
                console.fail(rollback_failed(host.name, host.facts.get("current"), res.message))

    def back_to_previous(self, host) -> None:
        """Serve what the host served before; a host that served nothing (a first deploy) is
        left with no `current` and no app running, and the release is marked failed."""
        previous = host.facts.get("current")
        status = "bad" if previous else "failed"
        try:
            if host in self.switched and previous:
                steps.serve(host, previous, "switch back")
            elif host in self.switched:
                steps.take_out_of_service(host)
                console.warn(f"{host.name}: no release to go back to; {self.rid} stopped")
        finally:  # the outcome is recorded even when the old release's health check fails too
            event = {
                "event": "finished",
                "action": "deploy",
                "release": self.rid,
                "outcome": status,
                "serving": previous,
            }
            steps.record(host, metas=[self.meta(status)], event=event)

    def undo_migration(self, host) -> None:
        """Reverse this release's migrations with its own code, else restore the snapshot."""
        previous = host.facts.get("current")
        snap = self.snapshots.get(host.name)
        try:
            if previous:
                leaves = steps.release_leaves(host, previous)
                plan = steps.migration_info(host, self.rel, "plan", json.dumps(leaves))
                if not plan["irreversible"]:
                    for app, name in plan["targets"]:
                        steps.migrate(host, self.rel, app, name)
                    return
        except MlctlError as e:
            console.warn(f"{host.name}: reversing migrations failed ({e.message})")
        if snap:
            console.warn(f"{host.name}: restoring database snapshot {snap}")
            steps.restore(host, snap)

    def discard(self, host) -> None:
        removed = {**self.meta("partial"), "removed": True}
        steps.record(host, metas=[removed], then=[relcmd.remove_release(self.lay, self.rid)])

    def unlock_all(self) -> None:
        self.sess.each_settled(locking.unlock, list(self.locked))

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


def settings_env_needed(src: source.Source, settings_module: str) -> list[str]:
    """Variables the settings module at this commit reads without a default, unconditionally."""
    tree = source.git(src.repo, "ls-tree", "-r", "--name-only", src.commit, "--", src.subdir or ".")
    prefix = f"{src.subdir.strip('/')}/" if src.subdir else ""
    files = {p.removeprefix(prefix) for p in tree.splitlines()}

    def read(rel: str) -> str | None:
        return src.file(rel).decode(errors="replace") if rel in files else None

    found = settings_scan.scan(read, settings_module)
    skip = found.provided | settings_scan.WRITTEN_BY_MLCTL
    return [n for n in found.required_names() if n not in skip]


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


def _printer(host, streamed: bool = False):
    """In --dry-run, every step prints its exact command instead of running it."""

    def show(step, cmd, *args, **kwargs):
        timeout = kwargs.get("timeout") or host.session.cfg["timeouts"]["command"]
        wrapped = host.wrapped(cmd, kwargs.get("root", True), kwargs.get("user"), timeout)
        text = wrapped.display(host.session.secrets)
        suffix = " < archive" if streamed else ""
        console.out(f"[{host.name}] {step}: {text}{suffix}")
        return Result("", "", 0, 0)

    return show
