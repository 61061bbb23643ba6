"""Database snapshots behind one interface: PostgreSQL (pg_dump -Fc) and SQLite (online backup).

Credentials come from the shared .env exported into the environment (PG* variables), so no
password ever appears on a command line or in the host's process list.
"""

from __future__ import annotations

from mlctl.core.errors import UsageError
from mlctl.core.shell import Cmd, Raw
from mlctl.remote import envfile

EXTENSIONS = {"postgresql": "dump", "sqlite": "sqlite3"}

_SQLITE_BACKUP = (
    "import sqlite3, sys; src = sqlite3.connect(sys.argv[1]); dst = sqlite3.connect(sys.argv[2]); "
    "src.backup(dst); dst.close(); src.close()"
)
_SQLITE_VERIFY = (
    "import sqlite3, sys; c = sqlite3.connect('file:' + sys.argv[1] + '?mode=ro', uri=True); "
    "r = c.execute('pragma integrity_check').fetchone()[0]; "
    "n = c.execute(\"select count(*) from sqlite_master where type='table'\").fetchone()[0]; "
    "sys.exit(0 if r == 'ok' and n > 0 else 1)"
)


# Names, users and paths in the shared .env are not secret; every other value is treated as one.
ENV_PUBLIC = envfile.PUBLIC

# The shell half of remote/envfile.py's rules (read them there): blanks trimmed, an `export `
# prefix dropped, lines whose name is not a shell name skipped, one pair of quotes removed.
_EXPORT_LINES = (
    'while IFS= read -r _l || [ -n "$_l" ]; do'
    ' _l="${_l#"${_l%%[![:space:]]*}"}";'
    ' case "$_l" in "export "*) _l="${_l#export }"; _l="${_l#"${_l%%[![:space:]]*}"}" ;; esac;'
    ' case "$_l" in *=*) ;; *) continue ;; esac;'
    ' _k="${_l%%=*}"; _k="${_k%"${_k##*[![:space:]]}"}"; _v="${_l#*=}";'
    ' case "$_k" in ""|[0-9]*|*[!A-Za-z0-9_]*) continue ;; esac;'
    ' _v="${_v#"${_v%%[![:space:]]*}"}"; _v="${_v%"${_v##*[![:space:]]}"}";'
    ' case "$_v" in \\"*\\"|\\\'*\\\') _v="${_v#?}"; _v="${_v%?}" ;; esac;'
    ' export "$_k=$_v"; done <'
)


def load_env(env_file: str) -> Cmd:
    """Export the .env's KEY=VALUE lines without evaluating them.

    The file holds plain values as the app reads them, not shell: sourcing it would run a value's
    `$(...)`, backticks or `; cmd`. Each line is exported as one word, so a value stays data.
    """
    return Cmd((Raw(_EXPORT_LINES), Cmd.of(env_file)))


def _with_env(env_file: str, cmd: Cmd) -> Cmd:
    return Cmd((load_env(env_file), Raw("&&"), cmd))


def snapshot(
    engine: str,
    env_file: str,
    target: str,
    sqlite_path: str = "",
    python: str = "python3",
    options: list | tuple = (),
) -> Cmd:
    """Dump the database into `target` and verify it (non-empty, restorable listing).

    `options`: database.dump_options, added to pg_dump (validation.py keeps them to options
    that leave the format and the file to mlctl)."""
    if engine == "postgresql":
        dump = Cmd.of("pg_dump", "-Fc", "--no-owner", "--no-acl", *options, "-f", target)
        return _with_env(env_file, dump).then(verify(engine, target))
    if engine == "sqlite":
        return Cmd.of(python, "-c", _SQLITE_BACKUP, sqlite_path, target).then(
            verify(engine, target, python)
        )
    raise UsageError(f"snapshots of {engine} are not supported")


def verify(engine: str, target: str, python: str = "python3") -> Cmd:
    if engine == "postgresql":
        return Cmd.of("test", "-s", target).then(Cmd.of("pg_restore", "--list", target).quiet())
    return Cmd.of("test", "-s", target).then(Cmd.of(python, "-c", _SQLITE_VERIFY, target))


def restore(
    engine: str, env_file: str, source: str, sqlite_path: str = "", python: str = "python3"
) -> Cmd:
    """Replace the database's contents with a snapshot, in one transaction where possible."""
    if engine == "postgresql":
        # Drop the schema's objects first so tables created after the snapshot go away too.
        wipe = Cmd(
            (
                Cmd.of(
                    "psql",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-q",
                    "-c",
                    "DROP SCHEMA public CASCADE; CREATE SCHEMA public;",
                ),
            )
        )
        load = Cmd.of(
            "pg_restore",
            "--no-owner",
            "--no-acl",
            "--single-transaction",
            "-d",
            "postgresql:///",
            source,
        )
        return verify(engine, source).then(_with_env(env_file, wipe.then(load)))
    if engine == "sqlite":
        return verify(engine, source, python).then(
            Cmd.of(python, "-c", _SQLITE_BACKUP, source, sqlite_path)
        )
    raise UsageError(f"snapshots of {engine} are not supported")
