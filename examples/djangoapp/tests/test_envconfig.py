import os
from pathlib import Path
from urllib.parse import quote

import pytest
from djangoapp.envconfig import database_from_env, load_dotenv, parse_database_url

BASE = Path("/srv/app/current")
DB_VARS = ["DATABASE_URL", "DB_ENGINE", "DB_NAME", "DB_USER", "DB_PASSWORD", "DB_HOST", "DB_PORT"]


@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_postgres_url(scheme):
    config = parse_database_url(f"{scheme}://app:secret@db.example.com:6543/notes", BASE)
    assert config == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "notes",
        "USER": "app",
        "PASSWORD": "secret",
        "HOST": "db.example.com",
        "PORT": "6543",
    }


def test_postgres_url_encoded_password_and_options():
    password = "p@ss:w/rd#?%&="
    url = f"postgres://app:{quote(password, safe='')}@127.0.0.1/notes?sslmode=require"
    config = parse_database_url(url, BASE)
    assert config["PASSWORD"] == password
    assert config["USER"] == "app"
    assert config["HOST"] == "127.0.0.1"
    assert config["PORT"] == ""
    assert config["OPTIONS"] == {"sslmode": "require"}


def test_postgres_url_socket_dir_host():
    config = parse_database_url("postgresql://app@%2Fvar%2Frun%2Fpostgresql/notes", BASE)
    assert config["HOST"] == "/var/run/postgresql"
    assert config["PASSWORD"] == ""


@pytest.mark.parametrize(
    "url, name",
    [
        ("sqlite:///db.sqlite3", str(BASE / "db.sqlite3")),
        ("sqlite:///data/notes.db", str(BASE / "data/notes.db")),
        ("sqlite:////var/lib/app/notes.db", "/var/lib/app/notes.db"),
        ("sqlite://:memory:", ":memory:"),
    ],
)
def test_sqlite_url(url, name):
    assert parse_database_url(url, BASE) == {"ENGINE": "django.db.backends.sqlite3", "NAME": name}


def test_unknown_scheme_rejected():
    with pytest.raises(ValueError):
        parse_database_url("mysql://u:p@h/db", BASE)


def test_database_from_env_defaults_to_sqlite(monkeypatch):
    for var in DB_VARS:
        monkeypatch.delenv(var, raising=False)
    assert database_from_env(BASE) == {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(BASE / "db.sqlite3"),
    }


def test_database_from_env_parts(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    env = {
        "DB_ENGINE": "postgresql",
        "DB_NAME": "notes",
        "DB_USER": "app",
        "DB_PASSWORD": "s3cret",
        "DB_HOST": "db",
        "DB_PORT": "5433",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    config = database_from_env(BASE)
    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert (config["NAME"], config["USER"], config["PASSWORD"]) == ("notes", "app", "s3cret")
    assert (config["HOST"], config["PORT"]) == ("db", "5433")
    assert config["OPTIONS"]["connect_timeout"] == "5"


def test_load_dotenv_does_not_override(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "environ", {"DOTENV_KEEP": "from-env"})
    (tmp_path / ".env").write_text(
        "# comment\n\nDOTENV_KEEP=from-file\nexport DOTENV_NEW=a=b\nDOTENV_QUOTED='x y'\n"
    )
    load_dotenv(tmp_path / ".env")
    assert os.environ == {"DOTENV_KEEP": "from-env", "DOTENV_NEW": "a=b", "DOTENV_QUOTED": "x y"}
