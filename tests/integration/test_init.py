"""`mlctl init` adopted by a fresh Django project, deployed to a real host (issue 7).

The project is made the way a user makes one: `django-admin startproject`, one app with a model and
its migration, git. After `mlctl init` only the "host lines" of the generated inventory change:
the test host, and the `known_hosts` and `identity_file` lines of `defaults:` (the generated
`user: deploy` already fits the test host). Then setup, deploy, check, a second deploy with a
migration, and rollback run on the host, and the site answers through nginx.

Packaging: the wheel and sdist built from the source carry every template, and the wheel installed
in a fresh venv runs `mlctl --help`, `--version` and `init` with no source tree around.

The host comes from a farm of its own (prefix mlinit, 198.51.100.128/26): nginx on a host serves
one default site, and the session farm's hosts serve the example app.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.hosts.farm import Farm, placed
from tests.hosts.fixtures import booted
from tests.unit.test_init import WRITTEN

from .helpers import APP, ROOT, git, run, ssh

BIN = Path(sys.executable).parent
D = "/srv/mysite"


@pytest.fixture(scope="module")
def host_farm(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("farm")
    prefix, network, _ = placed("mlinit", "198.51.100.128/26", "")
    yield from booted(Farm(1, workdir=workdir, prefix=prefix, network=network))


def mlctl_env(logs: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLCTL_")}
    env.update(MLCTL_LOG_DIR=str(logs), NO_COLOR="1", COLUMNS="200")
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def mlctl(project: Path, *args: str, check: bool = True, timeout: float = 600):
    return run(
        [sys.executable, "-m", "mlctl.cli", *args],
        project,
        mlctl_env(project.parent / "logs"),
        timeout,
        check,
    )


def manage(project: Path, *args: str):
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    return run([sys.executable, "manage.py", *args], project, env)


def commit(project: Path, message: str) -> str:
    git(project, "add", "-A")
    git(project, "commit", "-qm", message)
    return git(project, "rev-parse", "HEAD")


def make_project(parent: Path) -> Path:
    """startproject mysite + startapp shop (one model, its migration), pinned requirements, git."""
    run([BIN / "django-admin", "startproject", "mysite"], parent)
    project = parent / "mysite"
    manage(project, "startapp", "shop")
    settings = project / "mysite" / "settings.py"
    text = settings.read_text()
    assert "'django.contrib.staticfiles',\n" in text
    settings.write_text(
        text.replace(
            "'django.contrib.staticfiles',\n", "'django.contrib.staticfiles',\n    'shop',\n"
        )
    )
    (project / "shop" / "models.py").write_text(
        "from django.db import models\n\n\n"
        "class Product(models.Model):\n"
        "    name = models.CharField(max_length=100)\n"
    )
    manage(project, "makemigrations", "shop")
    assert (project / "shop" / "migrations" / "0001_initial.py").is_file()
    shutil.copy(APP / "requirements.txt", project / "requirements.txt")
    (project / ".gitignore").write_text("__pycache__/\ndb.sqlite3\nvar/\n")
    git(project, "init", "-q", "-b", "main")
    git(project, "config", "user.email", "tests@mlctl.invalid")
    git(project, "config", "user.name", "tests")
    commit(project, "startproject mysite, app shop")
    return project


def point_at_host(inventory: Path, farm) -> list[str]:
    """Edit only the host lines; return the changed lines (new text)."""
    old = inventory.read_text()
    host = farm.hosts[0].address
    new = (
        old.replace("hosts: [test1.example.internal]", f"hosts: [{host}]", 1)
        .replace("  # known_hosts: ~/.ssh/known_hosts", f"  known_hosts: {farm.known_hosts}", 1)
        .replace(
            "  # identity_file: ~/.ssh/id_ed25519", f"  identity_file: {farm.identity_file}", 1
        )
    )
    inventory.write_text(new)
    diff = difflib.ndiff(old.splitlines(), new.splitlines())
    return [line[2:] for line in diff if line.startswith("+ ")]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def current(farm) -> str:
    return ssh(farm, farm.hosts[0], f"readlink {D}/current").split("/")[-1]


@pytest.fixture(scope="module")
def world(host_farm, tmp_path_factory):
    base = tmp_path_factory.mktemp("adopt")
    project = make_project(base)
    return {"farm": host_farm, "project": project, "host": host_farm.hosts[0]}


@pytest.mark.hosts
def test_init_writes_files_and_the_inventory_validates(world):
    project = world["project"]
    p = mlctl(project, "init")
    out = p.stdout + p.stderr
    for name in WRITTEN:
        assert (project / name).is_file(), name
        assert f"wrote {name}" in out
    assert "mlctl test setup" in out and "mlctl test deploy" in out
    assert (project / "requirements.txt").read_text() == (APP / "requirements.txt").read_text()
    mlctl(project, "dev", "config")
    again = mlctl(project, "init")
    assert "nothing changed" in again.stderr and "wrote" not in again.stderr
    changed = point_at_host(project / "environments.yaml", world["farm"])
    assert len(changed) == 3, changed
    assert all(
        line.strip().startswith(("hosts:", "known_hosts:", "identity_file:")) for line in changed
    )
    mlctl(project, "test", "config")
    world["v1"] = commit(project, "Deploy with mlctl")


@pytest.mark.hosts
def test_setup_and_deploy_serve_the_site_through_nginx(world):
    project, farm, host = world["project"], world["farm"], world["host"]
    mlctl(project, "test", "setup")
    env_file = ssh(farm, host, f"cat {D}/shared/.env")
    assert "DJANGO_SETTINGS_MODULE=mysite.settings_deploy" in env_file
    started = time.monotonic()
    p = mlctl(project, "test", "deploy")
    world["deploy_seconds"] = time.monotonic() - started
    assert "pytest gate" in p.stderr or "gate" in p.stderr
    rid = current(farm)
    assert rid.endswith(world["v1"][:12])
    status, body = get(f"http://{host.address}/admin/login/")
    assert status == 200 and b"csrfmiddlewaretoken" in body
    status, body = get(f"http://{host.address}/healthz")
    assert status == 200 and json.loads(body) == {"release": rid, "database": "ok", "status": "ok"}
    status, _ = get(f"http://{host.address}/static/admin/css/base.css")
    assert status == 200
    tables = ssh(
        farm,
        host,
        "cd / && sudo -u postgres psql -tAX -d mysite -c "
        "\"select table_name from information_schema.tables where table_name='shop_product'\"",
    )
    assert tables == "shop_product"


@pytest.mark.hosts
def test_check_passes_on_the_deployed_host(world):
    # The hosts share this machine's CPUs with whatever else runs here: its load says nothing about
    # the deploy, so that one threshold is lifted (by a flag; the inventory stays as generated).
    p = mlctl(
        world["project"],
        "test",
        "check",
        "--json",
        "--set",
        "thresholds.load_per_cpu=1000",
        check=False,
    )
    report = json.loads(p.stdout)
    bad = [
        (c["name"], c["status"], c["detail"])
        for checks in report["hosts"].values()
        for c in checks
        if c["status"] != "ok"
    ]
    assert p.returncode == 0, f"mlctl test check exited {p.returncode}: {bad}\n{p.stderr}"


@pytest.mark.hosts
def test_second_deploy_with_a_migration_then_rollback(world):
    project, farm, host = world["project"], world["farm"], world["host"]
    v1 = current(farm)
    models = project / "shop" / "models.py"
    models.write_text(models.read_text() + "    price = models.IntegerField(default=0)\n")
    manage(project, "makemigrations", "shop")
    v2_commit = commit(project, "Product.price")
    mlctl(project, "test", "deploy")
    v2 = current(farm)
    assert v2 != v1 and v2.endswith(v2_commit[:12])
    columns = "select column_name from information_schema.columns where table_name='shop_product'"
    psql = f'cd / && sudo -u postgres psql -tAX -d mysite -c "{columns}"'
    assert "price" in ssh(farm, host, psql).split()
    mlctl(project, "test", "rollback")
    assert current(farm) == v1
    assert "price" not in ssh(farm, host, psql).split()
    status, body = get(f"http://{host.address}/healthz")
    assert status == 200 and json.loads(body)["release"] == v1
    assert get(f"http://{host.address}/admin/login/")[0] == 200


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dev_deploy_of_the_adopted_project_serves_locally(tmp_path):
    """`mlctl dev deploy` of the generated inventory: SQLite, gunicorn under a pidfile."""

    project = make_project(tmp_path)
    mlctl(project, "init")
    commit(project, "Deploy with mlctl")
    port = _free_port()  # not the generated port: another project may use it here
    flags = [
        "--set",
        f"bind=127.0.0.1:{port}",
        "--set",
        f"health.url=http://127.0.0.1:{port}/healthz",
    ]
    pidfile = project / "var" / "dev" / "run" / "gunicorn.pid"
    try:
        mlctl(project, "dev", "deploy", *flags)
        status, body = get(f"http://127.0.0.1:{port}/healthz")
        assert status == 200 and json.loads(body)["database"] == "ok"
        assert get(f"http://127.0.0.1:{port}/admin/login/")[0] == 200
    finally:
        if pidfile.is_file():
            pid = int(pidfile.read_text().strip())
            if str(project) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                os.kill(pid, 15)
                for _ in range(100):  # like mlctl's pidfile stop: wait up to 10 s
                    try:
                        if "State:\tZ" in Path(f"/proc/{pid}/status").read_text():
                            break  # exited; its parent has yet to reap it
                    except OSError:
                        break
                    time.sleep(0.1)


# ---------------------------------------------------------------- packaging

PACKAGE_FILES = (
    "mlctl/templates/gunicorn.socket",
    "mlctl/templates/gunicorn.service",
    "mlctl/templates/nginx.conf",
    "mlctl/templates/completion.bash",
    "mlctl/templates/completion.zsh",
    "mlctl/remote/facts.py",
    "mlctl/remote/health.py",
    "mlctl/remote/migrations.py",
)


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """One wheel and sdist per session, built from a copy (the work tree stays untouched)."""
    root = tmp_path_factory.mktemp("build")
    src = root / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(ROOT / "src", src / "src", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    out = root / "dist"
    p = run([sys.executable, "-m", "build", "--outdir", out, src], root, timeout=600, check=False)
    if p.returncode != 0 and "No module named build" in p.stderr:
        pytest.fail("`build` is missing: pip install -e '.[dev]'", pytrace=False)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    wheel, sdist = next(out.glob("*.whl")), next(out.glob("*.tar.gz"))
    return wheel, sdist


def test_wheel_and_sdist_carry_every_template(built):
    import tarfile
    import zipfile

    wheel, sdist = built
    source = ROOT / "src"
    expected = set(PACKAGE_FILES) | {
        p.relative_to(source).as_posix()
        for p in (source / "mlctl" / "templates").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert any(e.startswith("mlctl/templates/init/") for e in expected)
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    assert expected <= in_wheel, sorted(expected - in_wheel)
    with tarfile.open(sdist) as tar:
        in_sdist = {n.split("/src/", 1)[-1] for n in tar.getnames() if "/src/" in n}
    assert expected <= in_sdist, sorted(expected - in_sdist)


def test_wheel_in_a_fresh_venv_runs_help_version_and_init(built, tmp_path):
    wheel, _ = built
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], tmp_path)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME") and not k.startswith("MLCTL_")
    }
    env.update(NO_COLOR="1", MLCTL_STATE_DIR=str(tmp_path / "state"))
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}/usr/bin:/bin"
    pip = [venv / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    run([*pip, wheel], tmp_path, env, timeout=600)
    mlctl_bin = venv / "bin" / "mlctl"
    where = run(
        [venv / "bin" / "python", "-c", "import mlctl; print(mlctl.__file__)"], tmp_path, env
    )
    assert str(ROOT) not in where.stdout and str(venv) in where.stdout
    assert "deploy" in run([mlctl_bin, "--help"], tmp_path, env).stdout
    version = run([mlctl_bin, "--version"], tmp_path, env).stdout.strip()
    assert re.fullmatch(r"mlctl \d+\.\d+\.\d+.*", version), version
    # A Django project (the stock startproject layout) far from the source tree; no Django needed.
    project = tmp_path / "site"
    project.mkdir()
    run([BIN / "django-admin", "startproject", "mysite", project.name], tmp_path)
    (project / "requirements.txt").write_text("Django==5.2.19\ngunicorn==27.0.1\n")
    git(project.parent, "init", "-q", str(project))
    p = run([mlctl_bin, "init", "--ci", "github"], project, env)
    assert (
        "wrote environments.yaml" in p.stderr and "wrote .github/workflows/deploy.yml" in p.stderr
    )
    run([mlctl_bin, "--inventory", project / "environments.yaml", "dev", "config"], project, env)
    again = run([mlctl_bin, "init", "--ci", "github"], project, env)
    assert "nothing changed" in again.stderr
    completion = run([venv / "bin" / "python", "-c", COMPLETION_PATH], tmp_path, env).stdout.strip()
    assert Path(completion, "completion.bash").is_file()


COMPLETION_PATH = (
    "import mlctl, os; print(os.path.join(os.path.dirname(mlctl.__file__), 'templates'))"
)
