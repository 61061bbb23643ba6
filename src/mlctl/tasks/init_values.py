"""The values init fills its templates with, decided from what it found (project_facts.Project).

Pure, apart from the two facts of this machine they take: the user name allowed to deploy to
live (`allowed_user`) and the interpreter the dev environment runs (`local_python`)."""

from __future__ import annotations

import getpass
import json
import re
import zlib

from mlctl import __version__
from mlctl.config import pyversion
from mlctl.project import processes_found, sdist
from mlctl.project.project_facts import Project
from mlctl.project.relpath import rel
from mlctl.project.settings_scan import is_secret_name

DEV_PORTS = (8100, 8999)  # a dev port per project name, in this range
YAML_WORDS = ("true", "false", "yes", "no", "on", "off", "null", "~")


def values_of(p: Project) -> dict:
    """Every placeholder of init's templates -> its value."""
    return {
        **environment_values(p),
        **path_values(p),
        **command_values(p),
        **settings_values(p),
        "name": p.name,
        "requires_python_line": requires_python_line(p.python_need),
        "dev_python": yaml_scalar(local_python(p.python_need)),
        "database_note": "test and live: PostgreSQL, created by `mlctl setup`; dev: "
        + ("a PostgreSQL server of yours" if p.postgres_why else "SQLite"),
        "db_name": p.name.replace("-", "_"),
        "branch": yaml_scalar(p.branch),
        "allowed_user": allowed_user(),
        "version": __version__,
        "processes_block": processes_block(p),
    }


def processes_block(p: Project) -> str:
    """The processes and schedule init proposes (project/processes_found.py says which and why)."""
    texts = [f.read_text(errors="replace") for f in sorted(p.settings_file.parent.glob("*.py"))]
    return processes_found.block(processes_found.find(p.manage_dir, "\n".join(texts), p.name))


def path_values(p: Project) -> dict:
    """Where the repository, the project, the inventory and the files init writes are, from the
    inventory's directory (target) and from the repository's root."""
    repo_root = p.git_root or p.target
    target_from_root = rel(p.target, repo_root)
    inventory_path = (
        "environments.yaml" if target_from_root == "." else f"{target_from_root}/environments.yaml"
    )
    subdir = "" if p.manage_dir == repo_root else rel(p.manage_dir, repo_root)
    return {
        "repo": yaml_scalar(rel(repo_root, p.target)),
        "subdir": yaml_scalar(subdir) if subdir else '""',
        "requirements": yaml_scalar(p.requirements),
        "inventory_path": inventory_path,
        "inventory_regex": re.escape(inventory_path),
        "settings_deploy_file": rel(p.deploy_dir / "settings_deploy.py", p.target),
        "wsgi_deploy_file": rel(p.deploy_dir / "wsgi_deploy.py", p.target),
        "health_file": rel(p.deploy_dir / "healthz.py", p.target),
        "project_from_root": rel(p.manage_dir, repo_root),
        "inventory_dir_from_root": target_from_root,
        "ci_logs_from_root": (
            "ci-logs/" if target_from_root == "." else f"{target_from_root}/ci-logs/"
        ),
    }


def command_values(p: Project) -> dict:
    """The commands the Makefile, the hooks and CI run, from where each runs them."""
    repo_root = p.git_root or p.target
    from_target = rel(p.manage_dir, p.target)
    from_root = rel(p.manage_dir, repo_root)
    tests_make = p.tests.replace("python ", "$(PYTHON) ", 1)
    return {
        "manage_cmd": in_dir(from_target, "python manage.py"),
        "tests": p.tests,
        "tests_make": in_dir(from_target, tests_make),
        "tests_hook": p.tests if from_root == "." else f"sh -c 'cd {from_root} && {p.tests}'",
        "install_from_root": ci_install(rel(p.manage_dir / p.requirements, repo_root)),
        "install_from_inventory": ci_install(rel(p.manage_dir / p.requirements, p.target)),
    }


def in_dir(folder: str, command: str) -> str:
    return command if folder == "." else f"cd {folder} && {command}"


def settings_values(p: Project) -> dict:
    """The modules settings_deploy.py, wsgi_deploy.py and healthz.py are and serve."""
    wsgi_deploy_module = p.module("wsgi_deploy")
    if p.wsgi:
        module, _, attr = p.wsgi.partition(":")
        wsgi_expr = f'importlib.import_module("{module}").{attr}'
    else:
        wsgi_expr = 'importlib.import_module("django.core.wsgi").get_wsgi_application()'
    return {
        "settings_module": p.settings_module,
        "settings_deploy": p.module("settings_deploy"),
        "wsgi": p.wsgi or "Django's default application",
        "wsgi_expr": wsgi_expr,
        "wsgi_deploy": f"{wsgi_deploy_module}:application",
        "wsgi_deploy_module": wsgi_deploy_module,
        "health_module": p.module("healthz"),
        "depth": p.depth,
    }


def requires_python_line(need: tuple[str, str] | None) -> str:
    if need is None:
        return "# requires_python: '>=3.12'  # none stated by the project; checked on every host"
    return (
        f"requires_python: {yaml_scalar(need[0])}  # from {need[1]}; "
        "checked on every host before anything changes"
    )


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
    aliases = "".join(
        f"# {name} is required by your settings for a value set below from the .env anyway.\n"
        f'os.environ.setdefault("{name}", os.environ.get("{source}", ""))\n'
        for name, source in p.env_aliases.items()
    )
    return {
        "env_lines": "".join(env_lines),
        "secrets_block": secrets_block,
        "dev_database": dev_database(p.name.replace("-", "_"), p.postgres_why),
        "dev_engine": "PostgreSQL" if p.postgres_why else "SQLite",
        "dev_port": dev_port(p.name),
        "env_aliases": aliases,
    }


def dev_database(db: str, postgres_why: str) -> str:
    """The dev environment's database: SQLite, or a PostgreSQL server of the user's (EDIT) when
    the project cannot run on SQLite (`postgres_why`)."""
    if not postgres_why:
        return "    database:\n      engine: sqlite\n      name: db.sqlite3\n"
    return (
        f"    database:  # EDIT: a PostgreSQL server of yours ({postgres_why})\n"
        "      engine: postgresql\n"
        f"      name: {db}_dev  # EDIT: an existing database\n"
        f"      user: {db}  # EDIT: a role that owns it\n"
        '      password: ""  # EDIT\n'
        "      host: localhost  # EDIT\n"
        "      port: 5432  # EDIT\n"
    )


def dev_port(name: str) -> int:
    """A port for the project's dev server that differs per project (two on one laptop)."""
    low, high = DEV_PORTS
    return low + zlib.crc32(name.encode()) % (high - low + 1)


def yaml_scalar(value: str) -> str:
    """A YAML scalar that reads back as exactly this string."""
    if re.fullmatch(r"[A-Za-z_./][A-Za-z0-9_./:-]*", value) and value.lower() not in YAML_WORDS:
        return value
    return json.dumps(value)


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


def allowed_user() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 — no user name in this environment
        user = ""
    return user if re.fullmatch(r"[a-z_][a-z0-9_.-]{0,31}", user or "") else "alice"


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
