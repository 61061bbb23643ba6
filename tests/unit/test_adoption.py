"""Adopting projects nobody here wrote (issue 12): which settings init picks and what it reads
through their imports, the settings_deploy.py it writes, the variables the settings require
(init's EDIT lines, the deploy's preflight), the pytest gate, the dev port, .gitignore, tags and
masking. Synthetic projects, one per layout class; the corpus projects are in test_corpus_init.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from mlctl.config import inventory
from mlctl.core.errors import PreflightFailed
from mlctl.core.shell import MASK, mask
from mlctl.project import django_layout, project_facts, settings_scan, source
from mlctl.tasks import init_files, init_values

from .conftest import clean_environ

MANAGE = """\
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "{settings}")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
"""
WSGI = """\
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "{settings}")
application = get_wsgi_application()
"""
BASE = """\
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent.parent
SECRET_KEY = "base-key"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.staticfiles",
]
ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}}
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "collected"
"""


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def git_commit(root: Path) -> None:
    def run(*args):
        subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)

    run("init", "-q", "-b", "main")
    run("add", "-A")
    run("-c", "user.email=t@example.org", "-c", "user.name=t", "commit", "-qm", "project")


def commit_all(root: Path) -> None:
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)
    subprocess.run(
        ["git", "-C", str(root), "-c", "user.email=t@e", "-c", "user.name=t", "commit", "-qm", "m"],
        check=True,
    )


def split_settings(root: Path, manage: str, wsgi: str, leaves=("base", "local", "production")):
    """A cookiecutter-like layout: config/settings/{base,...}.py."""
    files = {
        "manage.py": MANAGE.format(settings=manage),
        "config/__init__.py": "",
        "config/urls.py": "urlpatterns = []\n",
        "config/wsgi.py": WSGI.format(settings=wsgi),
        "config/settings/__init__.py": "",
        "config/settings/base.py": BASE,
        "requirements.txt": "Django\ngunicorn\npsycopg[binary]\n",
    }
    for leaf in leaves:
        if leaf != "base":
            files[f"config/settings/{leaf}.py"] = "from .base import *  # noqa\n"
    return write(root, files)


def run_init(path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlctl.cli", "init", str(path), *args],
        cwd=path,
        env=clean_environ(path.parent),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


# ---------------------------------------------------------------- 4: the settings chosen


def test_wsgi_default_wins_over_manage_py_development_settings(tmp_path):
    root = split_settings(tmp_path / "shop", "config.settings.local", "config.settings.production")
    module, why = django_layout.choose_settings(root)
    assert module == "config.settings.production"
    assert "config/wsgi.py's default" in why and "config.settings.local is for development" in why


def test_production_module_next_to_a_development_default(tmp_path):
    # manage.py and wsgi.py both default to dev (as bakerydemo's do); production.py exists.
    root = split_settings(
        tmp_path / "demo", "config.settings.dev", "config.settings.dev", ("base", "dev", "prod")
    )
    module, why = django_layout.choose_settings(root)
    assert module == "config.settings.prod"
    assert why == (
        "the production module next to config.settings.dev, the default of manage.py and "
        "config/wsgi.py"
    )


def test_single_settings_module_stays_manage_py_default(tmp_path):
    root = write(
        tmp_path / "one",
        {
            "manage.py": MANAGE.format(settings="site1.settings"),
            "site1/__init__.py": "",
            "site1/settings.py": BASE,
            "site1/wsgi.py": WSGI.format(settings="site1.settings"),
        },
    )
    assert django_layout.choose_settings(root) == ("site1.settings", "manage.py's default")


def test_development_default_without_production_module_is_said_so(tmp_path):
    root = split_settings(tmp_path / "x", "config.settings.local", "config.settings.local")
    (root / "config/settings/production.py").unlink()
    module, why = django_layout.choose_settings(root)
    assert module == "config.settings.local" and "looks like development settings" in why


def test_init_reports_the_choice_and_reads_static_root_through_imports(tmp_path):
    root = split_settings(tmp_path / "shop", "config.settings.local", "config.settings.production")
    git_commit(root)
    p = run_init(root)
    assert p.returncode == 0, p.stderr
    assert "settings config.settings.production: config/wsgi.py's default" in p.stderr
    # STATIC_ROOT is in base.py only: production.py has it through `from .base import *`.
    assert "STATIC_ROOT BASE_DIR / 'collected'" in p.stderr
    assert "STATIC_ROOT is BASE_DIR / 'collected' in config.settings.base" in p.stderr
    inv = yaml.safe_load((root / "environments.yaml").read_text())
    assert inv["project"]["settings_module"] == "config.settings.settings_deploy"
    deploy = (root / "config/settings/settings_deploy.py").read_text()
    assert 'importlib.import_module("config.settings.production")' in deploy


# ---------------------------------------------------------------- 5: settings_deploy.py


def test_settings_deploy_keeps_the_projects_names_and_turns_debug_off_first(tmp_path):
    """A project whose PROJECT_DIR is a string (bakerydemo) and whose DEBUG defaults to True
    through DJANGO_DEBUG, installing a debug app then (djangopackages): collectstatic works, the
    project's names are its own, DEBUG is off and the debug app is not installed."""
    root = write(
        tmp_path / "blog",
        {
            "manage.py": MANAGE.format(settings="blog.settings"),
            "blog/__init__.py": "",
            "blog/urls.py": "urlpatterns = []\n",
            "blog/settings.py": """\
                import os

                PROJECT_DIR = os.path.dirname(os.path.abspath(__file__))
                BASE_DIR = os.path.dirname(PROJECT_DIR)
                DEBUG = os.environ.get("DJANGO_DEBUG", "True").lower() in ("1", "true")
                SECRET_KEY = "k"
                ROOT_URLCONF = "blog.urls"
                INSTALLED_APPS = ["django.contrib.staticfiles"]
                if DEBUG:
                    INSTALLED_APPS += ["debug_toolbar_not_installed"]
                STATIC_URL = "/static/"
                STATIC_ROOT = os.path.join(PROJECT_DIR, "collect_static")
                STATICFILES_DIRS = [os.path.join(PROJECT_DIR, "static")]
                DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "x"}}
                """,
            "blog/static/site.css": "body {}\n",
            "requirements.txt": "Django\ngunicorn\npsycopg[binary]\n",
        },
    )
    git_commit(root)
    assert run_init(root).returncode == 0
    env = {k: v for k, v in os.environ.items() if "DEBUG" not in k and k != "STATIC_ROOT"}
    env.update(DJANGO_SETTINGS_MODULE="blog.settings_deploy", PYTHONPATH=str(root))
    show = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "print(json.dumps([s.PROJECT_DIR, s.DEBUG, s.INSTALLED_APPS, str(s.STATIC_ROOT)]))"
    )
    p = subprocess.run(
        [sys.executable, "-c", show], cwd=root, env=env, capture_output=True, text=True
    )
    assert p.returncode == 0, p.stderr
    project_dir, debug, apps, static_root = json.loads(p.stdout)
    assert project_dir == str(root / "blog")  # the project's string, not mlctl's Path
    assert debug is False and "debug_toolbar_not_installed" not in apps
    assert static_root == str(root / "staticfiles")
    p = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    assert (root / "staticfiles" / "site.css").is_file()


def test_settings_deploy_turns_the_https_only_settings_off_unless_the_environment_sets_them(
    tmp_path,
):
    """mlctl's nginx serves plain HTTP: a project's SECURE_SSL_REDIRECT (bakerydemo's defaults
    to True) redirects every page to an https:// nobody answers, and secure cookies (cookie_shop)
    never come back, so no form posts. They are off unless the environment sets them."""
    root = write(
        tmp_path / "blog",
        {
            "manage.py": MANAGE.format(settings="blog.settings"),
            "blog/__init__.py": "",
            "blog/urls.py": "urlpatterns = []\n",
            "blog/settings.py": """\
                import os

                SECRET_KEY = "k"
                ROOT_URLCONF = "blog.urls"
                SECURE_SSL_REDIRECT = os.environ.get("DJANGO_SECURE_SSL_REDIRECT", "1") == "1"
                SESSION_COOKIE_SECURE = True
                CSRF_COOKIE_SECURE = True
                SECURE_HSTS_PRELOAD = True
                SECURE_HSTS_SECONDS = 60  # without includeSubDomains: W005 on plain HTTP
                DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "x"}}
                """,
            "requirements.txt": "Django\ngunicorn\npsycopg[binary]\n",
        },
    )
    git_commit(root)
    assert run_init(root).returncode == 0
    names = ["SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE"]
    show = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "hsts = {'security.W005', 'security.W021'} <= set(s.SILENCED_SYSTEM_CHECKS); "
        f"print(json.dumps([getattr(s, n) for n in {names + ['SECURE_HSTS_PRELOAD']!r}] + [hsts]))"
    )

    def settings(**environ):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SECURE", "SESSION"))}
        env.update(DJANGO_SETTINGS_MODULE="blog.settings_deploy", PYTHONPATH=str(root), **environ)
        p = subprocess.run(
            [sys.executable, "-c", show], cwd=root, env=env, capture_output=True, text=True
        )
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)

    # HSTS preload stays the project's own; its directives' checks are silenced (never sent on HTTP)
    assert settings() == [False, False, False, True, True]
    on = settings(SECURE_SSL_REDIRECT="1", CSRF_COOKIE_SECURE="true")
    assert on == [True, False, True, True, True]


def test_settings_deploy_installs_django_contrib_postgres_on_postgresql(tmp_path):
    """bakerydemo (Wagtail, developed on SQLite): on PostgreSQL its search index needs
    django.contrib.postgres (postgres.E005 in `check --deploy`)."""
    root = write(
        tmp_path / "blog",
        {
            "manage.py": MANAGE.format(settings="blog.settings"),
            "blog/__init__.py": "",
            "blog/urls.py": "urlpatterns = []\n",
            "blog/settings.py": """\
                SECRET_KEY = "k"
                ROOT_URLCONF = "blog.urls"
                INSTALLED_APPS = ["django.contrib.staticfiles"]
                DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "x"}}
                """,
            "requirements.txt": "Django\ngunicorn\npsycopg[binary]\n",
        },
    )
    git_commit(root)
    assert run_init(root).returncode == 0
    show = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "print(json.dumps(s.INSTALLED_APPS))"
    )

    def apps(**environ):
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        env.update(DJANGO_SETTINGS_MODULE="blog.settings_deploy", PYTHONPATH=str(root), **environ)
        p = subprocess.run(
            [sys.executable, "-c", show], cwd=root, env=env, capture_output=True, text=True
        )
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)

    assert apps() == ["django.contrib.staticfiles"]  # SQLite: the project's list
    on_pg = apps(DATABASE_URL="postgresql://u:p@127.0.0.1:5432/blog")
    assert on_pg == ["django.contrib.staticfiles", "django.contrib.postgres"]


def test_settings_deploy_helpers_are_all_private():
    """Every module-level name the template defines is a setting it overrides on purpose or
    starts with an underscore: none can replace, or be replaced by, a project's name."""
    import ast

    text = init_files.render(init_files.template("settings_deploy.py.tmpl"), _template_values())
    tree = ast.parse(text)
    defined = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            defined.add(node.name)
        for target in getattr(node, "targets", []):
            if isinstance(target, ast.Name):
                defined.add(target.id)
        if isinstance(node, ast.ImportFrom | ast.Import):
            defined |= {a.asname or a.name for a in node.names}
    public = {n for n in defined if not n.startswith("_")}
    assert public <= {"importlib", "os"} | {n for n in public if n.isupper()}
    overridden = {n for n in public if n.isupper()}
    assert "PROJECT_DIR" not in overridden and "BASE_DIR" not in overridden
    assert overridden <= {
        "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "DATABASES", "STATIC_ROOT",
        "MEDIA_ROOT", "MEDIA_URL", "MIDDLEWARE", "SECURE_HSTS_SECONDS", "SECURE_PROXY_SSL_HEADER",
        "SILENCED_SYSTEM_CHECKS", "LOGGING", "INSTALLED_APPS",
    }  # fmt: skip


def _template_values() -> dict:
    values = {
        m: "x"
        for m in init_files.PLACEHOLDER.findall(init_files.template("settings_deploy.py.tmpl"))
    }
    values.update(depth=1, env_aliases="")
    return values


# ---------------------------------------------------------------- 7: what the settings require


READERS = """\
import os
import environ
from decouple import config

env = environ.Env(WITH_SCHEME=(bool, False))
SECRET_KEY = env("DJANGO_SECRET_KEY")
ADMIN_URL = env.str("DJANGO_ADMIN_URL")
DEBUG = env.bool("DJANGO_DEBUG", False)
HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["x"])
LISTED = env.list("PLAIN_LIST")
SCHEMED = env.bool("WITH_SCHEME")
DATABASES = {"default": env.db()}
API = {"KEY": os.environ["PAYMENT_API_KEY"], "OPT": os.environ.get("OPTIONAL")}
TOKEN = config("SERVICE_TOKEN")
LEVEL = config("LOG_LEVEL", default="INFO")
os.environ.setdefault("PRESET", "1")
PRESET = os.environ["PRESET"]
if os.environ["FLAG_IN_TEST"]:
    INSIDE = env("ONLY_IF_FLAG")
try:
    X = os.environ["TRIED"]
except KeyError:
    X = None
OTHER = os.environ.get("A") or os.environ["ONLY_IF_NOT_A"]


def later():
    return os.environ["IN_FUNCTION"]
"""


def test_scan_finds_every_variable_read_without_a_default(tmp_path):
    write(
        tmp_path, {"s/__init__.py": "", "s/base.py": READERS, "s/prod.py": "from .base import *\n"}
    )
    found = settings_scan.scan(lambda rel: _read(tmp_path, rel), "s.prod")
    assert found.modules == ["s.prod", "s.base"]
    assert found.required_names() == [
        "DJANGO_SECRET_KEY",
        "DJANGO_ADMIN_URL",
        "PLAIN_LIST",
        "DATABASE_URL",
        "PAYMENT_API_KEY",
        "SERVICE_TOKEN",
        "FLAG_IN_TEST",
    ]
    assert [r.name for r in found.maybe] == ["ONLY_IF_FLAG", "TRIED", "ONLY_IF_NOT_A"]
    assert found.required[0].setting == "SECRET_KEY" and found.required[0].module == "s.base"
    assert "PRESET" in found.provided


def _read(root: Path, rel: str) -> str | None:
    path = root / rel
    return path.read_text() if path.is_file() else None


COOKIE_PRODUCTION = """\
from .base import *  # noqa
from .base import env

SECRET_KEY = env("DJANGO_SECRET_KEY")
ADMIN_URL = env("DJANGO_ADMIN_URL")
ANYMAIL = {"MAILGUN_API_KEY": env("MAILGUN_API_KEY"), "DOMAIN": env("MAILGUN_DOMAIN")}
DATABASES = {"default": env.db("DATABASE_URL")}
"""


def cookie_like(root: Path) -> Path:
    split_settings(root, "config.settings.local", "config.settings.production")
    base = (root / "config/settings/base.py").read_text()
    write(root, {"config/settings/base.py": "import environ\nenv = environ.Env()\n" + base})
    write(root, {"config/settings/production.py": COOKIE_PRODUCTION})
    return root


def test_init_lists_required_variables_as_edit_lines(tmp_path):
    root = cookie_like(tmp_path / "shop")
    git_commit(root)
    p = run_init(root)
    assert p.returncode == 0, p.stderr
    text = (root / "environments.yaml").read_text()
    assert '    DJANGO_ADMIN_URL: ""  # EDIT: config.settings.production raises without it' in text
    assert '    MAILGUN_API_KEY: ""  # EDIT: config.settings.production raises' in text
    inv = yaml.safe_load(text)["defaults"]
    assert inv["env"] == {
        "DJANGO_SETTINGS_MODULE": "config.settings.settings_deploy",
        "DJANGO_ADMIN_URL": "",
        "MAILGUN_DOMAIN": "",
    }
    assert inv["secrets"] == {"MAILGUN_API_KEY": ""}
    # DJANGO_SECRET_KEY only fills SECRET_KEY, which settings_deploy.py sets from the .env.
    deploy = (root / "config/settings/settings_deploy.py").read_text()
    assert 'os.environ.setdefault("DJANGO_SECRET_KEY", os.environ.get("SECRET_KEY", ""))' in deploy
    assert "DJANGO_SECRET_KEY:" not in text and "DATABASE_URL:" not in text
    assert "MAILGUN_API_KEY is required by config.settings.production" in p.stderr


def test_dev_deploy_preflight_names_every_missing_variable_at_once(tmp_path):
    """The deploy reads the settings at the commit (through settings_deploy.py and the project's
    imports) and refuses with one line before building anything."""
    root = cookie_like(tmp_path / "shop")
    git_commit(root)
    assert run_init(root).returncode == 0
    commit_all(root)
    p = subprocess.run(
        [sys.executable, "-m", "mlctl.cli", "dev", "deploy"],
        cwd=root,
        env=clean_environ(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode != 0
    last = p.stderr.strip().splitlines()[-1]
    assert last.endswith(
        "missing environment variables for the settings: DJANGO_ADMIN_URL, MAILGUN_API_KEY, "
        "MAILGUN_DOMAIN — set them under env:/secrets: in environments.yaml"
    ), p.stderr
    assert not list((root / "var/dev/releases").iterdir())  # nothing built
    # Set through the environment-variable layer (the inventory's env:/secrets:), they pass.
    filled = clean_environ(
        tmp_path,
        MLCTL_ENV__DJANGO_ADMIN_URL="admin/",
        MLCTL_ENV__MAILGUN_DOMAIN="mg.example.org",
        MLCTL_SECRETS__MAILGUN_API_KEY="key-1234",
    )
    p = subprocess.run(
        [sys.executable, "-m", "mlctl.cli", "dev", "deploy", "--dry-run"],
        cwd=root,
        env=filled,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "missing environment variables" not in p.stderr, p.stderr
    assert p.returncode == 0, p.stderr


# ---------------------------------------------------------------- 8: the pytest gate

GATE_SETTINGS = """\
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "k"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
ROOT_URLCONF = "site2.urls"
INSTALLED_APPS = ["django.contrib.staticfiles", "pages"]
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db"}}
STATIC_URL = "/static/"
STATIC_ROOT = "/nonexistent/collected"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
}
"""
PAGE_TEST = """\
from django.test import SimpleTestCase


class HomeTests(SimpleTestCase):
    def test_home_links_its_hashed_css(self):
        body = self.client.get("/").content.decode()
        self.assertIn("/static/pages/site.", body)
"""


def gate_project(root: Path, extra_test: str = "") -> source.Source:
    write(
        root,
        {
            "manage.py": MANAGE.format(settings="site2.settings"),
            "site2/__init__.py": "",
            "site2/settings.py": GATE_SETTINGS,
            "site2/urls.py": (
                "from django.urls import path\nfrom django.views.generic import TemplateView\n"
                'urlpatterns = [path("", TemplateView.as_view(template_name="home.html"))]\n'
            ),
            "pages/__init__.py": "",
            "pages/templates/home.html": (
                '{% load static %}<link href="{% static "pages/site.css" %}">'
            ),
            "pages/static/pages/site.css": "body { color: red }\n",
            "pages/tests.py": PAGE_TEST + extra_test,
        },
    )
    git_commit(root)
    return source.resolve(str(root), "", "HEAD")


def test_gate_collects_static_files_for_a_manifest_storage(tmp_path):
    src = gate_project(tmp_path / "site2")
    source.run_gate(src, "python manage.py test")  # raises on failure
    assert not Path("/nonexistent/collected").exists()


FAILING = """\

    def test_price_is_positive(self):
        self.assertEqual(-1, 1, "price below zero")


class OtherTests(SimpleTestCase):
    def test_broken(self):
        raise ValueError("the first error is this one")
"""


def test_gate_failure_names_the_failing_tests_and_the_first_error(tmp_path):
    src = gate_project(tmp_path / "site2", FAILING)
    with pytest.raises(PreflightFailed) as e:
        source.run_gate(src, "python manage.py test")
    message = e.value.message
    assert message.startswith("pytest gate: tests failed: 2 failing (")
    assert "pages.tests.HomeTests.test_price_is_positive" in message
    assert "pages.tests.OtherTests.test_broken" in message
    assert "first error: " in message and "Destroying test database" not in message


def test_failure_summary_of_pytest_output():
    out = textwrap.dedent("""\
        ..F.E
        =========================== short test summary info ============================
        FAILED tests/test_views.py::test_home - ValueError: Missing manifest entry for 'x.css'
        ERROR tests/test_models.py::test_db - django.db.utils.OperationalError: no such table
        1 failed, 3 passed, 1 error in 2.1s
        Destroying test database for alias 'default'...
        """)
    assert source_summary(out) == (
        "2 failing (tests/test_views.py::test_home, tests/test_models.py::test_db); first error: "
        "ValueError: Missing manifest entry for 'x.css'"
    )
    noisy = (
        "Traceback (most recent call last):\n  File x\nKeyError: 'X'\nDestroying test database\n"
    )
    assert source_summary(noisy) == "KeyError: 'X'"


def source_summary(text: str) -> str:
    from mlctl.project import gate

    return gate.failure_summary(text)


# ---------------------------------------------------------------- 9: PostgreSQL on dev


def test_init_says_when_dev_needs_postgresql(tmp_path):
    root = split_settings(tmp_path / "pg", "config.settings.local", "config.settings.production")
    write(
        root,
        {
            "catalog/__init__.py": "",
            "catalog/migrations/__init__.py": "",
            "catalog/migrations/0001_initial.py": (
                "import django.contrib.postgres.fields\nfrom django.db import migrations\n"
            ),
        },
    )
    git_commit(root)
    p = run_init(root)
    assert p.returncode == 0, p.stderr
    assert (
        "this project needs PostgreSQL (django.contrib.postgres.fields in "
        "catalog/migrations/0001_initial.py)" in p.stderr
    )
    dev = yaml.safe_load((root / "environments.yaml").read_text())["environments"]["dev"]
    assert dev["database"]["engine"] == "postgresql"
    assert dev["database"]["name"] == "pg_dev"


def test_installed_app_alone_does_not_need_postgresql(tmp_path):
    root = split_settings(tmp_path / "pg", "config.settings.local", "config.settings.production")
    base = root / "config/settings/base.py"
    base.write_text(base.read_text() + 'INSTALLED_APPS += ["django.contrib.postgres"]\n')
    assert project_facts.needs_postgres(root) == ""


def test_local_postgres_env_from_the_inventory(write_inventory):
    from mlctl.tasks import setup_hosts as setup

    text = (
        "project: {name: shop, settings_module: s, wsgi: 'w:a'}\n"
        "environments:\n"
        "  dev:\n    connection: local\n    deploy_to: ./var/dev\n"
        "    database: {engine: postgresql, name: shop_dev, user: me, password: pw12,"
        " host: 127.0.0.1, port: 5433}\n"
        "  url:\n    connection: local\n    deploy_to: ./var/u\n"
        "    database: {engine: postgresql, url: 'postgresql://u:p%40ss@db.local:6543/x'}\n"
    )
    inv = inventory.load(write_inventory(text))
    dev = inventory.resolve(inv, "dev", {})
    env = setup.local_postgres_env(dev.database, "shop")
    assert env == {
        "PGHOST": "127.0.0.1",
        "PGPORT": "5433",
        "PGUSER": "me",
        "PGDATABASE": "shop_dev",
        "PGPASSWORD": "pw12",
    }
    url = setup.local_postgres_env(inventory.resolve(inv, "url", {}).database, "shop")
    assert url == {
        "PGHOST": "db.local",
        "PGPORT": "6543",
        "PGUSER": "u",
        "PGDATABASE": "x",
        "PGPASSWORD": "p@ss",
    }


# ---------------------------------------------------------------- 10: small things


def test_init_ignores_the_dev_tree_before_git_add(tmp_path):
    root = split_settings(tmp_path / "shop", "config.settings.local", "config.settings.production")
    git_commit(root)
    p = run_init(root)
    assert "wrote .gitignore (/var/: the dev deploy tree)" in p.stderr
    (root / "var/dev/releases").mkdir(parents=True)
    (root / "var/dev/releases/x").write_text("built\n")
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)
    staged = subprocess.run(
        ["git", "-C", str(root), "diff", "--cached", "--name-only"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert ".gitignore" in staged and not [f for f in staged if f.startswith("var/")]
    assert "/var/" not in run_init(root).stderr  # already ignored: no second line


def test_dev_port_differs_per_project_and_health_url_follows_bind(tmp_path, write_inventory):
    ports = {
        init_values.dev_port(n) for n in ("shop", "blog", "bakerydemo", "cookie_shop", "mysite")
    }
    assert len(ports) == 5 and all(8100 <= p <= 8999 for p in ports)
    inv = inventory.load(
        write_inventory(
            "project: {name: shop, settings_module: s, wsgi: 'w:a'}\n"
            "environments:\n"
            "  dev: {connection: local, deploy_to: ./var/dev, service: pidfile,"
            " bind: '127.0.0.1:8432'}\n"
            "  any: {connection: local, deploy_to: ./var/a, service: pidfile,"
            " bind: '0.0.0.0:9000'}\n"
            "  test: {hosts: [t1.example.internal]}\n"
        )
    )
    assert inventory.resolve(inv, "dev", {})["health"]["url"] == "http://127.0.0.1:8432/healthz"
    assert inventory.resolve(inv, "any", {})["health"]["url"] == "http://127.0.0.1:9000/healthz"
    assert inventory.resolve(inv, "test", {})["health"]["url"] == "http://127.0.0.1/healthz"
    moved = inventory.resolve(inv, "dev", {}, {"bind": "127.0.0.1:8555"})
    assert moved["health"]["url"] == "http://127.0.0.1:8555/healthz"  # one flag moves both


def test_git_tags_are_a_setting_off_for_local_environments(write_inventory):
    inv = inventory.load(
        write_inventory(
            "project: {name: shop, settings_module: s, wsgi: 'w:a'}\n"
            "environments:\n"
            "  dev: {connection: local, deploy_to: ./var/dev}\n"
            "  tagged: {connection: local, deploy_to: ./var/t, tag_deploys: true}\n"
            "  test: {hosts: [t1.example.internal]}\n"
        )
    )
    assert inventory.resolve(inv, "dev", {})["tag_deploys"] is False
    assert inventory.resolve(inv, "tagged", {})["tag_deploys"] is True
    assert inventory.resolve(inv, "test", {})["tag_deploys"] is True


def test_mask_leaves_paths_that_contain_a_short_secret():
    secrets = ["shop", "pw12"]
    assert mask("cd /srv/shop/releases && ls /srv/cookie_shop", secrets) == (
        "cd /srv/shop/releases && ls /srv/cookie_shop"
    )
    assert mask("postgresql://u:pw12@h/db PGPASSWORD=pw12 'pw12' pw12.", secrets) == (
        f"postgresql://u:{MASK}@h/db PGPASSWORD={MASK} '{MASK}' {MASK}."
    )
    long = "x7Kq9Zp2Lm4Nv8Rt"  # long secrets are masked wherever they appear
    assert mask(f"/tmp/{long}/f", [long]) == f"/tmp/{MASK}/f"


def test_remote_preflight_names_missing_and_unwritten_variables(tmp_path, write_inventory):
    """Over SSH the shared .env is written by setup: a variable set in the inventory since then
    is named with the command that writes it; one on every host's .env is enough."""
    from types import SimpleNamespace

    from mlctl.tasks.deploy import Deploy

    root = cookie_like(tmp_path / "shop")
    git_commit(root)
    assert run_init(root).returncode == 0
    commit_all(root)
    inv = inventory.load(root / "environments.yaml")
    host = SimpleNamespace(name="t1", facts={"env_keys": ["DJANGO_ADMIN_URL"]})
    flags = {"hosts": "t1.example.internal"}

    def preflight(env_values: dict, keys: list[str]) -> str:
        environ = {
            f"MLCTL_{'SECRETS' if 'KEY' in k else 'ENV'}__{k}": v for k, v in env_values.items()
        }
        cfg = inventory.resolve(inv, "test", environ, flags)
        host.facts["env_keys"] = keys
        d = Deploy.__new__(Deploy)
        d.cfg, d.src = cfg, source.resolve(str(root), "", "HEAD")
        d.sess = SimpleNamespace(hosts=[host])
        try:
            d.require_settings_env()
        except PreflightFailed as e:
            return str(e)
        return "ok"

    assert preflight({}, ["DJANGO_ADMIN_URL"]) == (
        "missing environment variables for the settings: MAILGUN_API_KEY, MAILGUN_DOMAIN — "
        "set them under env:/secrets: in environments.yaml"
    )
    everything = ["DJANGO_ADMIN_URL", "MAILGUN_API_KEY", "MAILGUN_DOMAIN"]
    assert preflight({}, everything) == "ok"  # set on the host by hand: enough
    filled = {"MAILGUN_API_KEY": "k", "MAILGUN_DOMAIN": "mg.example.org"}
    assert preflight(filled, ["DJANGO_ADMIN_URL"]) == (
        "t1: the shared .env lacks MAILGUN_API_KEY, MAILGUN_DOMAIN (set in the inventory since "
        "the last setup) — run `mlctl test setup` to write them"
    )


def test_init_names_packages_the_settings_import_but_the_requirements_lack(tmp_path):
    """Read through the settings' imports and the requirements' -r includes."""
    root = split_settings(tmp_path / "shop", "config.settings.local", "config.settings.production")
    write(
        root,
        {
            "config/settings/production.py": (
                "from .base import *  # noqa\nimport environ\nimport sentry_sdk\nimport json\n"
            ),
            "config/settings/base.py": "import whitenoise\n" + BASE,
            "requirements.txt": "-r requirements/production.txt\n",
            "requirements/production.txt": "-r base.txt\nsentry-sdk==2.0\n",
            "requirements/base.txt": "Django\ndjango-environ\ngunicorn\npsycopg[binary]\n",
        },
    )
    git_commit(root)
    p = run_init(root)
    assert p.returncode == 0, p.stderr
    named = [line for line in p.stderr.splitlines() if "the settings import" in line]
    assert named == [
        "warning: the settings import whitenoise, which requirements.txt does not name (nor its "
        "-r files): add whitenoise unless another requirement installs it"
    ]
