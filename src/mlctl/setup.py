"""`setup`: turn a bare Debian host into a Django server, idempotently (a rerun changes nothing).

Steps report `changed` or `ok`. Secrets (SECRET_KEY, the database password) are generated once,
kept in the shared .env (0640 root:APP_USER) and only ever travel on stdin, never on argv.
"""

from __future__ import annotations

import hashlib
import secrets
from importlib.resources import files
from pathlib import Path
from urllib.parse import quote as urlquote
from urllib.parse import unquote as urlunquote
from urllib.parse import urlsplit

from . import console, guards, pyversion, steps
from .commands.db import load_env
from .errors import PreflightFailed
from .layout import Layout, unit_name
from .remote import envfile
from .selection import open_session
from .shell import Cmd, Raw, script


def setup_task(sel, yes=False) -> int:
    sess = open_session(sel, "setup")
    guards.confirm(sess.cfg, "setup", yes)
    console.banner(sess.cfg.name, sess.cfg.color, "setup", sess.cfg.hosts)
    try:
        sess.connect()
        if sess.cfg.local:
            prepare_local(sess, verbose=True)
        else:  # the settings were validated as they were read (validation.check_settings)
            sess.each(require_tools)  # every host, before any of them changes
            sess.each(provision)
    finally:
        sess.close()
    console.done(f"{sess.cfg.name}: setup complete")
    return 0


def report(host, step: str, changed: bool) -> None:
    console.step(
        host.name, f"{step}: {'changed' if changed else 'ok'}", "yellow" if changed else "green"
    )
    host.session.journal.record(host.name, f"setup {step}", outcome="changed" if changed else "ok")


# ---------------------------------------------------------------- local (dev)


def prepare_local(sess, verbose: bool = False) -> None:
    """Directories and the .env of a local environment (pidfile service; SQLite, or a
    PostgreSQL server of the user's, which must answer before anything else is done)."""
    host = sess.hosts[0]
    lay = Layout(sess.cfg["deploy_to"])
    dirs = [lay.releases, lay.venvs, lay.backups, lay.metas, lay.run]
    dirs += [f"{lay.shared}/{d}" for d in sess.cfg["shared_dirs"]]
    host.run("directories", Cmd.of("mkdir", "-p", *dirs))
    changed = ensure_marker(host, lay)
    changed |= ensure_env_file(host, lay, local_env(sess.cfg, lay), mode="0600", group=None)
    if sess.cfg["database"]["engine"] == "postgresql":
        require_local_postgres(host, lay)
    if verbose:
        report(host, "local directories and .env", changed)


def local_env(cfg, lay: Layout) -> dict:
    out = {
        "DEBUG": "0",
        "ALLOWED_HOSTS": "localhost,127.0.0.1",
        "MEDIA_ROOT": f"{lay.shared}/media",
    }
    if cfg["database"]["engine"] == "postgresql":
        out.update(local_postgres_env(cfg["database"], cfg.project["name"]))
    else:
        out["DATABASE_URL"] = "sqlite:///" + steps.sqlite_path(cfg)
    return {**out, **inventory_env(cfg)}


def local_postgres_env(db: dict, project: str) -> dict:
    """PG* variables for the user's own server (the snapshots' pg_dump reads them; the .env's
    DATABASE_URL is made from them): `database.url`, else its host/port/name/user/password."""
    if db["url"]:
        parts = urlsplit(db["url"])
        return {
            "PGHOST": urlunquote(parts.hostname or "localhost"),
            "PGPORT": str(parts.port or 5432),
            "PGUSER": urlunquote(parts.username or project),
            "PGDATABASE": urlunquote(parts.path.lstrip("/")) or project,
            "PGPASSWORD": urlunquote(parts.password or ""),
        }
    return {
        "PGHOST": db["host"] or "localhost",
        "PGPORT": str(db["port"] or 5432),
        "PGUSER": db["user"] or project,
        "PGDATABASE": db["name"],
        "PGPASSWORD": db["password"],
    }


def require_local_postgres(host, lay: Layout) -> None:
    """The dev database answers (mlctl does not create it: the server is the user's)."""
    probe = host.run(
        "database login",
        Cmd((load_env(lay.env_file), Raw("&& psql -tAXc 'select 1'"))),
        warn=True,
    )
    if not probe.ok:
        why = (probe.stderr.strip().splitlines() or ["no answer"])[-1]
        raise PreflightFailed(
            f"{host.name}: the dev PostgreSQL database does not answer: {why[:200]}",
            "start the server and create the database, or fix environments.dev.database",
        )


def inventory_env(cfg) -> dict:
    """The inventory's `env:` and `secrets:`, as written into every shared .env."""
    return {k: str(v) for k, v in {**cfg["env"], **cfg["secrets"]}.items()}


# ---------------------------------------------------------------- remote


def provision(host) -> None:
    cfg = host.session.cfg
    lay = Layout(cfg["deploy_to"])
    report(host, "app user", ensure_user(host, cfg["app_user"]))
    report(host, "directories", ensure_dirs(host, lay, cfg))
    report(host, "marker", ensure_marker(host, lay))
    values = server_env(host, cfg, lay)
    report(host, "database", ensure_database(host, cfg, values))
    report(host, "shared .env", ensure_env_file(host, lay, values, "0640", cfg["app_user"]))
    report(host, "gunicorn units", ensure_units(host, cfg))
    report(host, "nginx site", ensure_nginx(host, cfg))


VERSION_TAG = "mlctl-python-version"


def require_tools(host) -> None:
    """The tools setup and deploys use, and a Python the project can run on."""
    cfg = host.session.cfg
    tools = ["nginx", "systemctl", cfg["python"]]
    if cfg["database"]["engine"] == "postgresql":
        tools += ["psql", "pg_dump", "pg_restore"]
    version = Cmd.of(
        cfg["python"], "-c", f"import platform; print({VERSION_TAG!r}, platform.python_version())"
    )
    r = host.run(
        "required tools",
        Cmd(
            (
                Raw("for t in"),
                Cmd.of(*tools),
                Raw('; do command -v "$t" >/dev/null || echo "$t"; done;'),
                version,
                Raw("2>/dev/null || true"),
            )
        ),
    )
    lines = r.stdout.splitlines()
    found = [line.split()[-1] for line in lines if line.startswith(VERSION_TAG + " ")]
    missing = [line for line in lines if line.strip() and not line.startswith(VERSION_TAG + " ")]
    if missing:
        raise PreflightFailed(
            f"{host.name}: missing {', '.join(missing)}",
            "install them (e.g. apt-get install nginx postgresql python3-venv)",
        )
    pyversion.check(host.name, found[0] if found else "", python_need(cfg))


def python_need(cfg) -> tuple[str, str] | None:
    """The project's Python constraint: the inventory's, else its files in the work tree."""
    proj = cfg.project
    root = Path(proj["source"]["repo"], proj["source"]["subdir"])

    def read(rel: str) -> str | None:
        try:
            return (root / rel).read_text(errors="replace")
        except OSError:
            return None

    return pyversion.needed(proj["requires_python"], read)


def ensure_user(host, user: str) -> bool:
    exists = host.run("app user", Cmd.of("id", "-u", user).quiet(), warn=True).ok
    if not exists:
        host.run(
            "create app user",
            Cmd.of(
                "useradd",
                "--system",
                "--user-group",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                user,
            ),
        )
    return not exists


def ensure_dirs(host, lay: Layout, cfg) -> bool:
    """Owners and modes: code root-owned and read-only to the app; media and logs its own."""
    app = cfg["app_user"]
    want = [
        (lay.root, "root", "root", "755"),
        (lay.releases, "root", "root", "755"),
        (lay.venvs, "root", "root", "755"),
        (f"{lay.root}/wheelhouse", "root", "root", "700"),
        (lay.shared, "root", app, "750"),
        (lay.backups.rsplit("/", 1)[0], "root", "root", "700"),
        (lay.backups, "root", "root", "700"),
        (lay.state, "root", "root", "755"),
        (lay.metas, "root", "root", "755"),
    ]
    want += [(f"{lay.shared}/{d}", app, app, "750") for d in cfg["shared_dirs"]]
    check = Cmd(
        (
            Raw("for spec in"),
            Cmd.of(*[":".join(w) for w in want]),
            Raw(
                '; do d=${spec%%:*}; rest=${spec#*:}; cur=$(stat -c %U:%G:%a "$d" 2>/dev/null);'
                ' [ "$cur" = "$rest" ] || echo "$d"; done'
            ),
        )
    )
    if not host.run("directories", check).stdout.strip():
        return False
    cmds = []
    for path, owner, group, mode in want:
        cmds += [
            Cmd.of("mkdir", "-p", path),
            Cmd.of("chown", f"{owner}:{group}", path),
            Cmd.of("chmod", mode, path),
        ]
    host.run("create directories", script(*cmds))
    return True


def ensure_marker(host, lay: Layout) -> bool:
    """Record which environment owns this server; refuse to adopt one of another environment."""
    env = host.session.cfg.name
    r = host.run("marker", Cmd((Cmd.of("cat", lay.marker), Raw("2>/dev/null || true"))))
    found = r.stdout.strip()
    if found == env:
        return False
    if found:
        raise PreflightFailed(f"{host.name}: this server belongs to {found!r}, not {env!r}")
    host.stream(
        "write marker",
        Cmd.of("mkdir", "-p", lay.state).then(Cmd.of("cat").redirect(lay.marker)),
        (env + "\n").encode(),
    )
    return True


def server_env(host, cfg, lay: Layout) -> dict:
    db = cfg["database"]
    out = {
        "DEBUG": "0",
        "MEDIA_ROOT": f"{lay.shared}/media",
        "ALLOWED_HOSTS": allowed_hosts(host.name, cfg["server_name"]),
    }
    if db["engine"] == "sqlite":
        out["DATABASE_URL"] = "sqlite:///" + steps.sqlite_path(cfg)
    else:
        user, name = db["user"] or cfg.project["name"], db["name"]
        out.update(
            {
                "PGHOST": db["host"],
                "PGPORT": str(db["port"] or 5432),
                "PGUSER": user,
                "PGDATABASE": name,
            }
        )
    out.update(inventory_env(cfg))
    return out


def allowed_hosts(host_entry: str, server_name: str) -> str:
    from .connection import parse_host

    names = ["localhost", "127.0.0.1", parse_host(host_entry)[1]]
    names += [n for n in server_name.split() if n not in ("_",)]
    return ",".join(dict.fromkeys(names))


def read_env_file(host, lay: Layout) -> dict:
    r = host.run("read .env", Cmd((Cmd.of("cat", lay.env_file), Raw("2>/dev/null || true"))))
    values = dict(envfile.env_pairs(r.stdout))
    host.session.add_secrets([values.get("SECRET_KEY"), values.get("PGPASSWORD")])
    return values


def ensure_env_file(host, lay: Layout, values: dict, mode: str, group: str | None) -> bool:
    """Merge `values` into the shared .env, keeping generated secrets; write only on change."""
    old = read_env_file(host, lay)
    new = dict(old)
    new.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    new.update(values)
    if "PGUSER" in new:
        new.setdefault("PGPASSWORD", old.get("PGPASSWORD") or secrets.token_urlsafe(24))
        new["DATABASE_URL"] = (
            f"postgresql://{urlquote(new['PGUSER'])}:"
            f"{urlquote(new['PGPASSWORD'], safe='')}@{urlquote(new['PGHOST'], safe='')}:"
            f"{new['PGPORT']}/{urlquote(new['PGDATABASE'])}"
        )
    host.session.add_secrets([new["SECRET_KEY"], new.get("PGPASSWORD"), new.get("DATABASE_URL")])
    owner = Cmd.of("chown", f"root:{group}", lay.env_file) if group else Cmd.of("true")
    if new == old:
        host.run("env file mode", Cmd.of("chmod", mode, lay.env_file).then(owner))
        return False
    text = "# Managed by mlctl setup; values are secret.\n" + "".join(
        f"{k}={v}\n" for k, v in sorted(new.items())
    )
    host.stream(
        "write .env",
        Cmd.of("mkdir", "-p", lay.shared)
        .then(Cmd((Raw("umask 077 &&"), Cmd.of("cat").redirect(lay.env_file + ".tmp"))))
        .then(Cmd.of("chmod", mode, lay.env_file + ".tmp"))
        .then(Cmd.of("chown", f"root:{group}", lay.env_file + ".tmp") if group else Cmd.of("true"))
        .then(Cmd.of("mv", "-f", lay.env_file + ".tmp", lay.env_file)),
        text.encode(),
    )
    host.facts["env_values"] = new
    return True


def ensure_database(host, cfg, values: dict) -> bool:
    """PostgreSQL role and database owned by it; the password lives only in the .env."""
    if cfg["database"]["engine"] != "postgresql":
        return False
    lay = Layout(cfg["deploy_to"])
    old = read_env_file(host, lay)
    password = old.get("PGPASSWORD") or secrets.token_urlsafe(24)
    values["PGPASSWORD"] = password
    role, db = values["PGUSER"], values["PGDATABASE"]
    probe = host.run(
        "database exists",
        psql_query(
            f"SELECT (SELECT count(*) FROM pg_roles WHERE rolname = {sql_literal(role)}) || ',' ||"
            f" (SELECT count(*) FROM pg_database WHERE datname = {sql_literal(db)})"
        ),
    )
    has_role, has_db = (x == "1" for x in probe.stdout.strip().split(","))
    can_login = (
        host.run(
            "database login",
            Cmd(
                (
                    load_env(lay.env_file),
                    Raw("&& psql -tAc 'select 1'"),
                )
            ),
            warn=True,
        ).ok
        if old.get("PGPASSWORD")
        else False
    )
    if has_role and has_db and can_login:
        return False
    sql = []
    verb = "ALTER" if has_role else "CREATE"
    sql.append(f"{verb} ROLE {sql_ident(role)} LOGIN PASSWORD {sql_literal(password)};")
    if not has_db:
        sql.append(f"CREATE DATABASE {sql_ident(db)} OWNER {sql_ident(role)};")
    host.stream("create role and database", psql_stdin(), "\n".join(sql).encode())
    return True


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


def render(name: str, **values) -> str:
    return files("mlctl").joinpath("templates", name).read_text().format(**values)


def template_values(cfg) -> dict:
    unit = unit_name(cfg.project["name"])
    return {
        "project": cfg.project["name"],
        "unit": unit,
        "socket": f"/run/{unit}.sock",
        "app_user": cfg["app_user"],
        "deploy_to": cfg["deploy_to"],
        "workers": cfg["gunicorn"]["workers"],
        "preload": " --preload" if cfg["gunicorn"]["preload"] else "",
        "wsgi": cfg.project["wsgi"],
        "settings_module": cfg.project["settings_module"],
        "server_name": cfg["server_name"],
    }


def ensure_file(host, path: str, content: str, mode: str = "0644") -> bool:
    digest = hashlib.sha256(content.encode()).hexdigest()
    r = host.run(f"compare {path}", Cmd((Cmd.of("sha256sum", path), Raw("2>/dev/null || true"))))
    if r.stdout.split()[:1] == [digest]:
        return False
    from .commands.release import write_file

    host.stream(f"write {path}", write_file(path, mode), content.encode())
    return True


def ensure_units(host, cfg) -> bool:
    v = template_values(cfg)
    unit = v["unit"]
    changed = ensure_file(
        host, f"/etc/systemd/system/{unit}.socket", render("gunicorn.socket", **v)
    )
    changed |= ensure_file(
        host, f"/etc/systemd/system/{unit}.service", render("gunicorn.service", **v)
    )
    enabled = host.run(
        "socket enabled", Cmd.of("systemctl", "is-enabled", "--quiet", f"{unit}.socket"), warn=True
    ).ok
    active = host.run(
        "socket active", Cmd.of("systemctl", "is-active", "--quiet", f"{unit}.socket"), warn=True
    ).ok
    if changed or not (enabled and active):
        host.run(
            "enable socket",
            script(
                Cmd.of("systemctl", "daemon-reload"),
                Cmd.of("systemctl", "enable", "--now", f"{unit}.socket"),
                Cmd.of("systemctl", "enable", f"{unit}.service"),
            ),
        )
        return True
    return False


def ensure_nginx(host, cfg) -> bool:
    v = template_values(cfg)
    name = cfg.project["name"]
    avail, enabled = f"/etc/nginx/sites-available/{name}", f"/etc/nginx/sites-enabled/{name}"
    changed = ensure_file(host, avail, render("nginx.conf", **v))
    link = host.run(
        "nginx site link",
        Cmd(
            (
                Raw('[ "$(readlink'),
                Cmd.of(enabled),
                Raw(')" = '),
                Cmd.of(avail),
                Raw("] && [ ! -e /etc/nginx/sites-enabled/default ]"),
            )
        ),
        warn=True,
    ).ok
    if not changed and link:
        return False
    r = host.run(
        "enable nginx site",
        script(
            Cmd.of("ln", "-sfn", avail, enabled),
            Cmd.of("rm", "-f", "/etc/nginx/sites-enabled/default"),
            Cmd.of("nginx", "-t", "-q"),
        ),
        warn=True,
    )
    if not r.ok:
        raise PreflightFailed(
            f"{host.name}: nginx -t rejected the site; nginx was not reloaded",
            (r.stderr.strip().splitlines() or [""])[-1],
        )
    host.run("reload nginx", Cmd.of("systemctl", "reload-or-restart", "nginx"))
    return True
