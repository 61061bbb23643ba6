"""`setup`: turn a bare Debian host into a Django server, idempotently (a rerun changes nothing).

Facts, plan, apply: one batched read of each host (commands/provision.py `survey`), a pure plan
of the steps from those facts and the settings (commands/provision_plan.py), then the planned
commands run through the session, each step reported `changed` or `ok`. Every host is surveyed
and planned before any host changes. Secrets (SECRET_KEY, the database password) are generated once,
kept in the shared .env (0640 root:APP_USER) and only ever travel on stdin, never on argv.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import unquote as urlunquote
from urllib.parse import urlsplit

from mlctl.commands import provision as pv
from mlctl.commands import provision_plan as planner
from mlctl.commands.provision_plan import inventory_env
from mlctl.config import pyversion, sections
from mlctl.config.layout import Layout, sqlite_path
from mlctl.core import console
from mlctl.core.errors import PreflightFailed, RemoteCommandFailed
from mlctl.core.shell import mask
from mlctl.tasks import guards, tls
from mlctl.transport.connection import parse_host
from mlctl.transport.selection import open_session


def setup_task(sel, yes=False) -> int:
    with open_session(sel, "setup") as sess:
        guards.confirm(sess.cfg, "setup", yes)
        console.banner(sess.cfg.name, sess.cfg.color, "setup", sess.cfg.hosts)
        sess.connect()
        if sess.cfg.local:
            prepare_local(sess, verbose=True)
        else:  # the settings were validated as they were read (validation.check_settings)
            uploads = tls.uploads(sess.cfg)  # the key checked before any host changes
            plans = sess.each(lambda h: survey(h, uploads))  # every host planned before any change
            by_host = {h.name: p for h, p in zip(sess.hosts, plans, strict=True)}
            sess.each(lambda h: apply(h, by_host[h.name]))
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
    lay = Layout(sess.cfg.deploy_to)
    host.run("directories", pv.local_dirs(lay, sess.cfg.shared_dirs))
    found = pv.parse_survey(host.run("setup facts", pv.local_survey(lay)).stdout)
    old = pv.parse_env(found.get("env", ""))
    sess.add_secrets([old.get("SECRET_KEY"), old.get("PGPASSWORD")])
    env = planner.merged_env(old, local_env(sess.cfg, lay), secrets.token_urlsafe)
    sess.add_secrets(planner.env_secrets(env))
    steps = [
        planner.marker_step(host.name, found.get("marker", ""), lay, sess.cfg.name),
        planner.env_step(old, env, lay, mode="0600", group=None),
    ]
    for step in steps:
        run_actions(host, step)
    if sess.cfg.database.engine == "postgresql":
        require_local_postgres(host, lay)
    if verbose:
        report(host, "local directories and .env", any(s.changed for s in steps))


def local_env(cfg, lay: Layout) -> dict:
    out = {
        "DEBUG": "0",
        "ALLOWED_HOSTS": "localhost,127.0.0.1",
        "MEDIA_ROOT": f"{lay.shared}/media",
    }
    if cfg.database.engine == "postgresql":
        out.update(local_postgres_env(cfg.database, cfg.project["name"]))
    else:
        out["DATABASE_URL"] = "sqlite:///" + sqlite_path(cfg)
    return {**out, **inventory_env(cfg)}


def local_postgres_env(db: sections.Database, project: str) -> dict:
    """PG* variables for the user's own server (the snapshots' pg_dump reads them; the .env's
    DATABASE_URL is made from them): `database.url`, else its host/port/name/user/password."""
    if db.url:
        parts = urlsplit(db.url)
        return {
            "PGHOST": urlunquote(parts.hostname or "localhost"),
            "PGPORT": str(parts.port or 5432),
            "PGUSER": urlunquote(parts.username or project),
            "PGDATABASE": urlunquote(parts.path.lstrip("/")) or project,
            "PGPASSWORD": urlunquote(parts.password or ""),
        }
    return {
        "PGHOST": db.host or "localhost",
        "PGPORT": str(db.port or 5432),
        "PGUSER": db.user or project,
        "PGDATABASE": db.name,
        "PGPASSWORD": db.password,
    }


def require_local_postgres(host, lay: Layout) -> None:
    """The dev database answers (mlctl does not create it: the server is the user's)."""
    probe = host.run(
        "database login",
        pv.database_login(lay.env_file),
        warn=True,
    )
    if not probe.ok:
        why = (probe.stderr.strip().splitlines() or ["no answer"])[-1]
        raise PreflightFailed(
            f"{host.name}: the dev PostgreSQL database does not answer: {why[:200]}",
            "start the server and create the database, or fix environments.dev.database",
        )


# ---------------------------------------------------------------- remote: facts, plan, apply


def survey(host, uploads: dict[str, bytes] | None = None) -> planner.Plan:
    """The host's facts in one round trip, checked (tools, Python) and planned; nothing changes."""
    cfg = host.session.cfg
    address = parse_host(host.name)[1]
    values = planner.server_env(address, cfg, Layout(cfg.deploy_to))
    read = pv.survey(cfg, values.get("PGUSER", ""), values.get("PGDATABASE", ""))
    r = host.run("setup facts", read, warn=True)
    sections = pv.parse_survey(r.stdout)
    detail = (mask(r.stderr, host.session.secrets).strip().splitlines() or [""])[-1]
    if "tools" not in sections:
        raise RemoteCommandFailed(host.name, "setup facts", r.code, detail)
    require_tools(host, sections)
    if not r.ok:  # only the database probe can fail the read
        raise RemoteCommandFailed(host.name, "database exists", r.code, detail)
    facts = planner.host_facts(host.name, address, sections)
    host.session.add_secrets([facts.env.get("SECRET_KEY"), facts.env.get("PGPASSWORD")])
    plan = planner.plan(facts, cfg, uploads=uploads)
    host.session.add_secrets(plan.secrets)
    return plan


def apply(host, plan: planner.Plan) -> None:
    """Run each planned step's commands, then report it."""
    for step in plan.steps:
        run_actions(host, step)
        report(host, step.name, step.changed)


def run_actions(host, step: planner.Step) -> None:
    for action in step.actions:
        if action.stdin is not None:
            host.stream(action.label, action.cmd, action.stdin)
            continue
        r = host.run(action.label, action.cmd, warn=bool(action.refusal))
        if not r.ok:
            raise PreflightFailed(
                f"{host.name}: {action.refusal}", (r.stderr.strip().splitlines() or [""])[-1]
            )


def require_tools(host, sections: dict[str, str]) -> None:
    """The tools setup and deploys use, and a Python the project can run on."""
    missing = sections["tools"].split()
    if missing:
        raise PreflightFailed(
            f"{host.name}: missing {', '.join(missing)}",
            "install them (e.g. apt-get install nginx postgresql python3-venv certbot)",
        )
    tagged = [ln.split() for ln in sections.get("python", "").splitlines()]
    found = [words[-1] for words in tagged if words[:1] == [pv.VERSION_TAG]]
    pyversion.check(host.name, found[0] if found else "", python_need(host.session.cfg))


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


def allowed_hosts(host_entry: str, server_name: str) -> str:
    """ALLOWED_HOSTS for the inventory's host entry (user@host:port)."""
    return planner.allowed_hosts(parse_host(host_entry)[1], server_name)
