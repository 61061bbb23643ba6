"""What `mlctl init` finds in a Django project (`inspect`): its layout, what its settings
read and need, its install set, its Python, its tests, its git repository.

Reading is done here; what the readings mean for the user (the facts init prints, the notes
that ask something of them) are the pure functions below `inspect`."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from mlctl.config import pyversion
from mlctl.core.errors import UsageError
from mlctl.project.django_layout import (
    choose_settings,
    find_manage,
    python_files,
    settings_file_of,
    wsgi_of,
)
from mlctl.project.project_requirements import (
    find_requirements,
    requirement_closure,
    unlisted_notes,
)
from mlctl.project.settings_scan import WRITTEN_BY_MLCTL, Read, Scan, is_secret_name, scan

GENERIC_NAMES = {"config", "conf", "settings", "core", "project", "src", "app", "main", "web"}
NAME_MAX = 41
# Variables the settings may read without the user setting them: the shared .env's own.
PROVIDED = WRITTEN_BY_MLCTL | {"DJANGO_DEBUG"}  # settings_deploy.py sets DJANGO_DEBUG
# Settings settings_deploy.py sets from the .env anyway: a variable the project requires only to
# fill one of them gets the .env's value (so it never raises), e.g. DJANGO_SECRET_KEY.
OVERRIDDEN = {
    "SECRET_KEY": "SECRET_KEY",
    "DATABASES": "DATABASE_URL",
    "ALLOWED_HOSTS": "ALLOWED_HOSTS",
}
# django.contrib.postgres, django-postgres-extra, or raw SQL on a PostgreSQL sequence (the
# `<table>_id_seq` that cookiecutter-django's sites migration reads: SQLite has none).
POSTGRES_MARK = re.compile(r"django\.contrib\.postgres(\.\w+)*|\bpsqlextra\b|\b\w+_id_seq\b")


@dataclass
class Project:
    """What init found in the Django project; paths are absolute."""

    target: Path  # where the files go (PATH)
    manage_dir: Path
    git_root: Path | None
    settings_module: str
    settings_file: Path
    wsgi: str  # module:callable of the project's own WSGI application ("" when none)
    name: str
    requirements: str  # relative to manage_dir
    requirements_text: str | None  # to write when the project has no requirements file
    python_need: tuple[str, str] | None  # (constraint, where it was found)
    tests: str
    branch: str
    facts: list[str] = field(default_factory=list)  # what was found, one phrase each
    notes: list[str] = field(default_factory=list)  # what the user should know or do
    settings_why: str = ""  # why these settings were chosen
    required_env: list[Read] = field(default_factory=list)  # to fill in, EDIT lines
    env_aliases: dict[str, str] = field(default_factory=dict)  # variable -> the .env's
    postgres_why: str = ""  # why the project needs PostgreSQL also on dev ("" when not)

    @property
    def deploy_dir(self) -> Path:
        """The package directory that receives settings_deploy.py and friends."""
        return self.settings_file.parent

    @property
    def deploy_package(self) -> str:
        return self.settings_module.rpartition(".")[0]

    def module(self, leaf: str) -> str:
        return f"{self.deploy_package}.{leaf}" if self.deploy_package else leaf

    @property
    def depth(self) -> int:
        """How many parents up from a file in deploy_dir is manage_dir."""
        return len(self.deploy_dir.relative_to(self.manage_dir).parts)


@dataclass
class SettingsFound:
    """The settings module init chose and what reading it (and its imports) found."""

    module: str
    why: str
    file: Path
    scan: Scan
    wsgi: str
    postgres_why: str
    required: list[Read]
    aliases: dict[str, str]


def read_settings(manage_dir: Path) -> SettingsFound:
    module, why = choose_settings(manage_dir)
    file = settings_file_of(manage_dir, module)
    # The settings as they run: through their imports (from .base import *), never imported.
    found = scan(project_reader(manage_dir), module)
    wsgi = wsgi_of(manage_dir, module, found.value("WSGI_APPLICATION"))
    required, aliases = required_env(found)
    return SettingsFound(
        module, why, file, found, wsgi, needs_postgres(manage_dir), required, aliases
    )


def inspect(target: Path) -> Project:
    manage_dir = find_manage(target)
    s = read_settings(manage_dir)
    facts, notes = settings_report(s)
    git_root = git_root_of(target)
    notes += git_notes(target, manage_dir, git_root)
    reqs = find_requirements(manage_dir, git_root)
    python_need = project_python(manage_dir, git_root)
    tests = tests_command(uses_pytest(manage_dir, git_root))
    facts += [*reqs.facts, python_fact(python_need), f"tests: {tests}"]
    listed = reqs.text or requirement_closure(manage_dir / reqs.path)
    notes += reqs.notes + unlisted_notes(s.scan, listed, reqs.path)
    return Project(
        target=target,
        manage_dir=manage_dir,
        git_root=git_root,
        settings_module=s.module,
        settings_file=s.file,
        wsgi=s.wsgi,
        name=project_name(s.module, manage_dir, git_root),
        requirements=reqs.path,
        requirements_text=reqs.text,
        python_need=python_need,
        tests=tests,
        branch=git_branch(git_root),
        facts=facts,
        notes=notes,
        settings_why=s.why,
        required_env=s.required,
        env_aliases=s.aliases,
        postgres_why=s.postgres_why,
    )


def project_reader(manage_dir: Path):
    """Files of the project by path relative to manage.py's directory (what Django imports)."""

    def read(rel: str) -> str | None:
        path = manage_dir / rel
        return path.read_text(errors="replace") if path.is_file() else None

    return read


def needs_postgres(manage_dir: Path) -> str:
    """Why the project cannot run on SQLite ("" when it can): models or migrations that use
    django.contrib.postgres (fields, indexes, search, operations), django-postgres-extra, or SQL
    on a PostgreSQL sequence. Only listing the app in INSTALLED_APPS does not: SQLite migrates
    that."""
    for path in python_files(manage_dir):
        rel = path.relative_to(manage_dir)
        if (
            "migrations" not in rel.parts[:-1]
            and path.stem != "models"
            and "models" not in rel.parts
        ):
            continue
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        m = POSTGRES_MARK.search(text)
        if m:
            return f"{m.group(0)} in {rel.as_posix()}"
    return ""


def git_root_of(path: Path) -> Path | None:
    try:
        p = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        return None
    return Path(p.stdout.strip()).resolve() if p.returncode == 0 and p.stdout.strip() else None


def git_branch(root: Path | None) -> str:
    if root is None:
        return "main"
    p = subprocess.run(
        ["git", "-C", str(root), "symbolic-ref", "--short", "-q", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    branch = p.stdout.strip()
    return branch if re.fullmatch(r"[A-Za-z0-9._/-]+", branch or "") else "main"


def project_python(manage_dir: Path, git_root: Path | None) -> tuple[str, str] | None:
    """The Python the project needs, from its files next to manage.py or at the repo's root."""

    def read(rel: str) -> str | None:
        for folder in dict.fromkeys([manage_dir, git_root or manage_dir]):
            if (folder / rel).is_file():
                return (folder / rel).read_text(errors="replace")
        return None

    return pyversion.from_project(read)


def uses_pytest(manage_dir: Path, git_root: Path | None) -> bool:
    for d in {manage_dir, git_root or manage_dir}:
        if (d / "pytest.ini").is_file() or (d / "conftest.py").is_file():
            return True
        for name in ("pyproject.toml", "setup.cfg", "tox.ini"):
            f = d / name
            if f.is_file() and re.search(
                r"^\[(tool:pytest|tool\.pytest[^\]]*|pytest)\]", f.read_text(errors="replace"), re.M
            ):
                return True
    return False


# ---------------------------------------------------------------- what the readings mean


def settings_report(s: SettingsFound) -> tuple[list[str], list[str]]:
    """(facts, notes) about the settings: WSGI, static files, the database, PostgreSQL on
    dev, the variables the user must set."""
    facts, notes = [f"settings {s.module}"], []
    if s.wsgi:
        facts.append(f"WSGI {s.wsgi}")
    else:
        notes.append("no WSGI module found: wsgi_deploy.py builds Django's default application")
    static_fact, static = static_notes(s.scan)
    database_fact, database = database_notes(s.scan.text())
    facts += [static_fact, database_fact]
    notes += static + database
    if s.postgres_why:
        notes.append(
            f"this project needs PostgreSQL ({s.postgres_why}): dev uses a PostgreSQL server of "
            "yours too; fill in its EDIT lines under environments.dev.database"
        )
    return facts, notes + required_notes(s.required)


def static_notes(found: Scan) -> tuple[str, list[str]]:
    """(the fact about STATIC_ROOT, notes where the settings disagree with what nginx serves)."""
    static_root = found.value("STATIC_ROOT")
    static_url = found.value("STATIC_URL")
    notes = []
    if static_root and "staticfiles" not in static_root:
        notes.append(
            f"STATIC_ROOT is {static_root} in {found.assigned_in['STATIC_ROOT']}; on servers "
            "settings_deploy.py sets it to staticfiles/ next to manage.py, which nginx serves"
        )
    if static_url and static_url.strip("/") != "static":
        notes.append(
            f"STATIC_URL is {static_url!r}: mlctl's nginx site serves /static/ "
            "(change one of them)"
        )
    return (f"STATIC_ROOT {static_root}" if static_root else "STATIC_ROOT unset"), notes


def database_notes(text: str) -> tuple[str, list[str]]:
    """(the fact about the database the settings (`text`, with their imports) configure, a
    note when it is neither SQLite nor PostgreSQL)."""
    engine = re.search(r"django\.db\.backends\.(\w+)", text)
    url_style = bool(re.search(r"DATABASE_URL|dj_database_url|\benv\.db\(|\.db_url\(", text))
    database = engine.group(1) if engine else ("DATABASE_URL" if url_style else "unknown")
    fact = f"database {database}" + (" via DATABASE_URL" if url_style and engine else "")
    if engine and engine.group(1) not in ("sqlite3", "postgresql", "postgresql_psycopg2"):
        return fact, [
            f"the settings use {engine.group(1)}; mlctl manages PostgreSQL (test, live) and "
            "SQLite (dev): the servers get PostgreSQL through DATABASE_URL"
        ]
    return fact, []


def required_env(found: Scan) -> tuple[list[Read], dict[str, str]]:
    """(variables the user must set, variables settings_deploy.py fills from the .env)."""
    required, aliases = [], {}
    for read in found.required:
        if read.name in PROVIDED or read.name in aliases:
            continue
        if read.setting in OVERRIDDEN:
            aliases[read.name] = OVERRIDDEN[read.setting]
        elif read.name not in {r.name for r in required}:
            required.append(read)
    return required, aliases


def required_notes(required: list[Read]) -> list[str]:
    return [
        f"{read.name} is required by {read.module} (no default): set it under "
        f"{'secrets' if is_secret_name(read.name) else 'env'}: in environments.yaml (its EDIT line)"
        for read in required
    ]


def git_notes(target: Path, manage_dir: Path, git_root: Path | None) -> list[str]:
    """A note when the project is not in git; UsageError when manage.py is outside it."""
    if git_root is None:
        return [
            f"{target} is not in a git repository: mlctl deploys commits "
            "(git init && git add -A && git commit)"
        ]
    if manage_dir != git_root and git_root not in manage_dir.parents:
        raise UsageError(f"{manage_dir} is outside the git repository {git_root}")
    return []


def python_fact(need: tuple[str, str] | None) -> str:
    return f"Python {need[0]} ({need[1]})" if need else "no Python version stated"


def tests_command(pytest: bool) -> str:
    return "python -m pytest -q" if pytest else "python manage.py test"


def project_name(settings_module: str, manage_dir: Path, git_root: Path | None) -> str:
    """The settings' top package, unless it is a generic name (config, core, ...): then the
    directory of manage.py, else the repository's."""
    top = settings_module.split(".")[0]
    raw = top if top.lower() not in GENERIC_NAMES else manage_dir.name
    if raw.lower() in GENERIC_NAMES and git_root is not None:
        raw = git_root.name
    return sanitize_name(raw)


def sanitize_name(raw: str) -> str:
    name = re.sub(r"[^a-z0-9_-]+", "-", raw.lower()).strip("-_")
    name = re.sub(r"^[^a-z]+", "", name)[:NAME_MAX].rstrip("-_")
    return name or "app"
