"""What a project installs: its lock or requirements file (or one init makes from
pyproject.toml), the names in it, and what the servers need that it lacks.

`find_requirements` reads the files; what it says about them (`server_notes`, `lock_notes`,
`made_requirements`, `unlisted_packages`) are pure functions of what was read."""

from __future__ import annotations

import json
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from mlctl.config import schema
from mlctl.project.relpath import rel
from mlctl.project.settings_scan import Scan

REQUIREMENT_FILES = (
    "requirements.txt",
    "requirements/production.txt",
    "requirements/prod.txt",
    "requirements/base.txt",
    "requirements/requirements.txt",
    "requirements-prod.txt",
)
LOCK_FILES = ("uv.lock", "Pipfile.lock", "poetry.lock")
PSYCOPG = {"psycopg", "psycopg2", "psycopg2-binary", "psycopg-binary"}
# Import names whose distribution is named otherwise (the rest: the same name, - for _).
DISTRIBUTIONS = {
    "environ": "django-environ",
    "decouple": "python-decouple",
    "dotenv": "python-dotenv",
    "storages": "django-storages",
    "debug_toolbar": "django-debug-toolbar",
    "corsheaders": "django-cors-headers",
    "rest_framework": "djangorestframework",
    "crispy_forms": "django-crispy-forms",
    "allauth": "django-allauth",
    "anymail": "django-anymail",
    "psycopg2": "psycopg2-binary",
    "yaml": "PyYAML",
    "PIL": "Pillow",
}


@dataclass
class Requirements:
    """The install set init found or made, and what it found about it."""

    path: str  # relative to manage.py's directory
    text: str | None = None  # to write, when the project has no requirements file
    facts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.lower())


def requirement_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)", line)
        if m and not line.startswith("-"):
            names.add(normalized(m.group(1)))
    return names


def requirement_closure(path: Path, seen: set | None = None) -> str:
    """A requirements file with the files it includes (-r/-c), or the packages a lock file
    pins, one per line: for reading names only."""
    seen = seen if seen is not None else set()
    if path in seen or not path.is_file():
        return ""
    if path.name in ("uv.lock", "Pipfile.lock"):
        return "\n".join(locked_names(path))
    seen.add(path)
    text = path.read_text(errors="replace")
    out = [text]
    for m in re.finditer(r"^\s*(?:-r|--requirement|-c|--constraint)\s*=?\s*(\S+)", text, re.M):
        out.append(requirement_closure(path.parent / m.group(1), seen))
    return "\n".join(out)


def locked_names(path: Path) -> list[str]:
    """The package names a uv.lock or Pipfile.lock pins."""
    try:
        if path.name == "uv.lock":
            return [p["name"] for p in tomllib.loads(path.read_text()).get("package", [])]
        return list(json.loads(path.read_text()).get("default", {}))
    except (ValueError, KeyError, TypeError, AttributeError):
        return []


def find_lock(manage_dir: Path, git_root: Path | None) -> Path | None:
    """A lock file next to manage.py, else at the repository's root."""
    for folder in dict.fromkeys([manage_dir, git_root or manage_dir]):
        for name in LOCK_FILES:
            if (folder / name).is_file():
                return folder / name
    return None


def server_notes(names: set[str], where: str) -> list[str]:
    """What the servers need that the install set (`names`, its whole closure) lacks."""
    notes = []
    if "gunicorn" not in names:
        server = schema.ENV_KEYS["build"].kind["server"].default
        notes.append(
            f"the requirements name no gunicorn: mlctl installs {server} next to them on the "
            "servers (build.server in environments.yaml; your own pin in the requirements wins)"
        )
    if not names & PSYCOPG:
        notes.append(
            f"add psycopg[binary] to {where}: test and live use PostgreSQL "
            "(or set database: sqlite in environments.yaml)"
        )
    return notes


def lock_notes(lock_name: str, names: set[str]) -> list[str]:
    """A lock is installed exactly as locked: init never writes unpinned requirements then,
    it says what to add to the project's dependencies (and what to do with a poetry.lock)."""
    notes = server_notes(names, f"the project's dependencies and lock again ({lock_name})")
    if lock_name == "poetry.lock":
        notes.append(
            "EDIT: mlctl cannot install poetry.lock exactly: `poetry export -f requirements.txt "
            "-o requirements.txt`, commit it and set requirements: requirements.txt"
        )
    return notes


def lock_requirements(lock: Path, manage_dir: Path) -> Requirements:
    path = rel(lock, manage_dir)
    if lock.name == "poetry.lock":
        text = lock.read_text(errors="replace").lower()
        names = {n for n in PSYCOPG | {"gunicorn"} if re.search(rf"[\"']{n}[\"']", text)}
    else:
        names = requirement_names(requirement_closure(lock))
    facts = [f"requirements {path} (installed exactly as locked)"]
    return Requirements(path, None, facts, lock_notes(lock.name, names))


def made_requirements(deps: list[str], origin: str) -> tuple[str, str]:
    """(the requirements.txt init writes from `deps`, with what the servers need, the note
    that says so)."""
    names = requirement_names("\n".join(deps))
    deps = list(deps)
    if "gunicorn" not in names:
        deps.append("gunicorn")
    if not names & PSYCOPG:
        deps.append("psycopg[binary]")
    header = (
        "# Written by `mlctl init` from " + origin + ".\n"
        "# mlctl installs this file into each release's venv: pin versions (e.g. pip freeze).\n"
    )
    note = (
        f"requirements.txt was made from {origin}: mlctl installs a requirements file into each "
        "release's venv; pin the versions and keep it in sync"
    )
    return header + "".join(f"{d}\n" for d in deps), note


def find_requirements(manage_dir: Path, git_root: Path | None = None) -> Requirements:
    """The project's lock, else its requirements file, else one made from pyproject.toml's
    dependencies (or the Django next to mlctl)."""
    lock = find_lock(manage_dir, git_root)
    if lock:
        return lock_requirements(lock, manage_dir)
    for path in REQUIREMENT_FILES:
        if (manage_dir / path).is_file():
            names = requirement_names(requirement_closure(manage_dir / path))
            return Requirements(path, None, [f"requirements {path}"], server_notes(names, path))
    deps = pyproject_dependencies(manage_dir / "pyproject.toml")
    if deps:
        fact, origin = "dependencies from pyproject.toml", "pyproject.toml [project] dependencies"
    else:
        deps = [_django_requirement()]
        fact = "no requirements file"
        origin = "the Django next to mlctl (no requirements file or pyproject.toml dependencies)"
    text, note = made_requirements(deps, origin)
    return Requirements("requirements.txt", text, [fact], [note])


def pyproject_dependencies(pyproject: Path) -> list[str]:
    if not pyproject.is_file():
        return []
    try:
        return list(tomllib.loads(pyproject.read_text()).get("project", {}).get("dependencies"))
    except (tomllib.TOMLDecodeError, TypeError):
        return []


def _django_requirement() -> str:
    try:
        from importlib.metadata import version

        return f"Django=={version('django')}"
    except Exception:  # noqa: BLE001 — Django is not installed next to mlctl
        return "Django"


def unlisted_packages(found: Scan, named: set[str]) -> list[tuple[str, str]]:
    """Third-party packages the settings import that the requirements do not name."""
    out = []
    for package in sorted(found.imports - set(sys.stdlib_module_names) - {"django", "mlctl"}):
        dist = DISTRIBUTIONS.get(package, package.replace("_", "-"))
        variants = {normalized(d) for d in (dist, package, f"django-{package}")}
        if dist.startswith("psycopg"):
            variants |= PSYCOPG
        if not variants & named:
            out.append((package, dist))
    return out


def unlisted_notes(found: Scan, listed: str, requirements: str) -> list[str]:
    """A note for each package the settings import that `listed` (the requirements' text with
    their includes) does not name; none when there is nothing to read."""
    return [
        f"the settings import {package}, which {requirements} does not name (nor its -r "
        f"files): add {dist} unless another requirement installs it"
        for package, dist in (unlisted_packages(found, requirement_names(listed)) if listed else [])
    ]
