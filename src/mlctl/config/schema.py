"""The inventory's schema: every key mlctl understands, its type and built-in default.

Keys allowed under `defaults:` and `environments.<name>:` are the same (ENV_KEYS); `project:` has
its own. Types are checked before any connection is made.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from mlctl.config.healthpaths import path_problem
from mlctl.config.operator_settings import (
    READ_ONLY_COMMANDS,
    address_problem,
    notify_problem,
)


@dataclass(frozen=True)
class Field:
    kind: Any  # str, int, float, bool, list, dict, or a nested schema (dict of Field)
    default: Any = None
    choices: tuple = ()
    secret: bool = False
    item: Any = str  # element type of lists, value type of free-form maps
    shorthand: str = ""  # a scalar accepted in place of a mapping (database: sqlite)
    doc: str = ""
    check: Any = None  # item -> problem text or "": list items that are not plain strings


def package_problem(name) -> str:
    """Why a `packages:` entry is not a Debian package name, or ''."""
    if isinstance(name, str) and re.match(r"^[a-z0-9][a-z0-9+.-]+$", name):
        return ""
    return f"{name!r} is not a Debian package name"


def section(**fields: Field) -> dict[str, Field]:
    return fields


PROJECT = section(
    name=Field(str, doc="project name, used for the app database and unit names"),
    source=Field(
        section(
            repo=Field(str, ".", doc="git repository (path relative to the inventory, or URL)"),
            subdir=Field(str, "", doc="Django project directory inside the repository"),
            ref=Field(str, "HEAD", doc="ref deployed when --ref is not given"),
        )
    ),
    settings_module=Field(str),
    wsgi=Field(str, doc="module:callable of the WSGI application"),
    requirements=Field(
        str,
        "requirements.txt",
        doc="what each release's venv installs: a pip requirements file (its -r/-c includes "
        "too), uv.lock or Pipfile.lock (installed exactly as locked)",
    ),
    requires_python=Field(
        str,
        "",
        doc="the Python the project needs (e.g. '>=3.12'), checked on every host before "
        "anything changes; empty: read requires-python, .python-version or runtime.txt",
    ),
    tests=Field(str, "python -m pytest -q", doc="the pytest gate, run in the project directory"),
)

DATABASE = section(
    engine=Field(str, "sqlite", choices=("postgresql", "sqlite")),
    name=Field(str, "db.sqlite3"),
    user=Field(str, ""),
    password=Field(str, "", secret=True),
    host=Field(str, "localhost"),
    port=Field(int, 0),
    url=Field(str, "", secret=True),
    dump_options=Field(
        list,
        [],
        doc="more pg_dump options for the snapshots, e.g. --exclude-table-data=django_session",
    ),
)

LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"

TLS = section(
    mode=Field(
        str,
        "off",
        choices=("off", "files", "acme"),
        doc="acme: certbot on the host; files: the operator's certificate; off: plain HTTP",
    ),
    cert=Field(str, "", doc="files: the certificate chain (PEM) on this machine, setup uploads it"),
    key=Field(str, "", doc="files: its private key (PEM): 0600 root on the host, never printed"),
    email=Field(str, "", doc="acme: the ACME account's contact address (empty: none)"),
    directory=Field(str, LETS_ENCRYPT, doc="acme: the ACME server's directory URL"),
    ca_file=Field(
        str,
        "",
        doc="extra CA certificates (PEM) trusted for the ACME server's own HTTPS and for the "
        "served certificate by the health checks (a test CA; empty: the system's only)",
    ),
    hsts=Field(int, 0, doc="Strict-Transport-Security max-age nginx sends, in seconds (0: none)"),
)

PROCESS = section(
    command=Field(
        str,
        doc="run in the current release: a first word without a slash is the venv's program "
        "(celery), a .py file runs with the venv's python (manage.py ...); words as a shell "
        "splits them, no expansions",
    ),
    hosts=Field(
        object, "all", doc="all, a count (the first N hosts of the environment) or a list of hosts"
    ),
    stop_timeout=Field(int, 30, doc="seconds a stop waits after TERM (running tasks finish)"),
)

SCHEDULE = section(
    command=Field(str, doc="as a process's command, run once per `on`"),
    on=Field(
        str,
        "daily",
        doc="systemd OnCalendar: minutely, hourly, daily, weekly, monthly, yearly or an "
        "expression such as 'Mon *-*-* 03:00' (checked by systemd-analyze on the hosts)",
    ),
    hosts=Field(object, 1, doc="as a process's hosts (default: the first host only)"),
)

ENV_KEYS = section(
    connection=Field(str, "ssh", choices=("ssh", "local")),
    hosts=Field(list, []),
    user=Field(str, "", doc="ssh login user (default: ssh_config or the local user)"),
    app_user=Field(str, "www-data"),
    deploy_to=Field(str, "/srv/app"),
    python=Field(str, "/usr/bin/python3"),
    keep_releases=Field(int, 5),
    service=Field(str, "systemd", choices=("systemd", "pidfile")),
    bind=Field(
        str,
        "127.0.0.1:8765",
        doc="gunicorn bind address for the pidfile service (health.url follows it)",
    ),
    gunicorn=Field(
        section(
            workers=Field(int, 2),
            preload=Field(
                bool,
                True,
                doc="load the app once in the master (less CPU per restart, an import error "
                "fails the restart at once); false for apps that open connections at import",
            ),
        )
    ),
    server_name=Field(
        str, "_", doc="the names nginx routes to this project (_: every name no other site claims)"
    ),
    tls=Field(TLS, shorthand="mode"),
    database=Field(DATABASE, shorthand="engine"),
    health=Field(
        section(
            url=Field(
                str,
                "http://127.0.0.1/healthz",
                doc="default for the pidfile service: http://BIND/healthz",
            ),
            expect_status=Field(int, 200),
            timeout=Field(float, 30.0),
            host_header=Field(
                str, "", doc="Host header of the health requests (default: first server_name)"
            ),
            paths=Field(
                list,
                [{"path": "/", "expect": "<500"}],
                check=path_problem,
                doc="pages requested besides health.url: {path, expect (200, <500, 2xx, "
                "200-399), body (text the page must hold), host}",
            ),
            static=Field(bool, True, doc="also request one collected static file through nginx"),
        )
    ),
    thresholds=Field(
        section(
            disk_pct=Field(int, 90, doc="`check` fails, `monitor` alerts over this % of disk used"),
            inode_pct=Field(int, 90, doc="`check` fails over this % of inodes used"),
            mem_pct=Field(int, 90, doc="`check` warns, `monitor` alerts over this % of memory"),
            load_per_cpu=Field(float, 2.0, doc="`check` warns over this 1-minute load per CPU"),
            cert_days=Field(
                int, 14, doc="`check` warns, `monitor` alerts this many days before a cert expires"
            ),
            error_lines=Field(int, 0, doc="`monitor` alerts over this many nginx error lines"),
            rate_5xx_pct=Field(float, 5.0, doc="`monitor` alerts over this % of 5xx answers"),
        )
    ),
    shared_files=Field(list, [".env"]),
    shared_dirs=Field(list, ["media", "logs"]),
    secrets=Field(dict, {}, secret=True, doc="written to the shared .env, never printed"),
    env=Field(dict, {}, doc="plain settings written to the shared .env"),
    hooks=Field(
        section(
            before_build=Field(list, [], doc="shell commands in the new release, before its venv"),
            after_build=Field(list, [], doc="after the release is built and verified"),
            after_switch=Field(list, [], doc="on each host once it serves the new release"),
        )
    ),
    ssh_config=Field(str, "~/.ssh/config"),
    known_hosts=Field(str, "~/.ssh/known_hosts"),
    identity_file=Field(str, ""),
    host_keys=Field(str, "verify", choices=("verify", "accept-new")),
    timeouts=Field(
        section(
            connect=Field(float, 10.0),
            command=Field(float, 900.0),
            health=Field(float, 30.0),
            lock_wait=Field(float, 0.0),
            lock_stale=Field(float, 3600.0),
            lock_lease=Field(
                float,
                60.0,
                doc="a lock whose holder has not refreshed its heartbeat for this long is stale, "
                "whichever machine took it",
            ),
            keepalive=Field(int, 15),
        )
    ),
    protected=Field(bool, False),
    allowed_users=Field(list, []),
    confirm=Field(str, "typed", choices=("typed", "none")),
    color=Field(str, ""),
    allow_root=Field(bool, False),
    rolling=Field(section(batch=Field(int, 0))),
    cutover=Field(
        section(
            mode=Field(
                str,
                "nginx",
                choices=("nginx", "restart"),
                doc="nginx: the new release starts in the idle app slot and is served only once "
                "it passed the health gate there; restart: one slot, restarted in place (half the "
                "memory, requests wait during the restart)",
            ),
            keep_old=Field(
                float,
                300.0,
                doc="seconds the slot left by a cutover keeps running (a rollback to it is a "
                "switch back), then it stops",
            ),
        ),
        shorthand="mode",
    ),
    branch=Field(str, ""),
    tag_deploys=Field(
        bool,
        doc="git tag deploy/ENV/RELEASE after each deploy (default: on over SSH, off for local)",
    ),
    require_tests=Field(bool, False),
    build=Field(
        section(
            install=Field(str, "local", choices=("local", "remote")),
            server=Field(
                str,
                "gunicorn==27.0.1",
                doc='the gunicorn mlctl installs when the requirements name none ("": none)',
            ),
        )
    ),
    tls_cert=Field(str, "", doc="a certificate file on the host whose expiry `check` reads"),
    # Operator commands, the maintenance page and deploy notifications (tasks/operator.py,
    # tasks/maintenance.py, tasks/notify.py).
    guards=Field(
        section(
            read_only_commands=Field(
                list,
                list(READ_ONLY_COMMANDS),
                doc="management commands `manage` runs on a protected environment without the "
                "confirmation (they change nothing)",
            ),
        )
    ),
    maintenance=Field(
        section(
            allow=Field(
                list,
                [],
                check=address_problem,
                doc="addresses or networks (10.0.0.0/8) that still reach the app while the "
                "maintenance page is on; the host itself always does",
            ),
            message=Field(
                str,
                "The site is down for maintenance and will be back shortly.",
                doc="the page's text (`maintenance on --message` replaces it once)",
            ),
        )
    ),
    notify=Field(
        list,
        [],
        check=notify_problem,
        doc="webhooks told of deploys: {webhook: URL, on: [deploy, rollback, failure]} "
        "(JSON with a Slack-compatible `text`; a failed post is a warning, never a failure)",
    ),
    processes=Field(
        dict,
        {},
        item=PROCESS,
        doc="processes besides web (Celery worker, beat...): systemd units on their hosts, "
        "restarted after each switch (systemd service only)",
    ),
    schedule=Field(
        dict,
        {},
        item=SCHEDULE,
        doc="periodic commands (clearsessions...): a systemd timer each (systemd service only)",
    ),
    packages=Field(
        list,
        [],
        check=package_problem,
        doc="Debian packages setup installs and whose service it starts (redis-server)",
    ),
)

TOP = section(
    project=Field(PROJECT),
    defaults=Field(ENV_KEYS),
    environments=Field(dict, item=ENV_KEYS),
)

REQUIRED_PROJECT = ("name", "settings_module", "wsgi")
ENV_COLORS = {"dev": "green", "test": "yellow", "live": "red"}
# Paths in the inventory that are relative to the inventory file.
PATH_KEYS = (
    "known_hosts",
    "identity_file",
    "ssh_config",
    "tls_cert",
    "tls.cert",
    "tls.key",
    "tls.ca_file",
)


def shorthand_value(value):
    """A section's scalar shorthand as written: YAML reads a bare `off` as false (`tls: off`)."""
    return "off" if value is False else value


def secret_keys(schema: dict[str, Field], kp: tuple = ()) -> tuple[tuple[str, ...], ...]:
    """Key paths of the settings marked secret (a secret map: all its values)."""
    out: list = []
    for key, f in schema.items():
        if f.secret:
            out.append((*kp, key))
        elif isinstance(f.kind, dict):
            out.extend(secret_keys(f.kind, (*kp, key)))
    return tuple(out)


def secret_values(settings: dict) -> list[str]:
    """Every secret value set in resolved settings (SECRET_KEYS), for the mask."""
    values = []
    for path in SECRET_KEYS:
        node = settings
        for key in path:
            node = node.get(key) or {}
        values += [str(v) for v in node.values()] if isinstance(node, dict) else [str(node)]
    return [v for v in values if v]


def masked(settings: dict, mask: str) -> dict:
    """A copy of resolved settings with every secret value replaced by `mask`."""
    out = copy.deepcopy(settings)
    for *parents, key in SECRET_KEYS:
        node = out
        for p in parents:
            node = node[p]
        if isinstance(node.get(key), dict):
            node[key] = {k: mask for k in node[key]}
        elif node.get(key):
            node[key] = mask
    return out


def defaults_of(schema: dict[str, Field]) -> dict:
    """The built-in defaults of a schema, as a nested dict."""
    out = {}
    for key, f in schema.items():
        if isinstance(f.kind, dict):
            out[key] = defaults_of(f.kind)
        elif f.default is not None:
            out[key] = copy.deepcopy(f.default)
    return out


SECRET_KEYS = secret_keys(ENV_KEYS)
