"""What `check`, `diag`, `status`, `monitor` and `logs` run on a host: pure command builders.

Every fact about a host is gathered by ONE remote command: remote/probe.py, a fixed Python program
run by the host's python3 (as root on servers, so it can read unit states, `nginx -t`, .env modes
and switch to the app user for the Django probe), configured by one JSON argument. It prints one
JSON document; mlctl judges the facts locally (tasks/judges.py, diag.py, monitor.py), where the
rules are unit-tested without a server.
"""

from __future__ import annotations

import json

from mlctl import remote
from mlctl.commands.db import load_env
from mlctl.config import healthpaths
from mlctl.config.layout import AppSlots, Layout, unit_name
from mlctl.config.sections import Health
from mlctl.core.shell import Cmd

MODES = ("check", "diag", "status", "monitor")

# Run inside the current release as the app user by the probe (remote/django_probe.py).
DJANGO_PROBE = remote.source("django_probe")


def probe_config(settings: dict, project: dict, mode: str, window: int = 300) -> dict:
    """The probe's one argument: which facts to gather and where they live."""
    if mode not in MODES:
        raise ValueError(f"unknown probe mode {mode!r}")
    lay = Layout(settings["deploy_to"])
    unit = unit_name(project["name"])
    health = Health.of(settings["health"])
    return {
        "mode": mode,
        "deploy_to": settings["deploy_to"],
        "local": settings["connection"] == "local",
        "app_user": settings["app_user"],
        "settings_module": project["settings_module"],
        "service": settings["service"],
        "unit": unit,
        "upstream_file": AppSlots(project["name"]).upstream_file,
        "pidfile": f"{lay.run}/gunicorn.pid",
        "bind": settings["bind"],
        "health": {
            "url": health.url,
            "expect_status": health.expect_status,
            "timeout": health.timeout,
            "host_header": health.host_header,
        },
        "health_plan": healthpaths.requests(settings),
        "health_static": health.static and settings["connection"] != "local",
        "dev_log": local_app_log(settings["deploy_to"]),
        "tls_cert": settings["tls_cert"],
        "window": int(window),
        "access_log": NGINX_LOGS["nginx-access"],
        "error_log": NGINX_LOGS["nginx-error"],
    }


def facts(python: str, config: dict) -> Cmd:
    """The one round trip per host: python reads `program()` on stdin, configured by one argument.

    The program travels on stdin rather than argv so the journal and the host's process list show
    a short command instead of the whole script.
    """
    return Cmd.of(python, "-", json.dumps(config, sort_keys=True))


def program() -> bytes:
    """The probe program (remote/probe.py and the modules it needs), given the texts of the
    programs it runs in turn: the .env export, the health requests and the Django probe."""
    programs = {
        "load_env": load_env("./.env").render(),
        "health": remote.source("health"),
        "django_probe": DJANGO_PROBE,
    }
    prelude = f"PROGRAMS.update({programs!r})\n"
    return remote.source("probe", prelude).encode()


# ---------------------------------------------------------------- logs

NGINX_LOGS = {
    "nginx-access": "/var/log/nginx/access.log",
    "nginx-error": "/var/log/nginx/error.log",
}


def app_log(unit: str, lines: int, since: str | None = None, follow: bool = False) -> Cmd:
    """The app slots' journal (both: a deploy's new slot logs before it serves), with ISO
    timestamps so hosts can be merged in order."""
    argv = ["journalctl", "-u", f"{unit}@*.service", "--no-pager", "-o", "short-iso"]
    argv += ["-n", str(lines)]
    if since:
        argv += ["--since", since]
    if follow:
        argv.append("-f")
    return Cmd.of(*argv)


def file_log(path: str, lines: int, follow: bool = False) -> Cmd:
    """The last lines of a log file; `-F` keeps following across log rotation."""
    return Cmd.of("tail", "-n", str(lines), *(["-F"] if follow else []), path)


def local_app_log(deploy_to: str) -> str:
    return f"{Layout(deploy_to).shared}/logs/gunicorn.log"
