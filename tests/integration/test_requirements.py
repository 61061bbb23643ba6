"""What a release's venv installs, on real hosts: requirements spread over included files, a
package that ships only a source distribution, a uv.lock installed exactly as locked, and the
Python version checked before anything changes."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib

import pytest
import yaml
from packaging.version import Version

from mlctl.core.errors import PreflightFailed
from mlctl.project import sdist

from .helpers import D, commit_file, current, git, healthz, mlctl, new_project, ssh

pytestmark = pytest.mark.hosts

SPLIT = {
    "requirements.txt": "-r requirements/production.txt\n",
    "requirements/production.txt": "-r base.txt\ngunicorn==27.0.1\npsycopg[binary]==3.3.9\n",
    "requirements/base.txt": "Django==5.2.19\n",
}
# Locked before newer releases, so an unpinned install would get other versions than these.
# docopt ships only a source distribution: the lock has its hash, the host gets a wheel built here.
UV_PYPROJECT = """[project]
name = "djangoapp"
version = "1"
requires-python = ">=3.11"
dependencies = ["Django>=5.2,<6", "gunicorn", "psycopg[binary]>=3.2", "docopt"]

[dependency-groups]
dev = ["pytest"]
"""
LOCKED_BEFORE = "2025-06-01T00:00:00Z"


@pytest.fixture(scope="module")
def world(farm, tmp_path_factory):
    repo, inv = new_project(farm, tmp_path_factory)
    (repo / "requirements.txt").unlink()
    for rel, text in SPLIT.items():
        commit_file(repo, rel, text, f"split requirements: {rel}")
    return {"farm": farm, "repo": repo, "inv": inv, "h": farm.hosts[0]}


def venv_of_current(world) -> str:
    return ssh(world["farm"], world["h"], f"readlink {D}/current/.venv")


def freeze(world) -> dict[str, str]:
    out = ssh(world["farm"], world["h"], f"{D}/current/.venv/bin/python -m pip freeze --all")
    pins = dict(line.split("==", 1) for line in out.splitlines() if "==" in line)
    return {re.sub(r"[-_.]+", "-", k.lower()): v for k, v in pins.items()}


def tree(world) -> str:
    """What setup and deploys create on the host, to show that a refused run changed nothing."""
    return ssh(
        world["farm"],
        world["h"],
        f"ls -la --time-style=full-iso {D} {D}/releases {D}/venvs /etc/nginx/sites-enabled "
        f"2>&1; sha256sum {D}/shared/.env 2>&1 || true",
    )


def test_setup_refuses_a_host_whose_python_is_older_than_the_project_needs(world, tmp_path):
    data = yaml.safe_load(world["inv"].read_text())
    data["project"]["requires_python"] = ">=3.12"
    strict = tmp_path / "environments.yaml"
    strict.write_text(yaml.safe_dump(data, sort_keys=False))
    before = tree(world)
    p = mlctl(strict, "test", "setup", check=False)
    assert p.returncode == PreflightFailed.exit_code, p.stderr
    line = p.stderr.strip().splitlines()[-1]
    assert re.fullmatch(
        rf"error: host {re.escape(world['h'].address)} has Python 3\.11\.\d+; the project needs "
        r">=3\.12 \(project\.requires_python\) — install python3\.12\+ on it and set python: to "
        r"it \(e\.g\. python: /usr/bin/python3\.12\), or change project\.requires_python",
        line,
    ), line
    assert tree(world) == before


def test_split_requirements_deploy_with_every_included_file(world):
    mlctl(world["inv"], "test", "setup")
    p = mlctl(world["inv"], "test", "deploy")
    assert "from requirements.txt and 2 included file(s)" in p.stderr
    assert healthz(world["h"].address)["status"] == "ok"
    pins = freeze(world)
    assert pins["django"] == "5.2.19" and pins["gunicorn"] == "27.0.1"
    world["split_venv"] = venv_of_current(world)


def test_a_package_added_to_an_included_file_builds_a_new_venv_with_it(world):
    """docopt 0.6.2 ships only a source distribution: it is built here with python3.11."""
    if sdist.find_interpreter("3.11") is None:
        pytest.skip("no python3.11 on this machine to build the hosts' wheel with")
    commit_file(world["repo"], "requirements/base.txt", "Django==5.2.19\ndocopt==0.6.2\n", "docopt")
    p = mlctl(world["inv"], "test", "deploy")
    assert "reused" not in p.stderr, p.stderr
    venv = venv_of_current(world)
    assert venv != world["split_venv"]
    assert freeze(world)["docopt"] == "0.6.2"
    key = venv.rsplit("/", 1)[-1]
    assert ssh(world["farm"], world["h"], f"ls {D}/wheelhouse/{key}").count(
        "docopt-0.6.2-py2.py3-none-any.whl"
    )
    # An unchanged closure reuses that venv.
    commit_file(world["repo"], "notes/README", "no code change\n", "docs")
    again = mlctl(world["inv"], "test", "deploy")
    assert f"venv {key} reused" in again.stderr
    assert venv_of_current(world) == venv


def test_deploy_refuses_a_commit_whose_requires_python_the_host_lacks(world):
    repo = world["repo"]
    before = current(world["farm"], world["h"])
    commit_file(repo, "pyproject.toml", '[project]\nrequires-python = ">=3.12"\n', "py3.12")
    p = mlctl(world["inv"], "test", "deploy", check=False)
    assert p.returncode == PreflightFailed.exit_code, p.stderr
    assert re.search(
        r"has Python 3\.11\.\d+; the project needs >=3\.12 \(requires-python in pyproject\.toml\)",
        p.stderr,
    ), p.stderr
    assert current(world["farm"], world["h"]) == before
    git(repo, "rm", "-q", "pyproject.toml")
    git(repo, "commit", "-qm", "back to 3.11")


def test_a_uv_lock_installs_exactly_the_locked_versions(world):
    if sdist.find_interpreter("3.11") is None:
        pytest.skip("no python3.11 on this machine to build the hosts' docopt wheel with")
    repo = world["repo"]
    uv = shutil.which("uv") or sdist._bundled_uv()
    (repo / "pyproject.toml").write_text(UV_PYPROJECT)
    subprocess.run(
        [uv, "lock", "-q", "--exclude-newer", LOCKED_BEFORE], cwd=repo, check=True, timeout=300
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "uv project")
    lock = tomllib.loads((repo / "uv.lock").read_text())
    locked = {
        p["name"]: p["version"] for p in lock["package"] if p.get("source", {}).get("registry")
    }
    data = yaml.safe_load(world["inv"].read_text())
    data["project"]["requirements"] = "uv.lock"
    world["inv"].write_text(yaml.safe_dump(data, sort_keys=False))

    p = mlctl(world["inv"], "test", "deploy")
    assert "from uv.lock (uv export)" in p.stderr
    assert healthz(world["h"].address)["status"] == "ok"
    installed = {k: v for k, v in freeze(world).items() if k not in ("pip", "setuptools", "wheel")}
    # Every default package at its locked version; the dev group (pytest and its own) not at all.
    runtime = {k: v for k, v in locked.items() if k in installed}
    assert installed == runtime
    assert {"django", "gunicorn", "psycopg", "psycopg-binary", "sqlparse", "docopt"} <= set(
        installed
    )
    assert "pytest" in locked and "pytest" not in installed
    # What the lock says, not the newest 5.2 that the pyproject's range allows.
    assert Version(installed["django"]) < Version("5.2.19")
