"""Every task once: its options and the function that runs it.

The `mlctl` CLI (argparse) and the Fabric/Invoke collections (fabfile.py, tasks.py) are both
generated from this table, so `mlctl live deploy --ref X` and `fab live deploy --ref X` are the
same task with the same options. Implementations are imported lazily to keep start-up fast.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Opt:
    name: str
    help: str
    kind: type = bool
    default: object = None
    choices: tuple = ()
    short: str = ""
    positional: bool = False
    setting: str = ""  # an option that overrides this inventory setting (not passed to the task)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    help: str
    target: str  # "module:function"; called as function(selection, **options) -> exit code
    opts: tuple = field(default_factory=tuple)
    needs_env: bool = True

    def split(self, values: dict) -> tuple[dict, dict]:
        """Option values → (the task function's keyword arguments, setting overrides)."""
        kwargs = {o.name: values.get(o.name) for o in self.opts if not o.setting}
        overrides = {
            o.setting: str(values[o.name])
            for o in self.opts
            if o.setting and values.get(o.name) is not None
        }
        return kwargs, overrides

    def function(self):
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(f"mlctl.{module}"), attr)


YES = Opt(
    "yes", "go on without a prompt (protected envs also need MLCTL_CONFIRM=<env>)", short="-y"
)
JSON = Opt("json", "print JSON instead of a table")
TTY = Opt("tty", "a terminal even when stdin is not one (as ssh -t)", short="-t")
LOCK_WAIT = Opt(
    "lock_wait",
    "wait up to SECONDS for a live holder of the deploy lock (timeouts.lock_wait)",
    float,
    setting="timeouts.lock_wait",
)

TASKS = [
    TaskSpec(
        "deploy",
        "build, migrate, switch and health-check a release",
        "tasks.deploy:deploy_task",
        (
            Opt("ref", "git ref to deploy (default: the inventory's branch or source.ref)", str),
            Opt("dry_run", "print the plan and commands; change nothing"),
            Opt("skip_tests", "skip the pytest gate (refused on protected environments)"),
            Opt("maintenance", "show the maintenance page from the migration to the end"),
            LOCK_WAIT,
            YES,
        ),
    ),
    TaskSpec(
        "rollback",
        "switch back to the previous good release",
        "tasks.rollback:rollback_task",
        (
            Opt("to", "release id to roll back to", str),
            Opt("db", "database policy", str, "auto", ("auto", "code-only", "reverse", "restore")),
            LOCK_WAIT,
            YES,
        ),
    ),
    TaskSpec(
        "check",
        "health checks per host (exit 0 ok, 1 warnings, 2 failures)",
        "tasks.checks:check_task",
        (JSON,),
    ),
    TaskSpec(
        "diag",
        "one-glance dashboard of every host",
        "tasks.diag:diag_task",
        (
            JSON,
            Opt("watch", "refresh in place until Ctrl-C"),
            Opt("interval", "seconds between refreshes with --watch", float, 5.0),
        ),
    ),
    TaskSpec("status", "one line per host: release, commit, age, health", "tasks.diag:status_task"),
    TaskSpec(
        "bounce",
        "graceful restart of gunicorn; nginx -t then reload",
        "tasks.operations:bounce_task",
        (YES, Opt("process", "restart this process (processes:) instead of gunicorn", str)),
    ),
    TaskSpec(
        "migrate",
        "snapshot, migrate, snapshot on the current release",
        "tasks.operations:migrate_task",
        (YES,),
    ),
    TaskSpec("snapshot", "dump the database into backups/db", "tasks.operations:snapshot_task"),
    TaskSpec(
        "restore",
        "restore a database snapshot",
        "tasks.operations:restore_task",
        (
            Opt("snapshot", "snapshot file name (see `releases`)", str, positional=True),
            YES,
        ),
    ),
    TaskSpec(
        "releases",
        "list releases with status, commit, who and when",
        "tasks.operations:releases_task",
        (JSON,),
    ),
    TaskSpec(
        "logs",
        "app, nginx-access or nginx-error logs from all hosts",
        "tasks.logs:logs_task",
        (
            Opt("service", "which log", str, "app", ("app", "nginx-access", "nginx-error")),
            Opt("since", "journalctl --since value, e.g. '10 min ago'", str),
            Opt("lines", "lines per host", int, 50, short="-n"),
            Opt("follow", "follow all hosts until Ctrl-C", short="-f"),
        ),
    ),
    TaskSpec(
        "monitor",
        "alerts: disk, memory, failed units, 5xx, errors, site down",
        "tasks.monitor:monitor_task",
        (
            Opt("once", "check once and exit (for cron/CI)"),
            Opt("watch", "check every --interval seconds until Ctrl-C"),
            Opt("interval", "seconds between rounds with --watch", float, 60.0),
            Opt("window", "seconds of logs to inspect for 5xx and errors", int, 300),
            Opt("webhook", "POST a JSON payload per new alert to this URL", str),
            Opt("prometheus", "write node_exporter textfile metrics to this path", str),
        ),
    ),
    TaskSpec("lock", "show the deploy lock of every host", "tasks.operations:lock_task"),
    TaskSpec(
        "unlock",
        "release a stale deploy lock",
        "tasks.operations:unlock_task",
        (
            Opt("force", "also remove a lock whose holder may be alive"),
            YES,
        ),
    ),
    TaskSpec("setup", "provision bare hosts (idempotent)", "tasks.setup_hosts:setup_task", (YES,)),
    TaskSpec(
        "config",
        "print the resolved configuration (secrets masked)",
        "tasks.operations:config_task",
        (JSON,),
    ),
    TaskSpec(
        "manage",
        "run a management command in the current release as the app user (its exit code)",
        "tasks.operator:manage_task",
        (
            Opt(
                "args",
                "the command and its arguments (mlctl's own options go before them)",
                list,
                positional=True,
            ),
            Opt("all_hosts", "run on every host in turn (default: the first, or --host)"),
            Opt(
                "env",
                "KEY=VALUE (or KEY: its value here) for the command, sent on stdin (repeatable)",
                list,
            ),
            YES,
        ),
    ),
    TaskSpec(
        "shell",
        "Django's shell in the current release, with a terminal",
        "tasks.operator:shell_task",
        (Opt("command", "run this code instead (manage.py shell -c)", str, short="-c"), TTY, YES),
    ),
    TaskSpec(
        "dbshell",
        "the database client with the release's settings (manage.py dbshell)",
        "tasks.operator:dbshell_task",
        (Opt("command", "run this SQL instead (psql -c)", str, short="-c"), TTY, YES),
    ),
    TaskSpec(
        "ssh",
        "log in at the current release (the ssh user's login shell)",
        "tasks.operator:ssh_task",
        (Opt("command", "run this shell command instead", str, short="-c"), TTY, YES),
    ),
    TaskSpec(
        "maintenance",
        "nginx answers 503 with a page, except the health path and maintenance.allow",
        "tasks.maintenance:maintenance_task",
        (
            Opt("state", "on or off", str, positional=True),
            Opt("message", "the page's text this time (default: maintenance.message)", str),
            YES,
        ),
    ),
    TaskSpec(
        "init",
        "add mlctl to an existing Django project",
        "tasks.init:init_task",
        (
            Opt("path", "Django project directory", str, ".", positional=True),
            Opt("force", "overwrite existing files"),
            Opt("ci", "also write a CI workflow", str, None, ("github", "gitlab")),
        ),
        needs_env=False,
    ),
]

BY_NAME = {t.name: t for t in TASKS}
