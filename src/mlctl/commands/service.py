"""Restarting the app: systemd (socket activation keeps connections queued) or a pidfile."""

from __future__ import annotations

from ..shell import Cmd, Raw, script
from .db import load_env


def systemd_restart(unit: str) -> Cmd:
    return Cmd.of("systemctl", "restart", f"{unit}.service")


def restart_and_probe(
    restart: Cmd, probe: Cmd, explain: Cmd | None = None, app_log: Cmd | None = None
) -> Cmd:
    """Restart with the health probe already running, so its start-up overlaps the restart (it
    waits for the release id it expects, so answers from the old processes don't count). The
    probe's verdict is the exit status; a failed restart stops the probe, runs `explain` (its
    output on stderr: the step's error ends with it) and exits 1. A failed probe is followed by
    `app_log` after a marker line on stderr (the app's own error, see probe_or_explain)."""
    why = [explain, Raw(">&2;")] if explain else []
    wait: tuple = (Raw('wait "$probe"'),)
    if app_log:
        wait = (
            Raw('wait "$probe" || { rc=$?; echo'),
            Cmd.of(APP_LOG_MARK),
            Raw(">&2;"),
            app_log,
            Raw('>&2; exit "$rc"; }'),
        )
    return Cmd(
        (
            probe,
            Raw("& probe=$!;"),
            restart,
            Raw('|| { kill "$probe" 2>/dev/null;'),
            *why,
            Raw("exit 1; };"),
            *wait,
        )
    )


APP_LOG_MARK = "--- the app's log since the restart:"


def probe_or_explain(probe: Cmd, app_log: Cmd) -> Cmd:
    """The probe; when it fails, the app's own log after a marker line on stderr (the error names
    the app's exception), and the probe's exit status."""
    return Cmd(
        (
            probe,
            Raw("|| { rc=$?; echo"),
            Cmd.of(APP_LOG_MARK),
            Raw(">&2;"),
            app_log,
            Raw('>&2; exit "$rc"; }'),
        )
    )


def unit_log_tail(unit: str, lines: int = 3) -> Cmd:
    """The last lines the service's own processes logged (not systemd's notes about it)."""
    return Cmd.of("journalctl", f"_SYSTEMD_UNIT={unit}.service", "-n", str(lines), "-o", "cat")


def nginx_test_and_reload() -> Cmd:
    """Never reload a broken config: `nginx -t` must pass first."""
    return Cmd.of("nginx", "-t", "-q").then(Cmd.of("systemctl", "reload", "nginx"))


def pidfile_start(
    current: str,
    pidfile: str,
    bind: str,
    wsgi: str,
    logfile: str,
    workers: int = 2,
    preload: bool = False,
) -> Cmd:
    return script(
        Cmd(
            (
                Cmd.of("cd", current),
                Raw("&&"),
                load_env("./.env"),
                Raw("&&"),
                Cmd.of(
                    "./.venv/bin/gunicorn",
                    "--daemon",
                    # --daemon points stderr at /dev/null: the app's tracebacks go to the log
                    "--capture-output",
                    "--pid",
                    pidfile,
                    "--bind",
                    bind,
                    "--workers",
                    str(workers),
                    *(["--preload"] if preload else []),
                    "--error-logfile",
                    logfile,
                    "--access-logfile",
                    logfile,
                    wsgi,
                ),
            )
        ),
    )
