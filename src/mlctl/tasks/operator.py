"""Operator commands in the current release: `manage ARGS…`, `shell`, `dbshell` and `ssh`.

`manage` runs on one host (the environment's first, or the one `--host` names) or, with
`--all-hosts`, on each in turn; it streams the command's output and returns its exit code (the
first non-zero one with --all-hosts). It runs as the app user with the shared .env, like the
app. On a protected environment it asks the guards' confirmation unless the command is one of
`guards.read_only_commands`. `shell`, `dbshell` and `ssh` open a session on one host, with a
terminal (pty) when this side has one or `--tty` asks, as ssh does: piped input (`echo 'print(1)'
| mlctl test shell`) then runs as a script. They are guarded like a deploy: they can change
anything.
"""

from __future__ import annotations

import os
import shlex
import sys

from mlctl.commands import operator as opcmd
from mlctl.core import console
from mlctl.core.errors import UsageError
from mlctl.tasks import guards
from mlctl.transport.attached import run_attached
from mlctl.transport.selection import open_session


def manage_task(sel, args=None, all_hosts=False, env=None, yes=False) -> int:
    words = _words(args)
    if not opcmd.command_name(words):
        raise UsageError("name a management command: mlctl ENV manage COMMAND [ARGS…]")
    with open_session(sel, "manage") as sess:
        cfg = sess.cfg
        if opcmd.command_name(words) not in cfg.guards.read_only_commands:
            guards.confirm(cfg, "manage", yes)
        data, values = opcmd.env_lines(env or [], os.environ)
        sess.add_secrets(values)
        hosts = sess.hosts if all_hosts else sess.hosts[:1]
        cmd = opcmd.manage(cfg.deploy_to, words, extra_env=bool(data))
        # A terminal gets a pty (prompts, colours); a script or CI gets plain, masked lines.
        pty = not all_hosts and not data and sys.stdin.isatty()
        worst = 0
        for host in hosts:
            sess.connect([host])
            if all_hosts:
                console.step(host.name, f"manage.py {shlex.join(words)}")
            code = run_attached(host, "manage", cmd, cfg.app_user, pty=pty, data=data or None)
            worst = worst or code
        return worst


def shell_task(sel, command=None, tty=False, yes=False) -> int:
    """Django's `manage.py shell` (or `shell -c CODE`) as the app user."""
    build = lambda cfg: opcmd.django_shell(cfg.deploy_to, command)  # noqa: E731
    return _session(sel, "shell", build, tty, yes)


def dbshell_task(sel, command=None, tty=False, yes=False) -> int:
    """`manage.py dbshell` with the release's database settings, as the app user."""
    return _session(sel, "dbshell", lambda cfg: opcmd.dbshell(cfg.deploy_to, command), tty, yes)


def ssh_task(sel, command=None, tty=False, yes=False) -> int:
    """A login shell of the ssh user in DEPLOY_TO/current (sudo from there as needed)."""
    build = lambda cfg: opcmd.login(cfg.deploy_to, command)  # noqa: E731
    return _session(sel, "ssh", build, tty, yes, app=False)


def _session(sel, action: str, build, tty: bool, yes: bool, app: bool = True) -> int:
    """One host's session; a pty when this side has a terminal or `--tty` asks (as ssh)."""
    with open_session(sel, action) as sess:
        cfg = sess.cfg
        guards.confirm(cfg, action, yes)
        host = sess.hosts[0]
        sess.connect([host])
        user = cfg.app_user if app else None
        pty = tty or sys.stdin.isatty()
        return run_attached(host, action, build(cfg), user, pty=pty)


def _words(args) -> list[str]:
    """The command's words: a list from `mlctl` (after an optional `--`), one string from
    `fab`/`inv` (`--args "check --deploy"`)."""
    if args is None:
        return []
    words = shlex.split(args) if isinstance(args, str) else list(args)
    return words[1:] if words[:1] == ["--"] else words
