"""The two later peers, Capistrano 3 (Debian's package) and pyinfra (its own venv), run the same
deploy as the floor and Ansible: bench/capistrano (Capfile, config/deploy.rb, the stage `bench`)
and bench/pyinfra (inventory.py, deploy.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

from bench.tools import BENCH, DEPLOY_TO, UNIT, BenchError, Run, Workspace, timed

PYINFRA_VENV = BENCH / ".venv-pyinfra"


class Peer:
    """What the two share: the environment naming hosts, keys, the commit and the layout."""

    name = ""

    def __init__(self, ws: Workspace, pyver: str = "", platforms: list[str] | None = None):
        self.ws = ws
        self.pyver = pyver
        self.platforms = platforms or []
        self.dir = ws.path / self.name
        self.dir.mkdir(parents=True, exist_ok=True)

    def env(self, n: int, commit: str) -> dict:
        farm = self.ws.farm
        return {
            "BENCH_HOSTS": " ".join(h.address for h in self.ws.hosts(n)),
            "IDENTITY": str(farm.identity_file),
            "KNOWN_HOSTS": str(farm.known_hosts),
            "REPO": str(self.ws.repo),
            "COMMIT": commit,
            "RELEASE_ID": self.ws.release_id(commit),
            "WORK": str(self.dir),
            "DEPLOY_TO": DEPLOY_TO,
            "UNIT": UNIT,
            "PYVER": self.pyver,
            "PLATFORMS": " ".join(self.platforms),
        }


class Capistrano(Peer):
    name = "capistrano"

    @staticmethod
    def install() -> str:
        """Capistrano's version; the package must be there (apt-get install capistrano)."""
        if not shutil.which("cap"):
            raise BenchError("Capistrano is missing: apt-get install -y capistrano")
        out = subprocess.run(["cap", "--version"], capture_output=True, text=True, check=True)
        found = re.search(r"Capistrano Version: (\S+)", out.stdout)  # "... (Rake Version: 13)"
        return found.group(1) if found else out.stdout.strip()

    def deploy(self, n: int, commit: str, cold: bool = False, ok=(0,)) -> Run:
        argv = ["cap", "bench", "deploy"]
        return timed(argv, env=self.env(n, commit), cwd=BENCH / "capistrano", ok=ok)

    @staticmethod
    def round_trips(run: Run) -> int:
        """Remote commands per host: airbrussh prints each once as `      01 <command>` (all
        hosts' runs under it); the local `git archive` and test/capture (not printed, the
        health polls among them) are not counted."""
        return len(re.findall(r"^ {6}\d\d (?!git -C)", run.stdout, re.M))


class Pyinfra(Peer):
    name = "pyinfra"

    @staticmethod
    def install() -> str:
        """Create bench/.venv-pyinfra with pyinfra unless it is there; its version."""
        exe = PYINFRA_VENV / "bin" / "pyinfra"
        if not exe.exists():
            print("installing pyinfra into bench/.venv-pyinfra …", flush=True)
            subprocess.run([sys.executable, "-m", "venv", str(PYINFRA_VENV)], check=True)
            pip = [str(PYINFRA_VENV / "bin" / "pip"), "install", "-q"]
            subprocess.run(pip + ["--disable-pip-version-check", "pyinfra"], check=True)
        out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
        return out.stdout.split()[-1].lstrip("v")

    def deploy(self, n: int, commit: str, cold: bool = False, ok=(0,)) -> Run:
        here = BENCH / "pyinfra"
        argv = [str(PYINFRA_VENV / "bin" / "pyinfra"), "--yes"]
        argv += [str(here / "inventory.py"), str(here / "deploy.py")]
        return timed(argv, env=self.env(n, commit), cwd=here, ok=ok)

    @staticmethod
    def round_trips(run: Run) -> int:
        """Operations (each one or more commands, after the facts it reads)."""
        return (run.stdout + run.stderr).count("--> Starting operation:")
