# ruff: noqa: F811 — the fixtures of test_init.py are imported by name
"""The Python a project needs (init records it, setup/deploy check it first), lock files in init,
and mlctl's host-side programs on every Python a supported host has."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlctl import remote
from mlctl.commands import probes
from mlctl.config import inventory, pyversion
from mlctl.core.errors import InventoryError, PreflightFailed
from mlctl.project import project_facts, sdist
from mlctl.tasks import init_files

from .conftest import BASE
from .test_init import git, project, run_init, startproject, stock  # noqa: F401

SUPPORTED_HOST_PYTHONS = ((3, 11), (3, 13))  # Debian 12, Debian 13


def files(**texts: str):
    return lambda rel: texts.get(rel.replace(".", "_").lstrip("_"))


@pytest.mark.parametrize(
    "texts, expected",
    [
        ({"pyproject_toml": '[project]\nrequires-python = ">=3.12"\n'}, (">=3.12", "pyproject")),
        ({"python-version": "# pyenv\n3.13.1\n"}, (">=3.13", ".python-version")),
        ({"runtime_txt": "python-3.12.4\n"}, (">=3.12", "runtime.txt")),
        ({"python-version": "system\n", "runtime_txt": "python-3.12.4\n"}, (">=3.12", "runtime")),
        ({"pyproject_toml": "[project]\nname = 'x'\n"}, None),
        ({}, None),
    ],
)
def test_the_project_says_which_python_it_needs(texts, expected):
    found = pyversion.from_project(files(**texts))
    if expected is None:
        assert found is None
    else:
        assert found[0] == expected[0] and expected[1] in found[1]


def test_the_inventory_setting_wins_over_the_project_files():
    read = files(pyproject_toml='[project]\nrequires-python = ">=3.12"\n')
    assert pyversion.needed("~=3.13.0", read) == ("~=3.13.0", "project.requires_python")
    assert pyversion.needed("", read) == (">=3.12", "requires-python in pyproject.toml")


def test_a_host_without_the_needed_python_is_named_with_what_to_do():
    need = (">=3.12", "requires-python in pyproject.toml")
    pyversion.check("h1", "3.12.0", need)
    pyversion.check("h1", "3.13.5", need)
    pyversion.check("h1", "3.11.2", None)
    with pytest.raises(PreflightFailed) as e:
        pyversion.check("h1", "3.11.2", need)
    assert str(e.value) == (
        "host h1 has Python 3.11.2; the project needs >=3.12 (requires-python in pyproject.toml)"
        " — install python3.12+ on it and set python: to it (e.g. python: /usr/bin/python3.12),"
        " or change requires-python in pyproject.toml"
    )


def test_a_bad_constraint_in_the_inventory_is_an_inventory_error(write_inventory):
    path = write_inventory(BASE.replace("  wsgi:", "  requires_python: 'three'\n  wsgi:"))
    with pytest.raises(InventoryError, match=r"environments.yaml:4: project.requires_python"):
        inventory.load(path).resolve("dev")


def test_deploy_stops_in_preflight_when_the_interpreter_is_too_old(tmp_path, mlctl):
    """A real local deploy: the commit's requires-python is read before anything is built."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "pyproject.toml").write_text('[project]\nname = "a"\nrequires-python = ">=3.99"\n')
    (repo / "requirements.txt").write_text("Django\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=t@t.invalid", "-c", "user.name=t", "commit", "-qm", "c")
    inv = tmp_path / "environments.yaml"
    inv.write_text(
        BASE.replace("  name: app\n", "  name: app\n  source: {repo: repo}\n").replace(
            "        deploy_to: ./var/dev\n",
            f"        deploy_to: ./var/dev\n        service: pidfile\n"
            f"        python: {sys.executable}\n",
        )
    )
    p = mlctl("--inventory", str(inv), "dev", "deploy")
    assert p.returncode == PreflightFailed.exit_code, p.stderr
    assert re.search(
        r"error: host localhost has Python 3\.\d+\.\d+; the project needs >=3\.99 "
        r"\(requires-python in pyproject\.toml\)",
        p.stderr,
    ), p.stderr
    assert not list((tmp_path / "var/dev").glob("releases/*"))
    assert not list((tmp_path / "var/dev").glob("venvs/*"))


# ---------------------------------------------------------------- init


def test_init_uses_a_uv_lock_and_never_writes_unpinned_requirements(tmp_path, stock, run_init):
    project = tmp_path / "mysite"
    shutil.copytree(stock, project)
    git(project, "init", "-q", "-b", "main")
    (project / "pyproject.toml").write_text(
        '[project]\nname = "mysite"\nversion = "1"\nrequires-python = ">=3.12"\n'
        'dependencies = ["Django>=5.2,<6", "gunicorn", "psycopg[binary]"]\n'
    )
    (project / "uv.lock").write_text(
        'version = 1\n[[package]]\nname = "django"\n[[package]]\nname = "gunicorn"\n'
        '[[package]]\nname = "psycopg"\n'
    )
    p = run_init(str(project))
    assert p.returncode == 0, p.stderr
    assert not (project / "requirements.txt").exists()
    data = yaml.safe_load((project / "environments.yaml").read_text())
    assert data["project"]["requirements"] == "uv.lock"
    assert data["project"]["requires_python"] == ">=3.12"
    assert "requirements uv.lock (installed exactly as locked)" in p.stderr
    assert "add gunicorn" not in p.stderr and "add psycopg" not in p.stderr
    # dev runs an interpreter of this machine that fits (pyenv's 3.12/3.13 here), not python3.
    dev_python = data["environments"]["dev"]["python"]
    assert sdist.version_of(dev_python) >= "3.12", dev_python


def test_init_finds_a_lock_at_the_repository_root_and_names_poetry_s_limits(tmp_path, stock):
    root = tmp_path / "repo"
    root.mkdir()
    project = startproject(root, stock)  # manage.py in repo/mysite, git at repo/mysite
    git(root, "init", "-q", "-b", "main")
    shutil.rmtree(project / ".git")
    (root / "poetry.lock").write_text('[[package]]\nname = "django"\n')
    found = project_facts.inspect(project)
    assert found.requirements == "../poetry.lock" and found.requirements_text is None
    assert any("poetry export -f requirements.txt" in n for n in found.notes)
    assert any("the requirements name no gunicorn: mlctl installs" in n for n in found.notes)
    assert any("add psycopg[binary] to the project's dependencies" in n for n in found.notes)


def test_init_records_no_python_when_the_project_states_none(project):
    text = init_files.render_files(project_facts.inspect(project))["environments.yaml"]
    assert "# requires_python: '>=3.12'  # none stated by the project" in text


# ---------------------------------------------------------------- host-side programs


def host_programs() -> dict[str, str]:
    """Every program mlctl runs with a host's interpreter (or a venv made from it)."""
    folder = Path(remote.__file__).parent
    out = {f"remote/{p.stem}": remote.source(p.stem) for p in folder.glob("*.py")}
    del out["remote/__init__"]
    out["probes.program"] = probes.program().decode()
    out["probes.DJANGO_PROBE"] = probes.DJANGO_PROBE
    assert {"remote/facts", "remote/build", "remote/health"} <= set(out)
    return out


@pytest.mark.parametrize("version", SUPPORTED_HOST_PYTHONS)
def test_host_side_code_parses_on_every_supported_host_python(version):
    for name, code in host_programs().items():
        try:
            ast.parse(code, feature_version=version)
        except SyntaxError as e:
            pytest.fail(f"{name} does not parse on Python {version}: {e}")


@pytest.mark.parametrize("version", ["3.11", "3.13"])
def test_host_side_code_compiles_with_each_interpreter_found_here(version, tmp_path):
    python = sdist.find_interpreter(version)
    if python is None:
        pytest.skip(f"no python{version} on this machine")
    for name, code in host_programs().items():
        path = tmp_path / (name.replace("/", "_") + ".py")
        path.write_text(code)
        p = subprocess.run([python, "-m", "py_compile", str(path)], capture_output=True, text=True)
        assert p.returncode == 0, f"{name} on {python}: {p.stderr}"


def test_facts_run_on_each_supported_interpreter_found_here(tmp_path):
    """The facts program itself, run by each interpreter (no deploy tree yet)."""
    for version in ("3.11", "3.13"):
        python = sdist.find_interpreter(version)
        if python is None:
            continue
        p = subprocess.run(
            [python, "-c", remote.source("facts"), str(tmp_path / "none"), "DEBUG"],
            capture_output=True,
            text=True,
        )
        assert p.returncode == 0, p.stderr
        assert f'"python_version": "{version}.' in p.stdout


@pytest.mark.parametrize("ci", ["github", "gitlab"])
def test_ci_installs_a_uv_lock_through_uv_never_unpinned(project, ci):
    (project / "requirements.txt").unlink()
    (project / "pyproject.toml").write_text('[project]\nname = "mysite"\nversion = "1"\n')
    (project / "uv.lock").write_text('version = 1\n[[package]]\nname = "gunicorn"\n')
    out = init_files.render_files(project_facts.inspect(project), ci=ci)
    text = out[".github/workflows/deploy.yml" if ci == "github" else ".gitlab-ci.yml"]
    yaml.safe_load(text)
    assert "pip install -r uv.lock" not in text and "requirements.txt" not in text
    assert (
        text.count("uv export --frozen --no-emit-project --project . -o requirements-ci.txt") == 2
    )
