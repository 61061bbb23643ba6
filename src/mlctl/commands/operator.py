"""The operator commands' builders: `manage`, `shell`, `dbshell` and `ssh` in the current release.

Each runs in DEPLOY_TO/current with the shared .env exported (commands/db.py's rules), so a
management command sees what the app sees. Extra variables (`manage --env KEY=VALUE`) reach the
host on stdin, read by the same rules: a value such as DJANGO_SUPERUSER_PASSWORD never stands on
a command line or in the host's process list.
"""

from __future__ import annotations

from mlctl.commands.db import _EXPORT_LINES, load_env
from mlctl.config.layout import Layout
from mlctl.core.errors import UsageError
from mlctl.core.shell import ENV_NAME, Cmd, Raw

# The .env loop reading stdin (fd 0) instead of a file: `/dev/stdin` cannot be reopened by the
# app user when it is the login user's pipe.
_EXPORT_STDIN = Raw(_EXPORT_LINES + "&0")


def current_dir(deploy_to: str) -> str:
    return Layout(deploy_to).current


def in_current(deploy_to: str, cmd: Cmd, extra_env: bool = False) -> Cmd:
    """`cd DEPLOY_TO/current && <export .env> [&& <export stdin>] && exec CMD`."""
    parts = [Cmd.of("cd", current_dir(deploy_to)), Raw("&&"), load_env("./.env"), Raw("&&")]
    if extra_env:
        parts += [_EXPORT_STDIN, Raw("&&")]
    return Cmd((*parts, Raw("exec"), cmd))


def manage(deploy_to: str, args: list[str] | tuple, extra_env: bool = False) -> Cmd:
    """`manage.py ARGS` with the release's venv; `extra_env`: more KEY=VALUE lines on stdin."""
    return in_current(deploy_to, Cmd.of("./.venv/bin/python", "manage.py", *args), extra_env)


def django_shell(deploy_to: str, command: str = "") -> Cmd:
    """`manage.py shell` (interactive), or `shell -c CODE`."""
    return manage(deploy_to, ["shell", *(["-c", command] if command else [])])


def dbshell(deploy_to: str, command: str = "") -> Cmd:
    """`manage.py dbshell` (psql or sqlite3 as the settings say); `command` is passed to the
    client as `-c` (psql) after `--`."""
    return manage(deploy_to, ["dbshell", *(["--", "-c", command] if command else [])])


def login(deploy_to: str, command: str = "") -> Cmd:
    """The login user's shell in the release directory: `$SHELL -l`, or `$SHELL -lc COMMAND`."""
    shell = Raw('"${SHELL:-/bin/sh}" -l')
    run = Cmd((Raw("exec"), shell, *([Raw("-c"), Cmd.of(command)] if command else [])))
    return Cmd((Cmd.of("cd", current_dir(deploy_to)), Raw("&&"), run))


def env_lines(pairs: list[str], environ) -> tuple[bytes, list[str]]:
    """`--env KEY=VALUE` or `--env KEY` (the value from this machine's environment) → the
    lines sent on stdin, and the values to mask."""
    lines, values = [], []
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not ENV_NAME.match(key):
            raise UsageError(f"--env {pair!r}: expected KEY=VALUE or KEY")
        if not eq:
            if key not in environ:
                raise UsageError(f"--env {key}: not set in this environment", f"export {key}")
            value = environ[key]
        if "\n" in value:
            raise UsageError(f"--env {key}: a value cannot hold a newline")
        lines.append(f"{key}={value}\n")
        values.append(value)
    return "".join(lines).encode(), values


def command_name(args: list[str] | tuple) -> str:
    """The management command of `manage ARGS`: its first word, as manage.py reads it."""
    return args[0] if args else ""
