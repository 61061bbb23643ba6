"""Restarting the app: systemd (socket activation keeps connections queued) or a pidfile."""

from __future__ import annotations

import json

from mlctl.commands.db import load_env
from mlctl.core.shell import Cmd, Raw, script


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


# ---------------------------------------------------------------- built for tasks/hoststeps.py


def reset_and_restart(unit: str) -> Cmd:
    """Restart, first clearing systemd's start rate limit: a deploy, its automatic rollback and a
    bounce restart within seconds, and a unit that hit the limit refuses to start (all 502s)."""
    reset = Cmd.of("systemctl", "reset-failed", f"{unit}.service", f"{unit}.socket")
    return Cmd((reset, Raw("2>/dev/null || true;"), systemd_restart(unit)))


def systemd_stop(unit: str) -> Cmd:
    return Cmd.of("systemctl", "stop", f"{unit}.socket", f"{unit}.service")


def pidfile_control(python: str, program: str, action: str, run_dir: str, **where) -> Cmd:
    """remote/pidfile.py's `action` (stop, halt, check) on this environment's dev gunicorn;
    `where`: deploy_to, bind and log."""
    argv = [python, "-c", program, action, f"{run_dir}/gunicorn.pid"]
    return Cmd.of(*argv, where["deploy_to"], where["bind"], where["log"])


def start_in(run_dir: str, start: Cmd) -> Cmd:
    """The dev gunicorn's start, its pidfile directory made first."""
    return Cmd.of("mkdir", "-p", run_dir).then(start)


def out_of_service(current: str, stop: Cmd) -> Cmd:
    """No `current` and no app running."""
    return script(Cmd.of("rm", "-f", current), stop)


def health_probe(python: str, program: str, config: dict) -> Cmd:
    return Cmd.of(python, "-c", program, json.dumps(config))


def dev_log_since(log: str, start: int) -> Cmd:
    """The dev log from byte `start` on (its size when the restart began), at most 300 lines."""
    return Cmd((Cmd.of("tail", "-c", f"+{start}", log), Raw("2>/dev/null | tail -n 300")))


def unit_log_since_start(unit: str) -> Cmd:
    """The service's own output since $t0 (see mark_start)."""
    return Cmd(
        (
            Cmd.of("journalctl", f"_SYSTEMD_UNIT={unit}.service", "-o", "cat", "-n", "300"),
            Raw('--since "@$t0"'),
        )
    )


def mark_start() -> Cmd:
    """Remember when the restart began (see unit_log_since_start)."""
    return Cmd((Raw("t0=$(date +%s)"),))


def switch_restart_and_probe(switch: Cmd, unit: str, probe: Cmd) -> Cmd:
    """Under systemd, one round trip: switch `current`, restart with the probe running, and on a
    failure the unit's and the app's own last lines on stderr."""
    return script(
        switch,
        mark_start(),
        restart_and_probe(
            reset_and_restart(unit), probe, unit_log_tail(unit), unit_log_since_start(unit)
        ),
    )


def drain_nginx(tenths: int = 300) -> Cmd:
    """Wait (at most `tenths` tenths of a second) until nginx's workers from before the last
    reload have finished their requests: only then may the app they were sending to stop."""
    return Cmd(
        (
            Raw("i=0; while pgrep -f 'nginx: worker process is shutting down' >/dev/null"),
            Raw(f"&& [ $i -lt {tenths} ]; do sleep 0.1; i=$((i+1)); done"),
        )
    )


def nginx_test() -> Cmd:
    return Cmd.of("nginx", "-t", "-q")
