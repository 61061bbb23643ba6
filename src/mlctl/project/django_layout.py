"""Where a Django project keeps what a server runs: manage.py, the settings module, the WSGI
application. Read from the files (never imported); the choice of settings is a pure function
of the defaults found (`pick_settings`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mlctl.core.errors import UsageError
from mlctl.project.relpath import rel

SKIP_DIRS = {".git", ".venv", "venv", "env", "node_modules", "__pycache__", "site-packages", "var"}
# Settings modules that are for development, and those that are what a server runs.
DEV_LEAVES = {"dev", "develop", "development", "local", "test", "tests", "testing", "ci"}
PRODUCTION_LEAVES = ("production", "prod", "live", "deploy")


def find_manage(target: Path, max_depth: int = 2) -> Path:
    """manage.py in target, else in its subdirectories (breadth first, shallow)."""
    level = [target]
    for _ in range(max_depth + 1):
        found = sorted(d for d in level if (d / "manage.py").is_file())
        if found:
            return found[0]
        level = [
            sub
            for d in level
            for sub in sorted(d.iterdir())
            if sub.is_dir() and sub.name not in SKIP_DIRS and not sub.name.startswith(".")
        ]
    raise UsageError(f"{target}: not a Django project (no manage.py here or in its subdirectories)")


def python_files(root: Path) -> Iterator[Path]:
    """The project's .py files below root, outside virtualenvs, VCS and build trees."""
    for path in sorted(root.iterdir()):
        if path.name in SKIP_DIRS or path.name.startswith("."):
            continue
        if path.is_dir():
            yield from python_files(path)
        elif path.suffix == ".py":
            yield path


def module_file(root: Path, module: str) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def settings_default(path: Path) -> str | None:
    """The DJANGO_SETTINGS_MODULE a manage.py or wsgi.py sets by default, if it sets one."""
    text = path.read_text(errors="replace")
    m = re.search(
        r"DJANGO_SETTINGS_MODULE['\"]\s*,\s*['\"]([A-Za-z_][\w.]*)['\"]", text
    ) or re.search(r"DJANGO_SETTINGS_MODULE['\"]\s*\]\s*=\s*['\"]([A-Za-z_][\w.]*)['\"]", text)
    return m.group(1) if m else None


def settings_module_of(manage_py: Path) -> str:
    found = settings_default(manage_py)
    if found:
        return found
    candidates = sorted(manage_py.parent.glob("*/settings.py"))
    if len(candidates) == 1:
        return f"{candidates[0].parent.name}.settings"
    raise UsageError(
        f"{manage_py}: no DJANGO_SETTINGS_MODULE default found "
        "(expected os.environ.setdefault('DJANGO_SETTINGS_MODULE', '<package>.settings'))"
    )


def is_dev_settings(module: str) -> bool:
    return module.rpartition(".")[2].lower() in DEV_LEAVES


def wsgi_file_of(manage_dir: Path, settings_module: str) -> Path | None:
    """The project's wsgi.py: in the settings' top package, else next to manage.py."""
    parts = settings_module.split(".")
    for package in dict.fromkeys([".".join(parts[:-1]), parts[0]]):
        found = module_file(manage_dir, f"{package}.wsgi") if package else None
        if found:
            return found
    return manage_dir / "wsgi.py" if (manage_dir / "wsgi.py").is_file() else None


@dataclass(frozen=True)
class SettingsDefaults:
    """The settings modules the project names by default, and where."""

    manage: str  # manage.py's DJANGO_SETTINGS_MODULE default
    wsgi: str | None  # wsgi.py's, None when it sets none
    wsgi_rel: str = "wsgi.py"  # that wsgi.py, relative to manage.py's directory


def choose_settings(manage_dir: Path) -> tuple[str, str]:
    """The settings module the servers should run and why (see pick_settings)."""
    manage_default = settings_module_of(manage_dir / "manage.py")
    wsgi_py = wsgi_file_of(manage_dir, manage_default)
    defaults = SettingsDefaults(
        manage=manage_default,
        wsgi=settings_default(wsgi_py) if wsgi_py else None,
        wsgi_rel=rel(wsgi_py, manage_dir) if wsgi_py else "wsgi.py",
    )
    return pick_settings(defaults, lambda module: module_file(manage_dir, module) is not None)


def pick_settings(d: SettingsDefaults, exists: Callable[[str], bool]) -> tuple[str, str]:
    """What the project runs in production (wsgi.py's default, a production module next to a
    default), before manage.py's default (often development). `exists(module)`: the project
    has that module."""
    if d.wsgi and d.wsgi != d.manage and not is_dev_settings(d.wsgi) and exists(d.wsgi):
        return d.wsgi, (
            f"{d.wsgi_rel}'s default, what the project serves; manage.py's {d.manage} is "
            "for development"
        )
    for base in dict.fromkeys(m for m in (d.wsgi, d.manage) if m):
        package, _, leaf = base.rpartition(".")
        if leaf in PRODUCTION_LEAVES:
            break
        production = next(
            (f"{package}.{p}" for p in PRODUCTION_LEAVES if package and exists(f"{package}.{p}")),
            None,
        )
        if production:
            owners = [n for n, m in (("manage.py", d.manage), (d.wsgi_rel, d.wsgi)) if m == base]
            return production, (
                f"the production module next to {base}, the default of {' and '.join(owners)}"
            )
    why = "manage.py's default"
    if is_dev_settings(d.manage):
        why += " (it looks like development settings and no production module was found)"
    return d.manage, why


def settings_file_of(manage_dir: Path, settings_module: str) -> Path:
    found = module_file(manage_dir, settings_module)
    if found is None:
        raise UsageError(
            f"settings module {settings_module} not found under {manage_dir} "
            "(mlctl expects packages next to manage.py)"
        )
    return found


def wsgi_of(manage_dir: Path, settings_module: str, wsgi_application: str | None) -> str:
    """module:callable of the project's WSGI application: its WSGI_APPLICATION setting, else
    <package>/wsgi.py; "" when it has neither."""
    dotted = wsgi_application
    if dotted and re.fullmatch(r"[A-Za-z_][\w.]*\.[A-Za-z_]\w*", dotted):
        module, _, attr = dotted.rpartition(".")
        if module_file(manage_dir, module):
            return f"{module}:{attr}"
    top = settings_module.split(".")[0]
    return f"{top}.wsgi:application" if module_file(manage_dir, f"{top}.wsgi") else ""
