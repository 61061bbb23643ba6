"""`mlctl dev deploy` of a PostgreSQL-only project on this machine (issue 12, item 9).

A project whose migration uses django.contrib.postgres (an ArrayField) cannot migrate on SQLite.
`mlctl init` says so and writes a PostgreSQL dev database marked EDIT; the test fills those values
with a real PostgreSQL server it starts for itself (initdb + pg_ctl as the postgres user, on a free
port of 127.0.0.1, trust authentication), then: deploy (the table is in PostgreSQL, the site
answers), `snapshot` (pg_dump through the .env's PG variables), a second deploy with a migration
(snapshot before it), and a deploy against a server that does not answer fails in one line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from .helpers import free_port, local_postgres
from .helpers import local_psql as psql


@pytest.fixture
def postgres():
    """A throwaway PostgreSQL server on 127.0.0.1:PORT with role `shop` owning `shop_dev`."""
    with local_postgres("shop", "shop_dev", "pw-dev") as port:
        yield port


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


MIGRATION = """\
import django.contrib.postgres.fields
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Cookie",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("tags", django.contrib.postgres.fields.ArrayField(
                    base_field=models.CharField(max_length=20), default=list)),
            ],
        ),
    ]
"""
SECOND = """\
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]
    operations = [
        migrations.AddField("cookie", "price", models.IntegerField(default=0)),
    ]
"""
MODELS = """\
from django.contrib.postgres.fields import ArrayField
from django.db import models


class Cookie(models.Model):
    tags = ArrayField(models.CharField(max_length=20), default=list)
"""


def make_project(root: Path) -> Path:
    from django import VERSION

    django = ".".join(map(str, VERSION[:3]))
    bin_dir = Path(sys.executable).parent
    root.mkdir(parents=True)
    subprocess.run([str(bin_dir / "django-admin"), "startproject", "shop", str(root)], check=True)
    write(
        root,
        {
            "requirements.txt": f"Django=={django}\ngunicorn\npsycopg[binary]\n",
            "catalog/__init__.py": "",
            "catalog/models.py": MODELS,
            "catalog/migrations/__init__.py": "",
            "catalog/migrations/0001_initial.py": MIGRATION,
        },
    )
    settings = root / "shop" / "settings.py"
    text = settings.read_text() + '\nINSTALLED_APPS += ["catalog"]\n'
    settings.write_text(text + 'STATIC_ROOT = BASE_DIR / "staticfiles"\n')
    git(root, "init", "-q", "-b", "main")
    commit(root, "shop")
    return root


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], check=True, capture_output=True, text=True
    ).stdout


def commit(root: Path, message: str) -> None:
    git(root, "add", "-A")
    git(root, "-c", "user.email=t@example.org", "-c", "user.name=t", "commit", "-qm", message)


def mlctl(root: Path, *args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlctl.cli", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def fill_edit_lines(root: Path, port: int, app_port: int) -> None:
    """What the user writes: the dev database's EDIT values (and a port free on this machine)."""
    path = root / "environments.yaml"
    text = path.read_text()
    dev = yaml.safe_load(text)["environments"]["dev"]
    assert dev["database"] == {
        "engine": "postgresql",
        "name": "shop_dev",
        "user": "shop",
        "password": "",
        "host": "localhost",
        "port": 5432,
    }
    text = text.replace('      password: ""  # EDIT', '      password: "pw-dev"  # EDIT')
    text = text.replace("      host: localhost  # EDIT", "      host: 127.0.0.1  # EDIT")
    text = text.replace("      port: 5432  # EDIT", f"      port: {port}  # EDIT")
    old_bind = f"bind: {dev['bind']}"
    path.write_text(text.replace(old_bind, f"bind: 127.0.0.1:{app_port}"))


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.read()


def stop_gunicorn(root: Path) -> None:
    pidfile = root / "var" / "dev" / "run" / "gunicorn.pid"
    if pidfile.is_file():
        try:
            os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            return
        time.sleep(1)


def test_dev_deploy_on_postgresql_end_to_end(tmp_path, postgres):
    root = make_project(tmp_path / "shop")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLCTL_")}
    env.update(MLCTL_LOG_DIR=str(tmp_path / "logs"), NO_COLOR="1", COLUMNS="200")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    p = mlctl(root, "init", env=env)
    assert p.returncode == 0, p.stderr
    assert "this project needs PostgreSQL (django.contrib.postgres" in p.stderr
    app_port = free_port()
    fill_edit_lines(root, postgres, app_port)
    commit(root, "Deploy with mlctl")
    try:
        p = mlctl(root, "dev", "deploy", env=env)
        assert p.returncode == 0, p.stderr
        status, body = get(f"http://127.0.0.1:{app_port}/healthz")
        assert status == 200 and json.loads(body)["database"] == "ok"
        assert psql(postgres, "shop", "shop_dev", "SELECT to_regclass('catalog_cookie')") == (
            "catalog_cookie"
        )
        dotenv = (root / "var/dev/shared/.env").read_text()
        assert f"DATABASE_URL=postgresql://shop:pw-dev@127.0.0.1:{postgres}/shop_dev" in dotenv
        assert "PGDATABASE=shop_dev" in dotenv and f"PGPORT={postgres}" in dotenv
        p = mlctl(root, "dev", "snapshot", env=env)
        assert p.returncode == 0, p.stderr
        dumps = list((root / "var/dev/backups").rglob("*.dump"))
        assert dumps, p.stderr
        # A second release with a migration: snapshot, migrate on PostgreSQL, serve.
        before = len(list((root / "var/dev/backups").rglob("*before-migrate.dump")))
        write(root, {"catalog/migrations/0002_price.py": SECOND})
        models = root / "catalog/models.py"
        models.write_text(models.read_text() + "    price = models.IntegerField(default=0)\n")
        commit(root, "price")
        p = mlctl(root, "dev", "deploy", env=env)
        assert p.returncode == 0, p.stderr
        assert "migrating: catalog.0002_price" in p.stderr
        columns = psql(
            postgres,
            "shop",
            "shop_dev",
            "SELECT column_name FROM information_schema.columns WHERE table_name='catalog_cookie'",
        )
        assert "price" in columns.split()
        after = len(list((root / "var/dev/backups").rglob("*before-migrate.dump")))
        assert after == before + 1
        assert git(root, "tag", "--list") == ""  # dev deploys are not tagged unless asked
    finally:
        stop_gunicorn(root)
    # A server that does not answer: one line, before anything is built.
    releases = sorted((root / "var/dev/releases").iterdir())
    moved = {**env, "MLCTL_DATABASE__PORT": str(free_port())}
    p = mlctl(root, "dev", "deploy", env=moved)
    assert p.returncode != 0
    assert "the dev PostgreSQL database does not answer" in p.stderr.strip().splitlines()[-1]
    assert sorted((root / "var/dev/releases").iterdir()) == releases
