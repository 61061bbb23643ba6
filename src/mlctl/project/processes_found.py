"""The processes besides web that `mlctl init` finds in a project: a Procfile's lines (other
than web and release), else a Celery app module (a worker and a beat), and clearsessions for a
project with database sessions. Reading is `find`; the inventory lines are `block` (pure).

init writes the processes commented out: a worker needs its broker to answer on every server (e.g.
`packages: [redis-server]` for a Redis on localhost, or a shared one's URL in `env:`), which the
project's files cannot tell; a worker started without one restarts in a loop and fails `check`.
The clearsessions timer is written on: it needs only the database, which every deploy has.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mlctl.project.django_layout import python_files

PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(\S.*)$")
CELERY_APP = re.compile(r"^\s*(?:from\s+celery\s+import\s+.*\bCelery\b|import\s+celery\b)", re.M)
CELERY_CALL = re.compile(r"\bCelery\s*\(")
REDIS_MARK = re.compile(r"redis://")
SKIP = {"web", "release"}


@dataclass(frozen=True)
class Found:
    processes: dict[str, dict]  # name -> {command, hosts[, stop_timeout]}
    source: str  # where they were found, for the comment ("" when nothing was)
    redis: bool  # the settings name a redis:// URL
    sessions: bool  # django.contrib.sessions is installed


def procfile_processes(text: str) -> dict[str, dict]:
    out = {}
    for line in text.splitlines():
        m = PROCFILE_LINE.match(line.strip())
        if m and m.group(1).lower() not in SKIP:
            name = re.sub(r"[^a-z0-9_-]", "-", m.group(1).lower()).lstrip("-_0123456789")
            out[name or "proc"] = {"command": m.group(2).strip(), "hosts": "all"}
    return out


def celery_module(manage_dir: Path) -> str:
    """The dotted module (from manage.py's directory) that creates the Celery app, or ""."""
    for path in python_files(manage_dir):
        text = path.read_text(errors="replace")
        if CELERY_APP.search(text) and CELERY_CALL.search(text):
            rel = path.relative_to(manage_dir).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            return ".".join(parts)
    return ""


def celery_processes(module: str, project: str) -> dict[str, dict]:
    # beat keeps its schedule file in the unit's state directory: the release is read-only.
    schedule = f"/var/lib/mlctl-{project}-beat/celerybeat-schedule"
    return {
        "worker": {"command": f"celery -A {module} worker -l info", "hosts": "all",
                   "stop_timeout": 60},
        "beat": {"command": f"celery -A {module} beat -l info -s {schedule}", "hosts": 1},
    }  # fmt: skip


def find(manage_dir: Path, settings_text: str, project: str) -> Found:
    procfile = manage_dir / "Procfile"
    redis = bool(REDIS_MARK.search(settings_text))
    sessions = "django.contrib.sessions" in settings_text
    if procfile.is_file():
        found = procfile_processes(procfile.read_text(errors="replace"))
        if found:
            return Found(found, "Procfile", redis, sessions)
    module = celery_module(manage_dir)
    if module:
        return Found(celery_processes(module, project), f"{module} (a Celery app)", redis, sessions)
    return Found({}, "", redis, sessions)


def _flow(entry: dict) -> str:
    def scalar(value) -> str:
        return f'"{value}"' if isinstance(value, str) and " " in value else str(value)

    return "{" + ", ".join(f"{k}: {scalar(v)}" for k, v in entry.items()) + "}"


def block(found: Found) -> str:
    """The inventory lines under `defaults:`, commented out (see the module's docstring)."""
    lines = []
    if found.processes:
        where = " (packages: [redis-server] runs one on each host)" if found.redis else ""
        lines += [
            f"  # Processes besides web, found in {found.source}. Uncomment them once",
            f"  # their broker answers on the servers{where}:",
            "  # processes:",
            *[f"  #   {name}: {_flow(e)}" for name, e in found.processes.items()],
        ]
        if found.redis:
            lines.append("  # packages: [redis-server]")
    if found.sessions:  # on: it needs nothing but the database every deploy has
        lines += [
            "  schedule:  # expired database sessions deleted daily, on the first host",
            '    clearsessions: {command: "manage.py clearsessions", on: daily}',
        ]
    return "".join(line + "\n" for line in lines)
