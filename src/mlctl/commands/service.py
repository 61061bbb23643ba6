"""Restarting the app: systemd (socket activation keeps connections queued) or a pidfile."""

from __future__ import annotations

from ..shell import Cmd, Raw, script
from .db import load_env


def systemd_restart(unit: str) -> Cmd:
    return Cmd.of("systemctl", "restart", f"{unit}.service")


def restart_and_probe(restart: Cmd, probe: Cmd, explain: Cmd | None = None) -> Cmd:
    """Restart with the health probe already running, so its start-up overlaps the restart (it
    waits for the release id it expects, so answers from the old processes don't count). The
    probe's verdict is the exit status; a failed restart stops the probe, runs `explain` (its
    output on stderr: the step's error ends with it) and exits 1."""
    why = [explain, Raw(">&2;")] if explain else []
    return Cmd(
        (
            probe,
            Raw("& probe=$!;"),
            restart,
            Raw('|| { kill "$probe" 2>/dev/null;'),
            *why,
            Raw('exit 1; }; wait "$probe"'),
        )
    )


def unit_log_tail(unit: str, lines: int = 3) -> Cmd:
    """The last lines the service's own processes logged (not systemd's notes about it)."""
    return Cmd.of("journalctl", f"_SYSTEMD_UNIT={unit}.service", "-n", str(lines), "-o", "cat")


def nginx_test_and_reload() -> Cmd:
    """Never reload a broken config: `nginx -t` must pass first."""
    return Cmd.of("nginx", "-t", "-q").then(Cmd.of("systemctl", "reload", "nginx"))


def pidfile_stop(pidfile: str) -> Cmd:
    """TERM the gunicorn master and wait (up to 10 s) for it to go."""
    return Cmd(
        (
            Raw("if"),
            Cmd.of("test", "-f", pidfile),
            Raw("; then pid=$(cat"),
            Cmd.of(pidfile),
            Raw(
                ') && kill -TERM "$pid" 2>/dev/null; for i in $(seq 100); do'
                ' kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done;'
            ),
            Cmd.of("rm", "-f", pidfile),
            Raw("; fi"),
        )
    )


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
