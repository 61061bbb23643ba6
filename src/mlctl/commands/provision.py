"""What `setup` reads on a host and the commands that change it (pure builders).

`survey` is the one batched read of a host's state (tools, app user, directories, marker, the
shared .env, unit and site files, socket state, database); `parse_survey` turns its output into
facts. The planner (commands/provision_plan.py) decides from those facts which of the builders
below run.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files

from mlctl.commands.db import load_env
from mlctl.commands.service import drain_nginx
from mlctl.config.layout import SLOTS, AppSlots, Layout, unit_name
from mlctl.core.shell import Cmd, Raw, script
from mlctl.remote import envfile

FACT = "@@mlctl-fact"  # the line that starts one section of the survey's output
VERSION_TAG = "mlctl-python-version"
DEFAULT_SITE = "/etc/nginx/sites-enabled/default"


@dataclass(frozen=True)
class DirSpec:
    path: str
    owner: str
    group: str
    mode: str

    def spec(self) -> str:
        return f"{self.path}:{self.owner}:{self.group}:{self.mode}"


def dir_specs(lay: Layout, app: str, shared_dirs: list[str]) -> list[DirSpec]:
    """Owners and modes: code root-owned and read-only to the app; media and logs its own."""
    want = [
        DirSpec(lay.root, "root", "root", "755"),
        DirSpec(lay.releases, "root", "root", "755"),
        DirSpec(lay.venvs, "root", "root", "755"),
        DirSpec(f"{lay.root}/wheelhouse", "root", "root", "700"),
        DirSpec(lay.shared, "root", app, "750"),
        DirSpec(lay.backups.rsplit("/", 1)[0], "root", "root", "700"),
        DirSpec(lay.backups, "root", "root", "700"),
        DirSpec(lay.state, "root", "root", "755"),
        DirSpec(lay.metas, "root", "root", "755"),
    ]
    return want + [DirSpec(f"{lay.shared}/{d}", app, app, "750") for d in shared_dirs]


# ---------------------------------------------------------------- templates


def render(name: str, **values) -> str:
    return files("mlctl").joinpath("templates", name).read_text().format(**values)


def template_values(cfg) -> dict:
    unit = unit_name(cfg.project["name"])
    slots = AppSlots(cfg.project["name"])
    return {
        "project": cfg.project["name"],
        "unit": unit,
        "upstream_file": slots.upstream_file,
        "static_file": slots.static_file,
        "app_user": cfg.app_user,
        "deploy_to": cfg.deploy_to,
        "workers": cfg.gunicorn.workers,
        "preload": " --preload" if cfg.gunicorn.preload else "",
        "wsgi": cfg.project["wsgi"],
        "settings_module": cfg.project["settings_module"],
        "server_name": cfg.server_name,
    }


def unit_files(cfg) -> dict[str, str]:
    """The app slots' template units (socket and service), path -> content."""
    v = template_values(cfg)
    base = f"/etc/systemd/system/{v['unit']}@"
    return {
        f"{base}.socket": render("gunicorn.socket", **v),
        f"{base}.service": render("gunicorn.service", **v),
    }


def single_unit_files(project: str) -> tuple[str, str]:
    """The one socket and service an earlier mlctl wrote for a project, before its two slots."""
    base = f"/etc/systemd/system/{unit_name(project)}"
    return f"{base}.socket", f"{base}.service"


def site_paths(project: str) -> tuple[str, str]:
    """(sites-available file, sites-enabled link) of the project's nginx site."""
    return f"/etc/nginx/sites-available/{project}", f"/etc/nginx/sites-enabled/{project}"


def site_file(cfg) -> dict[str, str]:
    return {site_paths(cfg.project["name"])[0]: render("nginx.conf", **template_values(cfg))}


# ---------------------------------------------------------------- the survey


def _section(name: str, *body) -> list:
    return [Raw(f"echo; echo '{FACT} {name}';"), *body]


def required_tools(cfg) -> list[str]:
    tools = ["nginx", "systemctl", cfg.python]
    if cfg.database.engine == "postgresql":
        tools += ["psql", "pg_dump", "pg_restore"]
    return tools


def survey(cfg, role: str, database: str) -> Cmd:
    """Everything setup decides on, in one round trip. The database probe comes last and is the
    only part whose failure fails the read (a PostgreSQL server that does not answer)."""
    lay = Layout(cfg.deploy_to)
    avail, enabled = site_paths(cfg.project["name"])
    managed = [*unit_files(cfg), avail, *single_unit_files(cfg.project["name"])]
    parts = [
        *_section("tools", Raw("for t in"), Cmd.of(*required_tools(cfg))),
        Raw('; do command -v "$t" >/dev/null || echo "$t"; done;'),
        *_section("python", python_version(cfg.python), Raw("2>/dev/null;")),
        *_section("user", Cmd.of("id", "-u", cfg.app_user), Raw(">/dev/null 2>&1 && echo yes;")),
        *_section("dirs", *dirs_off(dir_specs(lay, cfg.app_user, cfg.shared_dirs))),
        *_read_files(lay),
        *_section("sums", Cmd.of("sha256sum", *managed), Raw("2>/dev/null;")),
        *_section("slots", *slot_state(lay, AppSlots(cfg.project["name"]))),
        *_section("site", *site_linked(avail, enabled), Raw("&& echo yes;")),
    ]
    if cfg.database.engine != "postgresql":
        return Cmd((*parts, Raw("true")))
    return Cmd((*parts, *_database_probe(lay, role, database)))


def python_version(python: str) -> Cmd:
    return Cmd.of(
        python, "-c", f"import platform; print({VERSION_TAG!r}, platform.python_version())"
    )


def dirs_off(want: list[DirSpec]) -> list:
    """Print each directory whose owner, group or mode is not the wanted one."""
    return [
        Raw("for spec in"),
        Cmd.of(*[w.spec() for w in want]),
        Raw(
            '; do d=${spec%%:*}; rest=${spec#*:}; cur=$(stat -c %U:%G:%a "$d" 2>/dev/null);'
            ' [ "$cur" = "$rest" ] || echo "$d"; done;'
        ),
    ]


def _read_files(lay: Layout) -> list:
    return [
        *_section("marker", Cmd.of("cat", lay.marker), Raw("2>/dev/null;")),
        *_section("env", Cmd.of("cat", lay.env_file), Raw("2>/dev/null;")),
    ]


def slot_state(lay: Layout, slots: AppSlots) -> list:
    """Lines `current RID`, `link SLOT RID`, `socket SLOT enabled|active`, `live SLOT` (the slot
    the included upstream file names; none before the first setup with two slots)."""
    out = [Raw('echo "current $(readlink'), Cmd.of(lay.current), Raw('2>/dev/null)";')]
    for slot in SLOTS:
        sock = f"{slots.unit(slot)}.socket"
        out += [
            Raw(f'echo "link {slot} $(readlink'),
            Cmd.of(lay.slot(slot)),
            Raw('2>/dev/null)";'),
            Cmd.of("systemctl", "is-enabled", "--quiet", sock),
            Raw(f"2>/dev/null && echo 'socket {slot} enabled';"),
            Cmd.of("systemctl", "is-active", "--quiet", sock),
            Raw(f"2>/dev/null && echo 'socket {slot} active';"),
            Cmd.of("grep", "-qs", slots.socket(slot), slots.upstream_file),
            Raw(f"&& echo 'live {slot}';"),
        ]
    return out


def parse_slots(text: str) -> dict:
    """slot_state's lines: {"current": rid, "live": slot, "links": {slot: rid},
    "sockets": {slot: {"enabled", "active"}}}."""
    out: dict = {"current": "", "live": "", "links": {}, "sockets": {}}
    for line in text.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "current":
            out["current"] = rest.strip().rsplit("/", 1)[-1]
        elif word == "live":
            out["live"] = rest.strip()
        elif word == "link":
            slot, _, target = rest.partition(" ")
            out["links"][slot] = target.strip().rsplit("/", 1)[-1]
        elif word == "socket":
            slot, _, state = rest.partition(" ")
            out["sockets"].setdefault(slot, set()).add(state.strip())
    return out


def site_linked(avail: str, enabled: str) -> list:
    """True when the site's link points at its file and nginx's default site is gone."""
    return [
        Raw('[ "$(readlink'),
        Cmd.of(enabled),
        Raw(')" = '),
        Cmd.of(avail),
        Raw("] && [ ! -e"),
        Cmd.of(DEFAULT_SITE),
        Raw("]"),
    ]


def _database_probe(lay: Layout, role: str, database: str) -> list:
    login = [Raw("("), load_env(lay.env_file), Raw("&& psql -tAXc 'select 1') >/dev/null 2>&1")]
    exists = psql_query(
        f"SELECT (SELECT count(*) FROM pg_roles WHERE rolname = {sql_literal(role)}) || ',' ||"
        f" (SELECT count(*) FROM pg_database WHERE datname = {sql_literal(database)})"
    )
    return [*_section("login", *login, Raw("&& echo yes;")), *_section("database", exists)]


def local_dirs(lay: Layout, shared_dirs: list[str]) -> Cmd:
    """A local environment's directories (owned by the user running mlctl)."""
    dirs = [lay.releases, lay.venvs, lay.backups, lay.metas, lay.run]
    return Cmd.of("mkdir", "-p", *dirs, *[f"{lay.shared}/{d}" for d in shared_dirs])


def database_login(env_file: str) -> Cmd:
    """The .env's PG* settings log in to PostgreSQL."""
    return Cmd((load_env(env_file), Raw("&& psql -tAXc 'select 1'")))


def local_survey(lay: Layout) -> Cmd:
    """A local environment's marker and .env (the rest of setup is a server's)."""
    return Cmd((*_read_files(lay), Raw("true")))


def parse_survey(stdout: str) -> dict[str, str]:
    """The survey's sections, name -> text (stripped)."""
    out: dict[str, list[str]] = {}
    current = None
    for line in stdout.splitlines():
        if line.startswith(FACT + " "):
            current = line[len(FACT) + 1 :].strip()
            out[current] = []
        elif current:
            out[current].append(line)
    return {k: "\n".join(v).strip() for k, v in out.items()}


def parse_env(text: str) -> dict[str, str]:
    """The shared .env, read by the one set of .env rules (remote/envfile.py)."""
    return dict(envfile.env_pairs(text))


def parse_sums(text: str) -> dict[str, str]:
    """`sha256sum` lines: path -> digest."""
    out = {}
    for line in text.splitlines():
        digest, _, path = line.partition("  ")
        if path:
            out[path.strip()] = digest
    return out


# ---------------------------------------------------------------- changes


def create_user(user: str) -> Cmd:
    return Cmd.of(
        "useradd",
        "--system",
        "--user-group",
        "--home-dir",
        "/nonexistent",
        "--shell",
        "/usr/sbin/nologin",
        user,
    )


def create_dirs(want: list[DirSpec]) -> Cmd:
    cmds = []
    for w in want:
        cmds += [
            Cmd.of("mkdir", "-p", w.path),
            Cmd.of("chown", f"{w.owner}:{w.group}", w.path),
            Cmd.of("chmod", w.mode, w.path),
        ]
    return script(*cmds)


def write_marker(lay: Layout) -> Cmd:
    """The environment's name arrives on stdin."""
    return Cmd.of("mkdir", "-p", lay.state).then(Cmd.of("cat").redirect(lay.marker))


def _chown(group: str | None, path: str) -> Cmd:
    return Cmd.of("chown", f"root:{group}", path) if group else Cmd.of("true")


def env_mode(lay: Layout, mode: str, group: str | None) -> Cmd:
    return Cmd.of("chmod", mode, lay.env_file).then(_chown(group, lay.env_file))


def write_env(lay: Layout, mode: str, group: str | None) -> Cmd:
    """The .env's text arrives on stdin; written aside with its mode, then renamed."""
    tmp = lay.env_file + ".tmp"
    return (
        Cmd.of("mkdir", "-p", lay.shared)
        .then(Cmd((Raw("umask 077 &&"), Cmd.of("cat").redirect(tmp))))
        .then(Cmd.of("chmod", mode, tmp))
        .then(_chown(group, tmp))
        .then(Cmd.of("mv", "-f", tmp, lay.env_file))
    )


def env_text(values: dict) -> str:
    return "# Managed by mlctl setup; values are secret.\n" + "".join(
        f"{k}={v}\n" for k, v in sorted(values.items())
    )


def psql_query(sql: str) -> Cmd:
    return Cmd.of(
        "runuser", "-u", "postgres", "--", "psql", "-tAX", "-v", "ON_ERROR_STOP=1", "-c", sql
    )


def psql_stdin() -> Cmd:
    return Cmd.of("runuser", "-u", "postgres", "--", "psql", "-qX", "-v", "ON_ERROR_STOP=1")


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def sql_ident(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def role_and_database_sql(role: str, database: str, password: str, has_role, has_db) -> str:
    verb = "ALTER" if has_role else "CREATE"
    sql = [f"{verb} ROLE {sql_ident(role)} LOGIN PASSWORD {sql_literal(password)};"]
    if not has_db:
        sql.append(f"CREATE DATABASE {sql_ident(database)} OWNER {sql_ident(role)};")
    return "\n".join(sql)


def enable_socket(unit: str) -> Cmd:
    """`unit`: the live slot's instance (gunicorn-P@blue): its socket listens now and at boot."""
    return script(
        Cmd.of("systemctl", "daemon-reload"),
        Cmd.of("systemctl", "enable", "--now", f"{unit}.socket"),
    )


def remove_single_unit(project: str) -> Cmd:
    """Stop and remove the one unit of an earlier mlctl, once nginx no longer sends to it: after
    nginx's old workers finished their requests (at most 30 s)."""
    unit = unit_name(project)
    return script(
        drain_nginx(),
        Cmd.of("systemctl", "disable", "--now", "--quiet", f"{unit}.socket", f"{unit}.service"),
        Cmd.of("rm", "-f", *single_unit_files(project)),
        Cmd.of("systemctl", "daemon-reload"),
    )


def enable_site(avail: str, enabled: str) -> Cmd:
    """Link the site, drop nginx's default one and test the config (reloaded only after)."""
    return script(
        Cmd.of("ln", "-sfn", avail, enabled),
        Cmd.of("rm", "-f", DEFAULT_SITE),
        Cmd.of("nginx", "-t", "-q"),
    )


def reload_nginx() -> Cmd:
    return Cmd.of("systemctl", "reload-or-restart", "nginx")
