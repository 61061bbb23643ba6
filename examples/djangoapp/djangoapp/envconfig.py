"""Small helpers that turn environment variables into Django settings.

Kept free of Django imports so they can be unit-tested without settings.
"""

import os
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

TRUE_VALUES = {"1", "true", "yes", "on"}

ENGINES = {
    "postgres": "django.db.backends.postgresql",
    "postgresql": "django.db.backends.postgresql",
    "pgsql": "django.db.backends.postgresql",
    "sqlite": "django.db.backends.sqlite3",
    "sqlite3": "django.db.backends.sqlite3",
}


def load_dotenv(path):
    """Load simple KEY=VALUE lines from `path` into os.environ.

    Blank lines and lines starting with '#' are ignored, an optional leading
    'export ' is accepted and one pair of surrounding quotes is stripped.
    Variables that are already set in the real environment win.
    """
    path = Path(path)
    if not path.is_file():
        return
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        key = key.strip().removeprefix("export ").strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        if key:
            os.environ.setdefault(key, value)


def env_bool(name, default=False):
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in TRUE_VALUES


def env_list(name, default=""):
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def _engine(name):
    name = name.strip()
    return ENGINES.get(name.lower(), name)


def _sqlite_path(name, base_dir):
    if not name or name == ":memory:":
        return ":memory:"
    path = Path(name)
    return str(path if path.is_absolute() else Path(base_dir) / path)


def parse_database_url(url, base_dir):
    """Parse a DATABASE_URL into a Django DATABASES entry.

    postgres://user:pass@host:5432/name?sslmode=require  (also postgresql://)
    sqlite:///relative/path.db   -> relative to base_dir
    sqlite:////absolute/path.db  -> absolute path
    User, password, host and database name may be percent-encoded.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ENGINES:
        raise ValueError(f"Unsupported DATABASE_URL scheme: {parts.scheme!r}")
    engine = ENGINES[scheme]

    if engine.endswith("sqlite3"):
        # sqlite:///db.sqlite3 -> path "/db.sqlite3": drop the separator slash.
        path = unquote(parts.netloc + parts.path)
        path = path[1:] if path.startswith("/") else path
        return {"ENGINE": engine, "NAME": _sqlite_path(path, base_dir)}

    config = {
        "ENGINE": engine,
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": unquote(parts.hostname or ""),
        "PORT": str(parts.port or ""),
    }
    options = dict(parse_qsl(parts.query))
    if options:
        config["OPTIONS"] = options
    return config


def database_from_env(base_dir):
    """DATABASE_URL, else DB_ENGINE/DB_NAME/..., else SQLite in base_dir."""
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        config = parse_database_url(url, base_dir)
    elif os.environ.get("DB_ENGINE") or os.environ.get("DB_NAME"):
        engine = _engine(os.environ.get("DB_ENGINE", "sqlite3"))
        name = os.environ.get("DB_NAME", "")
        if engine.endswith("sqlite3"):
            config = {"ENGINE": engine, "NAME": _sqlite_path(name or "db.sqlite3", base_dir)}
        else:
            config = {
                "ENGINE": engine,
                "NAME": name,
                "USER": os.environ.get("DB_USER", ""),
                "PASSWORD": os.environ.get("DB_PASSWORD", ""),
                "HOST": os.environ.get("DB_HOST", ""),
                "PORT": os.environ.get("DB_PORT", ""),
            }
    else:
        config = {"ENGINE": ENGINES["sqlite3"], "NAME": str(Path(base_dir) / "db.sqlite3")}

    if config["ENGINE"].endswith("postgresql"):
        # Fail fast (e.g. in /healthz) instead of hanging on an unreachable host.
        config.setdefault("OPTIONS", {}).setdefault(
            "connect_timeout", os.environ.get("DB_CONNECT_TIMEOUT", "5")
        )
        config["CONN_MAX_AGE"] = int(os.environ.get("DB_CONN_MAX_AGE", "60"))
        config["CONN_HEALTH_CHECKS"] = True
    return config
