"""The world the battery runs in: one scratch repository of the example app, one inventory whose
`test` environment is all three hosts (h2 is "host 2 of 3"), and helpers to run mlctl and to
look at the hosts. The session-wide expectations (which release serves, the canary checksums,
snapshots that must survive) live here and are checked by invariants.py after every case.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shlex
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from tests.integration.helpers import git, make_repo

D = "/srv/djangoapp"
CANARY_ROWS = 50
CANARY_SUM = (
    "select md5(coalesce(string_agg(id::text || ':' || body, ',' order by id), '')) "
    "from rel_canary"
)


class World:
    def __init__(self, farm, tmp: Path):
        self.farm = farm
        self.tmp = tmp
        self.hosts = list(farm.hosts)
        self.repo = make_repo(tmp / "repo")
        self.inv = tmp / "environments.yaml"
        self.log_dir = tmp / "logs"
        self.good: str = ""  # the release every host must serve after a case
        self.snapshots: dict[str, str] = {}  # release id -> its before-migrate snapshot file
        self.canary: dict[str, str] = {}  # host address -> checksum of the canary table
        self.case = ""
        self.history_mark: dict[str, int] = {}
        self.unfinished_ok = False  # a case that SIGKILLs mlctl leaves a "started" record alone
        self.write_inventory()

    # ------------------------------------------------------------ inventory and mlctl

    def inventory_data(self) -> dict:
        data = yaml.safe_load(Path(self.farm.inventory_path).read_text())
        data["project"]["source"] = {"repo": str(self.repo), "subdir": ""}
        addresses = [h.address for h in self.hosts]
        data["environments"] = {
            "test": {"hosts": addresses, "timeouts": {"connect": 10.0}},
            "live": {
                "hosts": addresses,
                "protected": True,
                "allowed_users": [getpass.getuser()],
            },
        }
        return data

    def write_inventory(self, data: dict | None = None, path: Path | None = None) -> Path:
        path = path or self.inv
        path.write_text(yaml.safe_dump(data or self.inventory_data(), sort_keys=False))
        return path

    def env(self, extra: dict | None = None) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLCTL_")}
        env.update({"MLCTL_INVENTORY": str(self.inv), "MLCTL_LOG_DIR": str(self.log_dir), "CI": ""})
        env.update(extra or {})
        return env

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "mlctl.cli", *args]

    def mlctl(self, *args: str, env: dict | None = None, timeout: float = 300, inv=None):
        """Run mlctl to completion; returns the CompletedProcess (stdout, stderr, returncode)."""
        e = self.env(env)
        if inv is not None:
            e["MLCTL_INVENTORY"] = str(inv)
        return subprocess.run(
            self.argv(*args),
            capture_output=True,
            text=True,
            env=e,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            cwd=self.tmp,
        )

    def popen(self, *args: str, env: dict | None = None) -> subprocess.Popen:
        return subprocess.Popen(
            self.argv(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(env),
            stdin=subprocess.DEVNULL,
            cwd=self.tmp,
        )

    def ok(self, *args: str, **kw) -> subprocess.CompletedProcess:
        p = self.mlctl(*args, **kw)
        assert p.returncode == 0, f"mlctl {' '.join(args)} exited {p.returncode}:\n{p.stderr}"
        return p

    def deploy_ok(self, *args: str) -> str:
        """A deploy that must succeed; it becomes the release every host must serve."""
        p = self.ok("test", "deploy", *args)
        rid = self.current(self.hosts[0])
        assert {self.current(h) for h in self.hosts} == {rid}
        if "migrating:" in p.stderr:
            self.snapshots[rid] = f"{rid}-before-migrate.dump"
        self.good = rid
        return rid

    def fails(self, *args: str, **kw) -> subprocess.CompletedProcess:
        p = self.mlctl(*args, **kw)
        assert p.returncode != 0, f"mlctl {' '.join(args)} should have failed:\n{p.stderr}"
        return p

    # ------------------------------------------------------------ hosts

    def sh(self, host, command: str, check: bool = True, timeout: float = 120) -> str:
        r = self.farm.ssh(host, command, timeout=timeout)
        if check:
            assert r.returncode == 0, f"{host}: {command}: exit {r.returncode}: {r.stderr}"
        return r.stdout.strip()

    def each(self, fn, hosts=None) -> list:
        hosts = self.hosts if hosts is None else hosts
        with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
            return list(pool.map(fn, hosts))

    def psql(self, host, sql: str) -> str:
        inner = f"cd /; set -a; . {D}/shared/.env; set +a; psql -tAX -v ON_ERROR_STOP=1 -c " + (
            shlex.quote(sql)
        )
        return self.sh(host, "sh -c " + shlex.quote(inner))

    def current(self, host) -> str:
        return self.sh(host, f"readlink {D}/current").rsplit("/", 1)[-1]

    def releases(self, host) -> list[str]:
        return self.sh(host, f"ls {D}/releases").split()

    def history_lines(self, host) -> list[str]:
        return self.sh(host, f"cat {D}/.mlctl/history.jsonl 2>/dev/null || true").splitlines()

    def canary_sum(self, host) -> str:
        return self.psql(host, CANARY_SUM)

    # ------------------------------------------------------------ repository

    def head(self) -> str:
        return git(self.repo, "rev-parse", "HEAD")

    def commit(self, files: dict[str, str | None], message: str) -> str:
        """Write (or delete, for None) files in the app repository and commit them."""
        for rel, text in files.items():
            target = self.repo / rel
            if text is None:
                target.unlink(missing_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
        git(self.repo, "add", "-A")
        git(self.repo, "commit", "-qm", message, "--allow-empty")
        return self.head()

    @contextlib.contextmanager
    def changed(self, files: dict[str, str | None], message: str):
        """Commit a change for the case; commit the old contents back afterwards."""
        before = {rel: _read(self.repo / rel) for rel in files}
        commit = self.commit(files, message)
        try:
            yield commit
        finally:
            self.commit(before, f"revert: {message}")

    def read(self, rel: str) -> str:
        return (self.repo / rel).read_text()

    # ------------------------------------------------------------ lifecycle

    def bootstrap(self) -> None:
        self.ok("test", "setup", timeout=600)
        self.deploy_ok()
        for h in self.hosts:
            self.psql(
                h,
                "create table if not exists rel_canary (id int primary key, body text not null);"
                f"insert into rel_canary select i, md5(i::text) from generate_series(1, "
                f"{CANARY_ROWS}) i on conflict do nothing",
            )
        self.canary = {h.address: self.canary_sum(h) for h in self.hosts}

    def begin(self, name: str) -> None:
        self.case = name
        self.unfinished_ok = False
        self.history_mark = {
            h.address: n
            for h, n in zip(
                self.hosts, self.each(lambda h: len(self.history_lines(h))), strict=True
            )
        }


def _read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def kill_group(proc: subprocess.Popen, sig=signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, sig)


def wait_for_line(proc: subprocess.Popen, needle: str, timeout: float = 120) -> list[str]:
    """Read proc's stderr until a line contains `needle`; return the lines read."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    for line in proc.stderr:
        lines.append(line)
        if needle in line:
            return lines
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"never saw {needle!r}:\n{''.join(lines)}")
