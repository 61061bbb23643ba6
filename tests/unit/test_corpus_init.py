"""`mlctl init` on the real projects of the corpus (../shared/corpus, see its README): unpacked,
`git init`, committed, then init as their owner would run it. What it infers — the settings it
chose and why, the variables it marks EDIT, PostgreSQL for dev, the port, .gitignore — is
asserted against what each project's files say. A missing corpus skips locally, fails under CI.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from mlctl.tasks import init_values

from .conftest import REPO, clean_environ

CORPUS = REPO.parent / "shared" / "corpus"


def unpack(name: str, tmp_path: Path) -> Path:
    tarball = CORPUS / f"{name}.tar.gz"
    if not tarball.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"corpus project {tarball} is missing (CI must have ../shared/corpus)")
        pytest.skip(f"corpus project {tarball} is not here (see ../shared/corpus/README.md)")
    with tarfile.open(tarball) as tar:
        tar.extractall(tmp_path, filter="data")
    root = tmp_path / name
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["-c", "user.email=t@example.org", "-c", "user.name=t", "commit", "-qm", "upstream"],
    ):
        subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)
    return root


def mlctl_init(root: Path) -> subprocess.CompletedProcess:
    p = subprocess.run(
        [sys.executable, "-m", "mlctl.cli", "init", str(root)],
        cwd=root,
        env=clean_environ(root.parent),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    return p


def assert_dev_tree_ignored(root: Path) -> None:
    """After init, `git add -A` never picks up the dev deploy tree (ignored before or added)."""
    probe = ["git", "-C", str(root), "check-ignore", "-q", "--no-index", "var/dev/releases/x"]
    assert subprocess.run(probe).returncode == 0


def inventory_of(root: Path) -> dict:
    return yaml.safe_load((root / "environments.yaml").read_text())


def test_cookie_shop_runs_production_settings_and_lists_what_they_require(tmp_path):
    root = unpack("cookie_shop", tmp_path)
    p = mlctl_init(root)
    # manage.py says config.settings.local, wsgi.py config.settings.production.
    assert (
        "settings config.settings.production: config/wsgi.py's default, what the project "
        "serves; manage.py's config.settings.local is for development" in p.stderr
    )
    inv = inventory_of(root)
    assert inv["project"]["settings_module"] == "config.settings.settings_deploy"
    # production.py raises without these (env("...") with no default); DJANGO_SECRET_KEY is
    # filled from the generated SECRET_KEY, DATABASE_URL is the server's.
    assert inv["defaults"]["env"] == {
        "DJANGO_SETTINGS_MODULE": "config.settings.settings_deploy",
        "DJANGO_ADMIN_URL": "",
        "MAILGUN_DOMAIN": "",
    }
    assert inv["defaults"]["secrets"] == {"MAILGUN_API_KEY": ""}
    text = (root / "environments.yaml").read_text()
    assert text.count("raises without it") == 3
    deploy = (root / "config/settings/settings_deploy.py").read_text()
    assert 'importlib.import_module("config.settings.production")' in deploy
    assert 'os.environ.setdefault("DJANGO_SECRET_KEY", os.environ.get("SECRET_KEY", ""))' in deploy
    # STATIC_ROOT and STORAGES are read in base.py/production.py through the imports.
    assert "STATIC_ROOT str(BASE_DIR / 'staticfiles')" in p.stderr
    dev = inv["environments"]["dev"]
    # Its sites migration reads the PostgreSQL sequence django_site_id_seq: no SQLite on dev.
    assert dev["database"]["engine"] == "postgresql"
    assert "this project needs PostgreSQL (django_site_id_seq in cookie_shop/contrib/sites/" in (
        p.stderr
    )
    assert dev["bind"] == f"127.0.0.1:{init_values.dev_port('cookie_shop')}" and "health" not in dev
    assert dev["tag_deploys"] is False
    assert_dev_tree_ignored(root)


def test_bakerydemo_gets_its_production_module(tmp_path):
    root = unpack("bakerydemo", tmp_path)
    p = mlctl_init(root)
    # manage.py and wsgi.py both default to bakerydemo.settings.dev.
    assert (
        "settings bakerydemo.settings.production: the production module next to "
        "bakerydemo.settings.dev, the default of manage.py and bakerydemo/wsgi.py" in p.stderr
    )
    deploy = (root / "bakerydemo/settings/settings_deploy.py").read_text()
    assert 'importlib.import_module("bakerydemo.settings.production")' in deploy
    # STATIC_ROOT lives in base.py, which production.py star-imports.
    assert "STATIC_ROOT is os.path.join(PROJECT_DIR, 'collect_static') in " in p.stderr
    assert "bakerydemo.settings.base" in p.stderr
    inv = inventory_of(root)
    # Its secret key and database URL are read only when set (`if ... in os.environ`).
    assert inv["defaults"]["env"] == {
        "DJANGO_SETTINGS_MODULE": "bakerydemo.settings.settings_deploy"
    }
    assert "secrets" not in inv["defaults"]
    # django.contrib.postgres is only added to INSTALLED_APPS for a PostgreSQL URL: SQLite is fine.
    assert inv["environments"]["dev"]["database"]["engine"] == "sqlite"
    assert_dev_tree_ignored(root)
    assert "wrote .gitignore (/var/: the dev deploy tree)" in p.stderr  # it had no var/ line


def test_djangopackages_needs_postgresql_on_dev(tmp_path):
    root = unpack("djangopackages", tmp_path)
    p = mlctl_init(root)
    assert "settings settings: manage.py's default" in p.stderr
    assert "this project needs PostgreSQL (django.contrib.postgres" in p.stderr
    dev = inventory_of(root)["environments"]["dev"]
    assert dev["database"]["engine"] == "postgresql"
    assert dev["database"]["name"] == "djangopackages_dev"
    text = (root / "environments.yaml").read_text()
    assert "database:  # EDIT: a PostgreSQL server of yours (django.contrib.postgres" in text
    # Its DEBUG is env.bool("DJANGO_DEBUG", True): settings_deploy.py sets it off first.
    deploy = (root / "settings_deploy.py").read_text()
    first_import = deploy.index('importlib.import_module("settings")')
    assert deploy.index('os.environ.setdefault("DJANGO_DEBUG"') < first_import
    assert_dev_tree_ignored(root)


def test_two_corpus_projects_get_different_dev_ports(tmp_path):
    ports = {init_values.dev_port(n) for n in ("cookie_shop", "bakerydemo", "djangopackages")}
    assert len(ports) == 3
