"""Shared helpers of the integration tests: the app repository, inventories, running mlctl."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "examples" / "djangoapp"

MIGRATION_0003 = """from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("notes", "0002_seed_notes")]
    operations = [migrations.AddField("note", "pinned", models.BooleanField(default=False))]
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def make_repo(path: Path) -> Path:
    """A git repository holding the example app at its root (v1)."""
    shutil.copytree(
        APP,
        path,
        ignore=shutil.ignore_patterns(
            "__pycache__", "db.sqlite3", "staticfiles", "media", ".env", "REVISION"
        ),
    )
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "tests@mlctl.invalid")
    git(path, "config", "user.name", "tests")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "v1")
    return path


def commit_file(repo: Path, relpath: str, text: str, message: str) -> str:
    target = repo / relpath
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD")


def add_pinned_field(repo: Path) -> str:
    """v2: a model field and its migration."""
    models = (repo / "notes" / "models.py").read_text()
    if "pinned" not in models:
        models = models.replace(
            "    created = ",
            "    pinned = models.BooleanField(default=False)\n" "    created = ",
            1,
        )
        (repo / "notes" / "models.py").write_text(models)
    return commit_file(repo, "notes/migrations/0003_note_pinned.py", MIGRATION_0003, "v2")


def write_inventory(farm, repo: Path, path: Path, **env_overrides) -> Path:
    data = yaml.safe_load(Path(farm.inventory_path).read_text())
    data["project"]["source"] = {"repo": str(repo), "subdir": ""}
    # The hosts share this machine's kernel, so their load average is the whole machine's (other
    # test runs included): a load warning here would be noise, not a finding about the host.
    data["defaults"]["thresholds"] = {"load_per_cpu": 100.0}
    for env, extra in env_overrides.items():
        data["environments"].setdefault(env, {}).update(extra)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run(
    argv, cwd: Path | None = None, env: dict | None = None, timeout: float = 600, check=True
) -> subprocess.CompletedProcess:
    """A command, its output captured; AssertionError with that output when it fails."""
    p = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=env or os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check and p.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, argv))} exited {p.returncode}:\n{p.stdout}\n{p.stderr}"
        )
    return p


def mlctl(
    inventory: Path, *args: str, env: dict | None = None, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess:
    full_env = {
        **os.environ,
        "MLCTL_INVENTORY": str(inventory),
        "MLCTL_CONFIRM": "live",
        **(env or {}),
    }
    argv = [sys.executable, "-m", "mlctl.cli", *args]
    return run(argv, env=full_env, timeout=timeout, check=check)


def mlctl_popen(inventory: Path, *args: str, **env: str) -> subprocess.Popen:
    """A long-running mlctl (follow, watch) to be stopped with a signal; text pipes."""
    return subprocess.Popen(
        [sys.executable, "-m", "mlctl.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MLCTL_INVENTORY": str(inventory), **env},
    )


def ssh(farm, host, command: str) -> str:
    r = farm.ssh(host, command)
    assert r.returncode == 0, f"{host}: {command}: {r.stderr}"
    return r.stdout.strip()


def healthz(address: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(f"http://{address}/healthz", timeout=10) as r:
        return json.loads(r.read())


D = "/srv/djangoapp"
# The app slot nginx sends to (gunicorn-djangoapp@blue or @green), as a shell word for ssh().
LIVE_UNIT = (
    "gunicorn-djangoapp@$(sed -n 's/.*gunicorn-djangoapp-\\([a-z]*\\)\\.sock.*/\\1/p'"
    " /etc/nginx/mlctl/djangoapp.upstream.conf)"
)


def new_project(farm, tmp_path_factory, **env_overrides) -> tuple[Path, Path]:
    """A fresh app repository and an inventory pointing the farm's environments at it."""
    repo = make_repo(tmp_path_factory.mktemp("app") / "repo")
    inv = write_inventory(
        farm, repo, tmp_path_factory.mktemp("inv") / "environments.yaml", **env_overrides
    )
    return repo, inv


def current(farm, host) -> str:
    """The release id `current` points to on a host."""
    return ssh(farm, host, f"readlink {D}/current").split("/")[-1]


def psql(farm, host, sql: str) -> str:
    """Run SQL as the app's database role, credentials read from the shared .env on the host."""
    import shlex

    inner = f"set -a; . {D}/shared/.env; set +a; psql -tAX -c {shlex.quote(sql)}"
    return ssh(farm, host, "sh -c " + shlex.quote(inner))


# ---------------------------------------------------- a local PostgreSQL server (dev)

PG_BIN = Path("/usr/lib/postgresql")


def pg_tool(name: str) -> str:
    found = sorted(PG_BIN.glob(f"*/bin/{name}")) or [Path(shutil.which(name) or name)]
    return str(found[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_postgres(*argv: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True, **kw)


@contextlib.contextmanager
def local_postgres(role: str, database: str, password: str):
    """A throwaway PostgreSQL server on 127.0.0.1:PORT (yielded) with `role` owning `database`.

    Skips the test (fails under CI) when this machine cannot run one."""
    try:
        pwd.getpwnam("postgres")
        ready = Path(pg_tool("initdb")).exists() and os.geteuid() == 0
    except KeyError:
        ready = False
    if not ready:
        why = "needs PostgreSQL's server binaries, a postgres user and root (to run them as it)"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    data = Path(tempfile.mkdtemp(prefix="mlctl-devpg-"))
    shutil.chown(data, "postgres")
    port = free_port()
    cluster = data / "cluster"
    as_postgres(pg_tool("initdb"), "-D", str(cluster), "-A", "trust", "-U", "postgres",
                capture_output=True)  # fmt: skip
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"
    as_postgres(pg_tool("pg_ctl"), "-D", str(cluster), "-o", options, "-l", str(data / "log"),
                "-w", "start", capture_output=True)  # fmt: skip
    try:
        local_psql(port, "postgres", "postgres", f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        local_psql(port, "postgres", "postgres", f"CREATE DATABASE {database} OWNER {role}")
        yield port
    finally:
        as_postgres(pg_tool("pg_ctl"), "-D", str(cluster), "-m", "immediate", "stop",
                    capture_output=True)  # fmt: skip
        shutil.rmtree(data, ignore_errors=True)


def local_psql(port: int, user: str, db: str, sql: str) -> str:
    return subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", user, "-d", db, "-tAXc", sql],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
