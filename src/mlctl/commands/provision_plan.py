"""setup's plan: from one host's facts and the settings, the steps that make the host what the
settings say. Pure: nothing here reads or changes a host; generated secrets come from
`new_secret`, so a test can pin them.

Each step is reported as `changed` or `ok`; a step that is `ok` may still carry idempotent
actions (the .env's mode and owner are set again on every run).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote as urlquote

from mlctl.commands import maintenance
from mlctl.commands import provision as pv
from mlctl.commands.release import write_file
from mlctl.config.layout import Layout, sqlite_path, unit_name
from mlctl.core.errors import PreflightFailed
from mlctl.core.shell import Cmd


@dataclass(frozen=True)
class Action:
    """One command of a step; `stdin` is streamed to it; a failing command with a `refusal`
    stops setup with that message (and the command's last line of stderr as the hint)."""

    label: str
    cmd: Cmd
    stdin: bytes | None = None
    refusal: str = ""


@dataclass(frozen=True)
class Step:
    name: str
    changed: bool
    actions: tuple[Action, ...] = ()


@dataclass(frozen=True)
class HostFacts:
    """What the survey found on one host (see provision.survey)."""

    host: str  # the inventory's entry, as errors name the host
    address: str  # the host name or address, for ALLOWED_HOSTS
    user_exists: bool = False
    dirs_off: tuple[str, ...] = ()
    marker: str = ""
    env: dict = field(default_factory=dict)
    sums: dict = field(default_factory=dict)
    socket_enabled: bool = False
    socket_active: bool = False
    site_linked: bool = False
    has_role: bool = False
    has_db: bool = False
    can_login: bool = False


@dataclass(frozen=True)
class Plan:
    steps: list[Step]
    env: dict  # the shared .env once applied
    secrets: list[str]  # values to mask from now on


def host_facts(host: str, address: str, sections: dict[str, str]) -> HostFacts:
    """Facts from the survey's sections."""
    db = (sections.get("database") or "0,0").split(",")
    socket = sections.get("socket", "").split()
    return HostFacts(
        host=host,
        address=address,
        user_exists=sections.get("user") == "yes",
        dirs_off=tuple(sections.get("dirs", "").split()),
        marker=sections.get("marker", ""),
        env=pv.parse_env(sections.get("env", "")),
        sums=pv.parse_sums(sections.get("sums", "")),
        socket_enabled="enabled" in socket,
        socket_active="active" in socket,
        site_linked=sections.get("site") == "yes",
        has_role=db[0] == "1",
        has_db=db[-1] == "1",
        can_login=sections.get("login") == "yes",
    )


def plan(facts: HostFacts, cfg, new_secret: Callable[[int], str] = secrets.token_urlsafe) -> Plan:
    """The steps of a server's setup, in the order they run and are reported."""
    lay = Layout(cfg.deploy_to)
    values = server_env(facts.address, cfg, lay)
    if cfg.database.engine == "postgresql":
        values["PGPASSWORD"] = facts.env.get("PGPASSWORD") or new_secret(24)
    env = merged_env(facts.env, values, new_secret)
    app = cfg.app_user
    steps = [
        user_step(facts, app),
        dirs_step(facts, pv.dir_specs(lay, app, cfg.shared_dirs)),
        marker_step(facts.host, facts.marker, lay, cfg.name),
        database_step(facts, cfg, env),
        env_step(facts.env, env, lay, "0640", app),
        units_step(facts, cfg),
        site_step(facts, cfg),
    ]
    return Plan(steps, env, env_secrets(env))


# ---------------------------------------------------------------- the .env


def inventory_env(cfg) -> dict:
    """The inventory's `env:` and `secrets:`, as written into every shared .env."""
    return {k: str(v) for k, v in {**cfg.env, **cfg.secrets}.items()}


def allowed_hosts(address: str, server_name: str) -> str:
    names = ["localhost", "127.0.0.1", address]
    names += [n for n in server_name.split() if n not in ("_",)]
    return ",".join(dict.fromkeys(names))


def server_env(address: str, cfg, lay: Layout) -> dict:
    """The .env values setup owns on a server (the inventory's own come last and win)."""
    db = cfg.database
    out = {
        "DEBUG": "0",
        "MEDIA_ROOT": f"{lay.shared}/media",
        "ALLOWED_HOSTS": allowed_hosts(address, cfg.server_name),
    }
    if db.engine == "sqlite":
        out["DATABASE_URL"] = "sqlite:///" + sqlite_path(cfg)
    else:
        out.update(
            {
                "PGHOST": db.host,
                "PGPORT": str(db.port or 5432),
                "PGUSER": db.user or cfg.project["name"],
                "PGDATABASE": db.name,
            }
        )
    out.update(inventory_env(cfg))
    return out


def merged_env(old: dict, values: dict, new_secret: Callable[[int], str]) -> dict:
    """`values` merged into the .env found, keeping (or generating once) its secrets."""
    new = dict(old)
    if "SECRET_KEY" not in new:
        new["SECRET_KEY"] = new_secret(50)
    new.update(values)
    if "PGUSER" in new:
        if "PGPASSWORD" not in new:
            new["PGPASSWORD"] = old.get("PGPASSWORD") or new_secret(24)
        new["DATABASE_URL"] = (
            f"postgresql://{urlquote(new['PGUSER'])}:"
            f"{urlquote(new['PGPASSWORD'], safe='')}@{urlquote(new['PGHOST'], safe='')}:"
            f"{new['PGPORT']}/{urlquote(new['PGDATABASE'])}"
        )
    return new


def env_secrets(env: dict) -> list[str]:
    return [v for v in (env.get("SECRET_KEY"), env.get("PGPASSWORD"), env.get("DATABASE_URL")) if v]


def env_step(old: dict, new: dict, lay: Layout, mode: str, group: str | None) -> Step:
    """Write the .env only when it changes; else set its mode and owner again."""
    if new == old:
        return Step("shared .env", False, (Action("env file mode", pv.env_mode(lay, mode, group)),))
    text = pv.env_text(new).encode()
    return Step("shared .env", True, (Action("write .env", pv.write_env(lay, mode, group), text),))


# ---------------------------------------------------------------- the other steps


def user_step(facts: HostFacts, user: str) -> Step:
    if facts.user_exists:
        return Step("app user", False)
    return Step("app user", True, (Action("create app user", pv.create_user(user)),))


def dirs_step(facts: HostFacts, want: list[pv.DirSpec]) -> Step:
    """Any directory off: every one is set again (one round trip, idempotent)."""
    if not facts.dirs_off:
        return Step("directories", False)
    return Step("directories", True, (Action("create directories", pv.create_dirs(want)),))


def marker_step(host: str, found: str, lay: Layout, env: str) -> Step:
    """Record which environment owns this server; refuse to adopt one of another environment."""
    if found == env:
        return Step("marker", False)
    if found:
        raise PreflightFailed(f"{host}: this server belongs to {found!r}, not {env!r}")
    return Step(
        "marker", True, (Action("write marker", pv.write_marker(lay), f"{env}\n".encode()),)
    )


def database_step(facts: HostFacts, cfg, env: dict) -> Step:
    """PostgreSQL role and database owned by it; the password lives only in the .env. The role's
    password is set again when the .env's one does not log in."""
    if cfg.database.engine != "postgresql":
        return Step("database", False)
    can_login = facts.can_login and bool(facts.env.get("PGPASSWORD"))
    if facts.has_role and facts.has_db and can_login:
        return Step("database", False)
    role, db = env["PGUSER"], env["PGDATABASE"]
    sql = pv.role_and_database_sql(role, db, env["PGPASSWORD"], facts.has_role, facts.has_db)
    return Step(
        "database", True, (Action("create role and database", pv.psql_stdin(), sql.encode()),)
    )


def digest(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()


def file_writes(sums: dict, wanted: dict[str, str]) -> tuple[Action, ...]:
    """Write each wanted file whose content differs from the host's (or is missing)."""
    return tuple(
        Action(f"write {path}", write_file(path), content.encode())
        for path, content in wanted.items()
        if sums.get(path) != digest(content)
    )


def units_step(facts: HostFacts, cfg) -> Step:
    unit = unit_name(cfg.project["name"])
    writes = file_writes(facts.sums, pv.unit_files(cfg))
    if not writes and facts.socket_enabled and facts.socket_active:
        return Step("gunicorn units", False)
    return Step("gunicorn units", True, (*writes, Action("enable socket", pv.enable_socket(unit))))


NGINX_REFUSED = "nginx -t rejected the site; nginx was not reloaded"


def site_step(facts: HostFacts, cfg) -> Step:
    avail, enabled = pv.site_paths(cfg.project["name"])
    writes = file_writes(facts.sums, pv.site_file(cfg))
    if not writes and facts.site_linked:
        return Step("nginx site", False)
    enable = Action("enable nginx site", pv.enable_site(avail, enabled), refusal=NGINX_REFUSED)
    page_dir = Action("maintenance page dir", maintenance.make_state_dir(cfg.project["name"]))
    reload = Action("reload nginx", pv.reload_nginx())
    return Step("nginx site", True, (*(page_dir,) * bool(writes), *writes, enable, reload))
