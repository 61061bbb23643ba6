"""The inventory's schema: every key mlctl understands, its type and built-in default.

Keys allowed under `defaults:` and `environments.<name>:` are the same (ENV_KEYS); `project:` has
its own. Types are checked before any connection is made.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from mlctl.config.healthpaths import path_problem


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
    server_name=Field(str, "_"),
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
            cert_days=Field(int, 14, doc="`check` warns when tls_cert expires within these days"),
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
    tls_cert=Field(str, ""),
)

TOP = section(
    project=Field(PROJECT),
    defaults=Field(ENV_KEYS),
    environments=Field(dict, item=ENV_KEYS),
)

REQUIRED_PROJECT = ("name", "settings_module", "wsgi")
ENV_COLORS = {"dev": "green", "test": "yellow", "live": "red"}
# Paths in the inventory that are relative to the inventory file.
PATH_KEYS = ("known_hosts", "identity_file", "ssh_config", "tls_cert")


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
