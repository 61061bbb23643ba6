"""`mlctl init [PATH]`: adopt mlctl in an existing Django project.

Finds manage.py (PATH or a subdirectory, shallow), the settings module (manage.py's
DJANGO_SETTINGS_MODULE default), the WSGI application, the requirements file and the static and
database settings, then writes into PATH:

    environments.yaml, fabfile.py, tasks.py, Makefile, .pre-commit-config.yaml, WORKFLOW.md
    <settings package>/settings_deploy.py   your settings + the server's .env (DATABASE_URL, ...)
    <settings package>/wsgi_deploy.py       your WSGI app with those settings (what gunicorn runs)
    <settings package>/healthz.py           GET /healthz: the release served, database state
    requirements.txt                        only when the project has none (from pyproject.toml)
    .github/workflows/deploy.yml or .gitlab-ci.yml   with --ci

An existing file is never overwritten without --force: it is skipped and named. The exception is
an existing .pre-commit-config.yaml: the hooks it lacks are added to it (precommit.py). A second
run changes nothing and says so.
"""

from __future__ import annotations

import ast
import getpass
import json
import re
import subprocess
import tomllib
import zlib
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from . import __version__, console, precommit, pyversion, schema, sdist
from .errors import UsageError
from .settings_scan import WRITTEN_BY_MLCTL, Read, Scan, is_secret_name, scan

SKIP_DIRS = {".git", ".venv", "venv", "env", "node_modules", "__pycache__", "site-packages", "var"}
GENERIC_NAMES = {"config", "conf", "settings", "core", "project", "src", "app", "main", "web"}
NAME_MAX = 41
REQUIREMENT_FILES = (
    "requirements.txt",
    "requirements/production.txt",
    "requirements/prod.txt",
    "requirements/base.txt",
    "requirements/requirements.txt",
    "requirements-prod.txt",
)
PLACEHOLDER = re.compile(r"\{\{([a-z_]+)\}\}")
# Settings modules that are for development, and those that are what a server runs.
DEV_LEAVES = {"dev", "develop", "development", "local", "test", "tests", "testing", "ci"}
PRODUCTION_LEAVES = ("production", "prod", "live", "deploy")
# Variables the settings may read without the user setting them: the shared .env's own.
PROVIDED = WRITTEN_BY_MLCTL | {"DJANGO_DEBUG"}  # settings_deploy.py sets DJANGO_DEBUG
# Settings settings_deploy.py sets from the .env anyway: a variable the project requires only to
# fill one of them gets the .env's value (so it never raises), e.g. DJANGO_SECRET_KEY.
OVERRIDDEN = {
    "SECRET_KEY": "SECRET_KEY",
    "DATABASES": "DATABASE_URL",
    "ALLOWED_HOSTS": "ALLOWED_HOSTS",
}
DEV_PORTS = (8100, 8999)  # a dev port per project name, in this range


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


# ---------------------------------------------------------------- the task


def init_task(selection, path=".", force=False, ci=None) -> int:
    target = Path(path or ".").expanduser().resolve()
    if not target.is_dir():
        raise UsageError(f"{path}: not a directory")
    if ci not in (None, "github", "gitlab"):
        raise UsageError(f"--ci {ci!r}: expected github or gitlab")
    project = inspect(target)
    hooks = precommit_plan(project, values_of(project))  # refuses an unreadable config first
    hooks_rel = precommit_rel(project)
    console.info(
        f"Django project {project.name} in {project.manage_dir}: " + "; ".join(project.facts)
    )
    console.info(f"settings {project.settings_module}: {project.settings_why}")
    written, skipped = [], []
    for rel, text in render_files(project, ci).items():
        dest = target / rel
        if dest.exists() and not force and rel != hooks_rel:  # the hooks are merged, not skipped
            if dest.read_text(errors="replace") != text:
                skipped.append(rel)
            continue
        if dest.exists() and dest.read_text(errors="replace") == text:
            continue
        merged = rel == hooks_rel and dest.exists()
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text)
        written.append(rel)
        if merged:
            kept = f"its {len(hooks.kept)} hook(s) kept"
            console.step("added", f"hooks {', '.join(hooks.added)} to {rel} ({kept})", "green")
        else:
            console.step("wrote", rel, "green")
        if rel == hooks_rel and hooks.not_added:
            console.step("not added", "; ".join(hooks.not_added))
    if ignore_dev_tree(target, project.git_root):
        written.append(".gitignore")
        console.step("wrote", ".gitignore (/var/: the dev deploy tree)", "green")
    for rel in skipped:
        console.step("skipped", f"{rel} (exists; --force overwrites it)", "yellow")
    if hooks.rewritten and hooks_rel in written:
        project.notes.append(
            f"{hooks_rel} was written anew from its data (its repos: is not a block list): its "
            "hooks and settings are kept, its comments and layout are not"
        )
    if hooks.push_not_installed and hooks_rel in written:
        project.notes.append(
            f"the tests hook runs on push, which the default_install_hook_types of {hooks_rel} "
            "does not install: add pre-push to it, or run pre-commit install --hook-type pre-push"
        )
    for note in project.notes:
        console.warn(note)
    if not written:
        why = (
            f"{len(skipped)} file(s) differ and were kept (--force overwrites them)"
            if skipped
            else "every file is already as mlctl init writes it"
        )
        console.done(f"nothing changed: {why}")
        return 0
    inv = _shown_rel(target / "environments.yaml")
    here = "" if target == Path.cwd().resolve() else f"cd {_shown_rel(target)} && "
    console.info("Next:")
    console.info(
        f"  1. edit the lines marked EDIT in {inv} (the test and live hosts), then commit: "
        "git add -A && git commit -m 'Deploy with mlctl'"
    )
    console.info(f"  2. {here}mlctl test setup")
    console.info(f"  3. {here}mlctl test deploy")
    if hooks_rel in written:
        root = project.git_root or target
        at_root = "" if root == Path.cwd().resolve() else f"cd {_shown_rel(root)} && "
        console.info(
            f"Hooks: {at_root}pre-commit install && pre-commit run --all-files, once: the first "
            "run may reformat many files; review them and commit them on their own"
        )
    console.done(f"wrote {len(written)} file(s), skipped {len(skipped)}")
    return 0


def ignore_dev_tree(target: Path, git_root: Path | None) -> bool:
    """Keep the dev deploy tree (./var/dev, next to the inventory) out of `git add -A`: add
    /var/ to the .gitignore next to the inventory unless git already ignores it."""
    probe = target / "var" / "dev"
    if git_root is not None:
        p = subprocess.run(
            ["git", "-C", str(target), "check-ignore", "-q", "--no-index", str(probe)],
            capture_output=True,
            check=False,
        )
        if p.returncode == 0:
            return False
    path = target / ".gitignore"
    text = path.read_text(errors="replace") if path.is_file() else ""
    if re.search(r"^/?var/?(/\*\*)?\s*$", text, re.M):
        return False
    sep = "" if not text or text.endswith("\n") else "\n"
    path.write_text(f"{text}{sep}# mlctl's dev deploy tree (environments.dev.deploy_to)\n/var/\n")
    return True


def _shown_rel(p: Path) -> str:
    try:
        return str(p.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


# ---------------------------------------------------------------- finding things


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


def choose_settings(manage_dir: Path) -> tuple[str, str]:
    """The settings module the servers should run and why: what the project runs in production
    (wsgi.py's default, a production module), before manage.py's default (often development)."""
    manage_default = settings_module_of(manage_dir / "manage.py")
    wsgi_py = wsgi_file_of(manage_dir, manage_default)
    wsgi_default = settings_default(wsgi_py) if wsgi_py else None
    wsgi_rel = _rel(wsgi_py, manage_dir) if wsgi_py else "wsgi.py"
    if (
        wsgi_default
        and wsgi_default != manage_default
        and not is_dev_settings(wsgi_default)
        and module_file(manage_dir, wsgi_default)
    ):
        return wsgi_default, (
            f"{wsgi_rel}'s default, what the project serves; manage.py's {manage_default} is "
            "for development"
        )
    for base in dict.fromkeys(m for m in (wsgi_default, manage_default) if m):
        package, _, leaf = base.rpartition(".")
        if leaf in PRODUCTION_LEAVES:
            break
        for production in PRODUCTION_LEAVES:
            if package and module_file(manage_dir, f"{package}.{production}"):
                owners = [
                    n
                    for n, m in (("manage.py", manage_default), (wsgi_rel, wsgi_default))
                    if m == base
                ]
                return f"{package}.{production}", (
                    f"the production module next to {base}, the default of {' and '.join(owners)}"
                )
    why = "manage.py's default"
    if is_dev_settings(manage_default):
        why += " (it looks like development settings and no production module was found)"
    return manage_default, why


def module_file(root: Path, module: str) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def setting(text: str, name: str) -> str | None:
    """The string value of a top-level `NAME = '...'` assignment, if there is one."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        tree = None
    if tree is not None:
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets
            ):
                if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                    return node.value.value
                return ast.unparse(node.value)
    return None


def sanitize_name(raw: str) -> str:
    name = re.sub(r"[^a-z0-9_-]+", "-", raw.lower()).strip("-_")
    name = re.sub(r"^[^a-z]+", "", name)[:NAME_MAX].rstrip("-_")
    return name or "app"


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


def requirement_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)", line)
        if m and not line.startswith("-"):
            names.add(re.sub(r"[-_.]+", "-", m.group(1).lower()))
    return names


LOCK_FILES = ("uv.lock", "Pipfile.lock", "poetry.lock")


def find_lock(manage_dir: Path, git_root: Path | None) -> Path | None:
    """A lock file next to manage.py, else at the repository's root."""
    for folder in dict.fromkeys([manage_dir, git_root or manage_dir]):
        for name in LOCK_FILES:
            if (folder / name).is_file():
                return folder / name
    return None


def lock_requirements(lock: Path, manage_dir: Path, notes: list[str], facts: list[str]) -> str:
    """A lock is installed exactly as locked: init never writes unpinned requirements then."""
    rel = _rel(lock, manage_dir)
    facts.append(f"requirements {rel} (installed exactly as locked)")
    if lock.name == "poetry.lock":
        text = lock.read_text(errors="replace").lower()
        names = {n for n in PSYCOPG | {"gunicorn"} if re.search(rf"[\"']{n}[\"']", text)}
    else:
        names = requirement_names(requirement_closure(lock))
    server_notes(names, f"the project's dependencies and lock again ({lock.name})", notes)
    if lock.name == "poetry.lock":
        notes.append(
            "EDIT: mlctl cannot install poetry.lock exactly: `poetry export -f requirements.txt "
            "-o requirements.txt`, commit it and set requirements: requirements.txt"
        )
    return rel


PSYCOPG = {"psycopg", "psycopg2", "psycopg2-binary", "psycopg-binary"}


def server_notes(names: set[str], where: str, notes: list[str]) -> None:
    """What the servers need that the install set (`names`, its whole closure) lacks."""
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


def find_requirements(
    manage_dir: Path, notes: list[str], facts: list[str], git_root: Path | None = None
):
    """(path relative to manage_dir, text to write or None)."""
    lock = find_lock(manage_dir, git_root)
    if lock:
        return lock_requirements(lock, manage_dir, notes, facts), None
    for rel in REQUIREMENT_FILES:
        if (manage_dir / rel).is_file():
            facts.append(f"requirements {rel}")
            names = requirement_names(requirement_closure(manage_dir / rel))
            server_notes(names, rel, notes)
            return rel, None
    deps: list[str] = []
    pyproject = manage_dir / "pyproject.toml"
    if pyproject.is_file():
        try:
            deps = list(tomllib.loads(pyproject.read_text()).get("project", {}).get("dependencies"))
        except (tomllib.TOMLDecodeError, TypeError):
            deps = []
    if deps:
        facts.append("dependencies from pyproject.toml")
        origin = "pyproject.toml [project] dependencies"
    else:
        deps = [_django_requirement()]
        facts.append("no requirements file")
        origin = "the Django next to mlctl (no requirements file or pyproject.toml dependencies)"
    names = requirement_names("\n".join(deps))
    if "gunicorn" not in names:
        deps.append("gunicorn")
    if not names & {"psycopg", "psycopg2", "psycopg2-binary", "psycopg-binary"}:
        deps.append("psycopg[binary]")
    notes.append(
        f"requirements.txt was made from {origin}: mlctl installs a requirements file into each "
        "release's venv; pin the versions and keep it in sync"
    )
    header = (
        "# Written by `mlctl init` from " + origin + ".\n"
        "# mlctl installs this file into each release's venv: pin versions (e.g. pip freeze).\n"
    )
    return "requirements.txt", header + "".join(f"{d}\n" for d in deps)


def _django_requirement() -> str:
    try:
        from importlib.metadata import version

        return f"Django=={version('django')}"
    except Exception:  # noqa: BLE001 — Django is not installed next to mlctl
        return "Django"


def project_python(manage_dir: Path, git_root: Path | None, facts: list[str]):
    """The Python the project needs, from its files next to manage.py or at the repo's root."""

    def read(rel: str) -> str | None:
        for folder in dict.fromkeys([manage_dir, git_root or manage_dir]):
            if (folder / rel).is_file():
                return (folder / rel).read_text(errors="replace")
        return None

    need = pyversion.from_project(read)
    facts.append(f"Python {need[0]} ({need[1]})" if need else "no Python version stated")
    return need


def local_python(need: tuple[str, str] | None) -> str:
    """The interpreter the dev environment runs: python3 when it fits, else the oldest
    pythonX.Y on this machine that does."""
    if need is None or pyversion.satisfied(sdist.version_of("python3"), need[0]):
        return "python3"
    for minor in range(10, 20):
        version = f"3.{minor}"
        if pyversion.satisfied(f"{version}.99", need[0]) and sdist.find_interpreter(version):
            return sdist.find_interpreter(version) or "python3"
    return "python3"


def ci_install(path: str) -> str:
    """The CI command that installs the project's packages (with its dev ones, for the tests):
    a lock through its own tool, never an unpinned resolve."""
    folder, name = path.rsplit("/", 1) if "/" in path else (".", path)
    exported = "&& python -m pip install -r requirements-ci.txt"
    if name == "uv.lock":
        return (
            "python -m pip install uv && uv export --frozen --no-emit-project "
            f"--project {folder} -o requirements-ci.txt {exported}"
        )
    if name == "Pipfile.lock":
        return (
            f"python -m pip install pipenv && (cd {folder} && pipenv requirements --dev) "
            f"> requirements-ci.txt {exported}"
        )
    return f"python -m pip install -r {path}"


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


def project_reader(manage_dir: Path):
    """Files of the project by path relative to manage.py's directory (what Django imports)."""

    def read(rel: str) -> str | None:
        path = manage_dir / rel
        return path.read_text(errors="replace") if path.is_file() else None

    return read


def inspect(target: Path) -> Project:
    manage_dir = find_manage(target)
    facts: list[str] = []
    notes: list[str] = []
    settings_module, settings_why = choose_settings(manage_dir)
    settings_file = module_file(manage_dir, settings_module)
    if settings_file is None:
        raise UsageError(
            f"settings module {settings_module} not found under {manage_dir} "
            "(mlctl expects packages next to manage.py)"
        )
    facts.append(f"settings {settings_module}")
    # The settings as they run: through their imports (from .base import *), never imported.
    found = scan(project_reader(manage_dir), settings_module)
    text = found.text()

    # The WSGI application: WSGI_APPLICATION, else <package>/wsgi.py.
    wsgi = ""
    dotted = found.value("WSGI_APPLICATION")
    if dotted and re.fullmatch(r"[A-Za-z_][\w.]*\.[A-Za-z_]\w*", dotted):
        module, _, attr = dotted.rpartition(".")
        if module_file(manage_dir, module):
            wsgi = f"{module}:{attr}"
    if not wsgi:
        top = settings_module.split(".")[0]
        if module_file(manage_dir, f"{top}.wsgi"):
            wsgi = f"{top}.wsgi:application"
    if wsgi:
        facts.append(f"WSGI {wsgi}")
    else:
        notes.append("no WSGI module found: wsgi_deploy.py builds Django's default application")

    # Static files and the database, as the settings (and what they import) say.
    static_root = found.value("STATIC_ROOT")
    static_url = found.value("STATIC_URL")
    facts.append(f"STATIC_ROOT {static_root}" if static_root else "STATIC_ROOT unset")
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
    engine = re.search(r"django\.db\.backends\.(\w+)", text)
    url_style = bool(re.search(r"DATABASE_URL|dj_database_url|\benv\.db\(|\.db_url\(", text))
    database = engine.group(1) if engine else ("DATABASE_URL" if url_style else "unknown")
    facts.append(f"database {database}" + (" via DATABASE_URL" if url_style and engine else ""))
    if engine and engine.group(1) not in ("sqlite3", "postgresql", "postgresql_psycopg2"):
        notes.append(
            f"the settings use {engine.group(1)}; mlctl manages PostgreSQL (test, live) and "
            "SQLite (dev): the servers get PostgreSQL through DATABASE_URL"
        )
    postgres_why = needs_postgres(manage_dir)
    if postgres_why:
        notes.append(
            f"this project needs PostgreSQL ({postgres_why}): dev uses a PostgreSQL server of "
            "yours too; fill in its EDIT lines under environments.dev.database"
        )
    required, aliases = required_env(found)
    for read in required:
        where = "secrets" if is_secret_name(read.name) else "env"
        notes.append(
            f"{read.name} is required by {read.module} (no default): set it under {where}: "
            "in environments.yaml (its EDIT line)"
        )

    git_root = git_root_of(target)
    if git_root is None:
        notes.append(
            f"{target} is not in a git repository: mlctl deploys commits "
            "(git init && git add -A && git commit)"
        )
    elif manage_dir != git_root and git_root not in manage_dir.parents:
        raise UsageError(f"{manage_dir} is outside the git repository {git_root}")

    requirements, req_text = find_requirements(manage_dir, notes, facts, git_root)
    python_need = project_python(manage_dir, git_root, facts)
    listed = req_text or requirement_closure(manage_dir / requirements)
    for package, dist in unlisted_packages(found, requirement_names(listed)) if listed else []:
        notes.append(
            f"the settings import {package}, which {requirements} does not name (nor its -r "
            f"files): add {dist} unless another requirement installs it"
        )
    pytest = uses_pytest(manage_dir, git_root)
    tests = "python -m pytest -q" if pytest else "python manage.py test"
    facts.append(f"tests: {tests}")

    top = settings_module.split(".")[0]
    raw_name = top if top.lower() not in GENERIC_NAMES else manage_dir.name
    if raw_name.lower() in GENERIC_NAMES and git_root is not None:
        raw_name = git_root.name
    return Project(
        target=target,
        manage_dir=manage_dir,
        git_root=git_root,
        settings_module=settings_module,
        settings_file=settings_file,
        wsgi=wsgi,
        name=sanitize_name(raw_name),
        requirements=requirements,
        requirements_text=req_text,
        python_need=python_need,
        tests=tests,
        branch=git_branch(git_root),
        facts=facts,
        notes=notes,
        settings_why=settings_why,
        required_env=required,
        env_aliases=aliases,
        postgres_why=postgres_why,
    )


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


def unlisted_packages(found: Scan, named: set[str]) -> list[tuple[str, str]]:
    """Third-party packages the settings import that the requirements do not name."""
    import sys

    out = []
    for package in sorted(found.imports - set(sys.stdlib_module_names) - {"django", "mlctl"}):
        dist = DISTRIBUTIONS.get(package, package.replace("_", "-"))
        variants = {re.sub(r"[-_.]+", "-", d.lower()) for d in (dist, package, f"django-{package}")}
        if dist.startswith("psycopg"):
            variants |= {"psycopg", "psycopg2", "psycopg2-binary", "psycopg-binary"}
        if not variants & named:
            out.append((package, dist))
    return out


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


# django.contrib.postgres, django-postgres-extra, or raw SQL on a PostgreSQL sequence (the
# `<table>_id_seq` that cookiecutter-django's sites migration reads: SQLite has none).
POSTGRES_MARK = re.compile(r"django\.contrib\.postgres(\.\w+)*|\bpsqlextra\b|\b\w+_id_seq\b")


def needs_postgres(manage_dir: Path) -> str:
    """Why the project cannot run on SQLite ("" when it can): models or migrations that use
    django.contrib.postgres (fields, indexes, search, operations), django-postgres-extra, or SQL
    on a PostgreSQL sequence. Only
    listing the app in INSTALLED_APPS does not: SQLite migrates that."""
    for path in _python_files(manage_dir):
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


def _python_files(root: Path):
    for path in sorted(root.iterdir()):
        if path.name in SKIP_DIRS or path.name.startswith("."):
            continue
        if path.is_dir():
            yield from _python_files(path)
        elif path.suffix == ".py":
            yield path


# ---------------------------------------------------------------- writing


def template(name: str) -> str:
    return files("mlctl").joinpath("templates", "init", name).read_text()


def render(text: str, values: dict) -> str:
    def sub(m: re.Match) -> str:
        if m.group(1) not in values:
            raise KeyError(f"template placeholder {{{{{m.group(1)}}}}} has no value")
        return str(values[m.group(1)])

    return PLACEHOLDER.sub(sub, text)


def yaml_scalar(value: str) -> str:
    """A YAML scalar that reads back as exactly this string."""
    if re.fullmatch(r"[A-Za-z_./][A-Za-z0-9_./:-]*", value) and value.lower() not in (
        "true",
        "false",
        "yes",
        "no",
        "on",
        "off",
        "null",
        "~",
    ):
        return value
    return json.dumps(value)


def _posix(p: Path) -> str:
    s = p.as_posix()
    return "." if s in ("", ".") else s


def _rel(path: Path, start: Path) -> str:
    import os

    return _posix(Path(os.path.relpath(path, start)))


def allowed_user() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 — no user name in this environment
        user = ""
    return user if re.fullmatch(r"[a-z_][a-z0-9_.-]{0,31}", user or "") else "alice"


def values_of(p: Project) -> dict:
    repo_root = p.git_root or p.target
    subdir = "" if p.manage_dir == repo_root else _rel(p.manage_dir, repo_root)
    settings_deploy = p.module("settings_deploy")
    wsgi_deploy_module = p.module("wsgi_deploy")
    project_from_target = _rel(p.manage_dir, p.target)
    target_from_root = _rel(p.target, repo_root)
    inventory_path = (
        "environments.yaml"
        if target_from_root == "."
        else (f"{target_from_root}/environments.yaml")
    )
    manage_cmd = (
        "python manage.py"
        if project_from_target == "."
        else f"cd {project_from_target} && python manage.py"
    )
    tests_make = p.tests.replace("python ", "$(PYTHON) ", 1)
    if project_from_target != ".":
        tests_make = f"cd {project_from_target} && {tests_make}"
    project_from_root = _rel(p.manage_dir, repo_root)
    tests_hook = (
        p.tests if project_from_root == "." else f"sh -c 'cd {project_from_root} && {p.tests}'"
    )
    if p.wsgi:
        module, _, attr = p.wsgi.partition(":")
        wsgi_expr = f'importlib.import_module("{module}").{attr}'
        wsgi_shown = p.wsgi
    else:
        wsgi_expr = 'importlib.import_module("django.core.wsgi").get_wsgi_application()'
        wsgi_shown = "Django's default application"
    engine_note = "test and live: PostgreSQL, created by `mlctl setup`; dev: " + (
        "a PostgreSQL server of yours" if p.postgres_why else "SQLite"
    )
    return {
        **environment_values(p),
        "name": p.name,
        "repo": yaml_scalar(_rel(repo_root, p.target)),
        "subdir": yaml_scalar(subdir) if subdir else '""',
        "settings_module": p.settings_module,
        "settings_deploy": settings_deploy,
        "wsgi": wsgi_shown,
        "wsgi_expr": wsgi_expr,
        "wsgi_deploy": f"{wsgi_deploy_module}:application",
        "wsgi_deploy_module": wsgi_deploy_module,
        "health_module": p.module("healthz"),
        "depth": p.depth,
        "requirements": yaml_scalar(p.requirements),
        "requires_python_line": (
            f"requires_python: {yaml_scalar(p.python_need[0])}  # from {p.python_need[1]}; "
            "checked on every host before anything changes"
            if p.python_need
            else "# requires_python: '>=3.12'  # none stated by the project; checked on every host"
        ),
        "dev_python": yaml_scalar(local_python(p.python_need)),
        "tests": p.tests,
        "tests_make": tests_make,
        "tests_hook": tests_hook,
        "database_note": engine_note,
        "db_name": p.name.replace("-", "_"),
        "branch": yaml_scalar(p.branch),
        "allowed_user": allowed_user(),
        "inventory_path": inventory_path,
        "inventory_regex": re.escape(inventory_path),
        "settings_deploy_file": _rel(p.deploy_dir / "settings_deploy.py", p.target),
        "wsgi_deploy_file": _rel(p.deploy_dir / "wsgi_deploy.py", p.target),
        "health_file": _rel(p.deploy_dir / "healthz.py", p.target),
        "manage_cmd": manage_cmd,
        "version": __version__,
        "install_from_root": ci_install(_rel(p.manage_dir / p.requirements, repo_root)),
        "install_from_inventory": ci_install(_rel(p.manage_dir / p.requirements, p.target)),
        "project_from_root": project_from_root,
        "inventory_dir_from_root": target_from_root,
        "ci_logs_from_root": (
            "ci-logs/" if target_from_root == "." else f"{target_from_root}/ci-logs/"
        ),
    }


def dev_port(name: str) -> int:
    """A port for the project's dev server that differs per project (two on one laptop)."""
    low, high = DEV_PORTS
    return low + zlib.crc32(name.encode()) % (high - low + 1)


def environment_values(p: Project) -> dict:
    """The inventory's env:/secrets: EDIT lines, the dev database and port, settings_deploy's
    aliases: what the settings require, as init found it."""
    env_lines, secret_lines = [], []
    for read in p.required_env:
        line = f'    {read.name}: ""  # EDIT: {read.module} raises without it\n'
        (secret_lines if is_secret_name(read.name) else env_lines).append(line)
    secrets_block = ""
    if secret_lines:
        secrets_block = (
            "  secrets:  # written to the servers' shared .env (0640), never printed\n"
            + "".join(secret_lines)
        )
    db = p.name.replace("-", "_")
    if p.postgres_why:
        dev_database = (
            f"    database:  # EDIT: a PostgreSQL server of yours ({p.postgres_why})\n"
            "      engine: postgresql\n"
            f"      name: {db}_dev  # EDIT: an existing database\n"
            f"      user: {db}  # EDIT: a role that owns it\n"
            '      password: ""  # EDIT\n'
            "      host: localhost  # EDIT\n"
            "      port: 5432  # EDIT\n"
        )
    else:
        dev_database = "    database:\n      engine: sqlite\n      name: db.sqlite3\n"
    aliases = "".join(
        f"# {name} is required by your settings for a value set below from the .env anyway.\n"
        f'os.environ.setdefault("{name}", os.environ.get("{source}", ""))\n'
        for name, source in p.env_aliases.items()
    )
    return {
        "env_lines": "".join(env_lines),
        "secrets_block": secrets_block,
        "dev_database": dev_database,
        "dev_engine": "PostgreSQL" if p.postgres_why else "SQLite",
        "dev_port": dev_port(p.name),
        "env_aliases": aliases,
    }


def render_files(p: Project, ci: str | None = None) -> dict[str, str]:
    """Every file init writes: path relative to the target -> its text."""
    v = values_of(p)
    out = {
        "environments.yaml": render(template("environments.yaml.tmpl"), v),
        "fabfile.py": template("fabfile.py.tmpl"),
        "tasks.py": template("tasks.py.tmpl"),
        "Makefile": render(template("Makefile.tmpl"), v),
        precommit_rel(p): precommit_plan(p, v).text,
        "WORKFLOW.md": render(template("WORKFLOW.md.tmpl"), v),
        v["settings_deploy_file"]: render(template("settings_deploy.py.tmpl"), v),
        v["wsgi_deploy_file"]: render(template("wsgi_deploy.py.tmpl"), v),
        v["health_file"]: render(template("healthz.py.tmpl"), v),
    }
    if p.requirements_text is not None:
        out[_rel(p.manage_dir / p.requirements, p.target)] = p.requirements_text
    root = p.git_root or p.target
    if ci == "github":
        out[_rel(root / ".github/workflows/deploy.yml", p.target)] = render(
            template("github-deploy.yml.tmpl"), v
        )
    elif ci == "gitlab":
        out[_rel(root / ".gitlab-ci.yml", p.target)] = render(template("gitlab-ci.yml.tmpl"), v)
    return out


# ---------------------------------------------------------------- pre-commit hooks


def precommit_rel(p: Project) -> str:
    # pre-commit reads its configuration at the repository's root only.
    return _rel((p.git_root or p.target) / ".pre-commit-config.yaml", p.target)


def precommit_plan(p: Project, v: dict) -> precommit.Plan:
    """The hooks init wants, merged into the project's own .pre-commit-config.yaml if it has one."""
    dirs = list(dict.fromkeys([p.git_root or p.target, p.manage_dir]))
    found = [
        (_rel(d / name, p.target), (d / name).read_text(errors="replace"))
        for d in dirs
        for name in precommit.SETTINGS_FILES
        if (d / name).is_file()
    ]
    settings = precommit.tool_settings(found)
    wanted = precommit.hooks(settings, v["inventory_path"], v["inventory_regex"], v["tests_hook"])
    path = p.target / precommit_rel(p)
    existing = path.read_text(errors="replace") if path.is_file() else None
    try:
        return precommit.plan(existing, wanted, settings, p.name)
    except precommit.ConfigError as e:
        raise UsageError(
            f"{path}: {e}; pre-commit cannot read it either: fix it, then run mlctl init again"
        ) from None
