"""The three ways to deploy (mlctl, the floor, Ansible) and the app repository they deploy."""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.integration.helpers import commit_file, git, make_repo

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
MLCTL = Path(sys.executable).with_name("mlctl")
ANSIBLE_VENV = BENCH / ".venv-ansible"
ENV = "test"  # every inventory names its environment `test`: the hosts' marker stays valid
DEPLOY_TO = "/srv/djangoapp"
UNIT = "gunicorn-djangoapp"


class BenchError(RuntimeError):
    pass


@dataclass
class Run:
    """One timed command."""

    seconds: float
    code: int
    stdout: str
    stderr: str
    cpu: float = 0.0  # control-side CPU seconds of the command and its children
    log_dir: Path | None = None
    records: list = field(default_factory=list)

    def remote_records(self) -> list[dict]:
        """Journal records of remote steps (a host and a command), in order."""
        return [r for r in self.records if r.get("host") and "command" in r]

    def per_host(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.remote_records():
            out[r["host"]] = out.get(r["host"], 0) + 1
        return out


def children_cpu() -> float:
    """User + system CPU seconds of every child this process has waited for."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(argv: list[str], env: dict | None = None, cwd: Path | None = None, ok=(0,)) -> Run:
    cpu = children_cpu()
    start = time.perf_counter()
    p = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        timeout=900,
    )
    run = Run(time.perf_counter() - start, p.returncode, p.stdout, p.stderr)
    run.cpu = children_cpu() - cpu
    if p.returncode not in ok:
        tail = "\n".join((p.stdout + p.stderr).strip().splitlines()[-25:])
        raise BenchError(f"{' '.join(map(str, argv))} exited {p.returncode}:\n{tail}")
    return run


# ---------------------------------------------------------------- the app and the inventories


class Workspace:
    """Scratch dir: the app's git repository, one inventory per host count, logs, mlctl state."""

    def __init__(self, path: Path, farm):
        self.path = path
        self.farm = farm
        self.repo = path / "repo"
        self.state = path / "mlctl-state"
        self.logs = path / "logs"
        self._n = 0
        self.nonce = time.strftime("%Y%m%d%H%M%S")

    def create(self) -> None:
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True)
        make_repo(self.repo)
        self.base_requirements = (self.repo / "requirements.txt").read_text()
        base = yaml.safe_load(Path(self.farm.inventory_path).read_text())
        base["project"]["source"] = {"repo": str(self.repo), "subdir": ""}
        hosts = [h.address for h in self.farm.hosts]
        for n in range(1, len(hosts) + 1):
            data = {**base, "environments": {ENV: {"hosts": hosts[:n]}}}
            self.inventory(n).write_text(yaml.safe_dump(data, sort_keys=False))

    def inventory(self, n: int) -> Path:
        return self.path / f"environments-{n}.yaml"

    def hosts(self, n: int) -> list:
        return self.farm.hosts[:n]

    def code_change(self, tag: str) -> str:
        """A new commit that changes a template and the CSS (no requirements, no migrations)."""
        self._n += 1
        css = self.repo / "notes" / "static" / "notes" / "style.css"
        with css.open("a") as fh:
            fh.write(f"/* bench {tag} {self._n} */\n")
        tpl = self.repo / "notes" / "templates" / "notes" / "base.html"
        text = re.sub(r"\n?<!-- bench .* -->\n?", "\n", tpl.read_text()).rstrip("\n")
        return commit_file(
            self.repo,
            "notes/templates/notes/base.html",
            text + f"\n<!-- bench {tag} {self._n} -->\n",
            f"bench {tag} {self._n}",
        )

    def requirements_change(self, tag: str) -> str:
        """A new commit whose requirements differ (a small pure-Python package, a fresh hash)."""
        self._n += 1
        text = self.base_requirements.rstrip("\n") + (
            f"\nsix==1.16.0\n# bench cold {tag} {self._n} {self.nonce}\n"
        )
        return commit_file(self.repo, "requirements.txt", text, f"bench cold {tag} {self._n}")

    def head(self) -> str:
        return git(self.repo, "rev-parse", "HEAD")

    def release_id(self, commit: str) -> str:
        """Same form as mlctl's (YYYYmmddHHMMSS-<commit>); unique as every run has its commit."""
        return time.strftime("%Y%m%d%H%M%S", time.gmtime()) + "-" + commit[:12]


# ---------------------------------------------------------------- mlctl


class Mlctl:
    def __init__(self, ws: Workspace):
        self.ws = ws
        self._runs = 0

    def env(self, n: int | None) -> dict:
        env = {"MLCTL_STATE_DIR": str(self.ws.state), "NO_COLOR": "1"}
        if n:
            env["MLCTL_INVENTORY"] = str(self.ws.inventory(n))
        return env

    def run(self, n: int | None, *args: str, ok=(0,)) -> Run:
        """One mlctl command, its own journal dir."""
        self._runs += 1
        log_dir = self.ws.logs / f"{self._runs:03d}-{'-'.join(args[:2])}"
        env = {**self.env(n), "MLCTL_LOG_DIR": str(log_dir)}
        run = timed([str(MLCTL), *args], env=env, cwd=self.ws.path, ok=ok)
        run.log_dir = log_dir
        journal = log_dir / "mlctl.jsonl"
        if journal.exists():
            run.records = [json.loads(line) for line in journal.read_text().splitlines()]
        return run

    def deploy(self, n: int, commit: str = "", cold: bool = False, ok=(0,)) -> Run:
        return self.run(n, ENV, "deploy", "--skip-tests", ok=ok)

    def rollback(self, n: int) -> Run:
        return self.run(n, ENV, "rollback", "--db", "code-only")


# ---------------------------------------------------------------- the floor


class Floor:
    def __init__(self, ws: Workspace, pyver: str = "", platforms: list[str] | None = None):
        self.ws = ws
        self.pyver = pyver
        self.platforms = platforms or []

    def deploy(self, n: int, commit: str, cold: bool = False, ok=(0,)) -> Run:
        env = {
            "SSH_CONFIG": str(self.ws.farm.ssh_config),
            "CONTROL_DIR": str(self.ws.path / "floor-cm"),
            "DEPLOY_TO": DEPLOY_TO,
            "UNIT": UNIT,
        }
        if cold:
            env.update(COLD="1", PYVER=self.pyver, PLATFORMS=" ".join(self.platforms))
        rid = self.ws.release_id(commit)
        argv = ["sh", str(BENCH / "floor.sh"), str(self.ws.repo), commit, rid]
        return timed(argv + [h.name for h in self.ws.hosts(n)], env=env, ok=ok)

    @staticmethod
    def round_trips(cold: bool) -> int:
        return 2 if cold else 1


# ---------------------------------------------------------------- Ansible


class Ansible:
    """ansible-core in bench/.venv-ansible, its best settings: pipelining, ControlPersist,
    forks 10, no fact gathering, the interpreter given (no discovery)."""

    def __init__(self, ws: Workspace, pyver: str = "", platforms: list[str] | None = None):
        self.ws = ws
        self.pyver = pyver
        self.platforms = platforms or []
        self.dir = ws.path / "ansible"
        self.control_dir = self.dir / "cp"

    @staticmethod
    def install() -> str:
        """Create bench/.venv-ansible with ansible-core unless it works already; its version."""
        exe = ANSIBLE_VENV / "bin" / "ansible-playbook"
        if not exe.exists():
            print("installing ansible-core into bench/.venv-ansible …", flush=True)
            subprocess.run([sys.executable, "-m", "venv", str(ANSIBLE_VENV)], check=True)
            subprocess.run(
                [
                    str(ANSIBLE_VENV / "bin" / "pip"),
                    "install",
                    "-q",
                    "--disable-pip-version-check",
                    "ansible-core",
                ],
                check=True,
            )
        out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
        return out.stdout.splitlines()[0].split("[core ")[-1].rstrip("]")

    def prepare(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.control_dir.mkdir(exist_ok=True)
        cfg = (BENCH / "ansible" / "ansible.cfg.tmpl").read_text()
        (self.dir / "ansible.cfg").write_text(
            cfg.format(
                inventory=self.inventory(1),
                work=self.dir,
                ssh_config=self.ws.farm.ssh_config,
                control_dir=self.control_dir,
            )
        )
        tmpl = (BENCH / "ansible" / "inventory.ini.tmpl").read_text()
        for n in range(1, len(self.ws.farm.hosts) + 1):
            names = "\n".join(h.name for h in self.ws.hosts(n))
            self.inventory(n).write_text(tmpl.format(hosts=names))

    def inventory(self, n: int) -> Path:
        return self.dir / f"inventory-{n}.ini"

    def deploy(self, n: int, commit: str, cold: bool = False, ok=(0,)) -> Run:
        extra = {
            "repo": str(self.ws.repo),
            "commit": commit,
            "rid": self.ws.release_id(commit),
            "work": str(self.dir),
            "deploy_to": DEPLOY_TO,
            "unit": UNIT,
            "cold": cold,
            "pyver": self.pyver,
            "platforms": " ".join(self.platforms),
        }
        argv = [
            str(ANSIBLE_VENV / "bin" / "ansible-playbook"),
            "-i",
            str(self.inventory(n)),
            str(BENCH / "ansible" / "deploy.yml"),
            "-e",
            json.dumps(extra),
        ]
        env = {"ANSIBLE_CONFIG": str(self.dir / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
        return timed(argv, env=env, ok=ok)

    @staticmethod
    def round_trips(run: Run, host: str = "h1") -> int:
        """Module executions on one host: result lines, loop items and `until` retries."""
        pat = re.compile(rf"^(ok|changed): \[{host}\]|RETRYING: \[{host}\]")
        return sum(1 for line in run.stdout.splitlines() if pat.search(line))

    def close(self) -> None:
        """End the persistent master connections (ControlPersist) this run left."""
        if not self.control_dir.is_dir():
            return
        for sock in self.control_dir.iterdir():
            subprocess.run(
                ["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "bench-master"],
                capture_output=True,
                timeout=10,
                check=False,
            )
