"""`logs`: the app journal or nginx logs of every host, prefixed with the host and merged in time
order; `-f` follows every host at once until Ctrl-C.

Following uses one SSH channel per host with a pty: closing the channel hangs up the remote
terminal, so the remote `journalctl -f` / `tail -F` ends with it instead of lingering on the host.
"""

from __future__ import annotations

import heapq
import os
import signal
import subprocess
import threading
import time

from mlctl.commands import probes
from mlctl.config.layout import unit_name
from mlctl.core import console
from mlctl.core.errors import ConnectError, MlctlError, UsageError
from mlctl.core.shell import Cmd, wrap
from mlctl.remote.logtime import line_time
from mlctl.transport.selection import open_session

FOLLOW_TIMEOUT = 7 * 86400  # the host's own `timeout` ends a follow the client lost track of


# ---------------------------------------------------------------- which command


def log_command(
    settings: dict, project_name: str, service: str, lines: int, since: str | None, follow: bool
) -> Cmd:
    """The command that prints (or follows) one host's log of `service`."""
    if settings["connection"] == "local":
        if service != "app":
            raise UsageError(f"{service}: a local environment has no nginx (use --service app)")
        return probes.file_log(probes.local_app_log(settings["deploy_to"]), lines, follow)
    if service == "app":
        return probes.app_log(unit_name(project_name), lines, since, follow)
    return probes.file_log(probes.NGINX_LOGS[service], lines, follow)


# ---------------------------------------------------------------- merging (pure)


def timed_lines(text: str) -> list[tuple[float, str]]:
    """Each line with its time; a line without one (a traceback) keeps the previous line's."""
    out, last = [], 0.0
    for line in text.splitlines():
        if not line.strip():
            continue
        stamp = line_time(line)
        last = stamp if stamp is not None else last
        out.append((last, line))
    return out


def merge(texts: dict[str, str]) -> list[tuple[str, str]]:
    """(host, line) of every host's output in time order; each host's own order is kept."""
    streams = [
        [(t, i, host, line) for t, line in timed_lines(text)]
        for i, (host, text) in enumerate(texts.items())
    ]
    return [(host, line) for _, _, host, line in heapq.merge(*streams, key=lambda x: (x[0], x[1]))]


def prefixed(host: str, line: str, width: int = 0) -> str:
    return f"{host.ljust(width)} | {line}"


# ---------------------------------------------------------------- the task


def logs_task(
    sel, service: str = "app", since: str | None = None, lines: int = 50, follow: bool = False
) -> int:
    with open_session(sel, "logs") as sess:
        cfg = sess.cfg
        cmd = log_command(cfg.settings, cfg.project["name"], service, lines, since, follow)
        if since and (service != "app" or cfg.local):
            console.warn("--since applies to the app journal only; showing the last lines instead")
        sess.refuse_root()
        reachable = _connect_all(sess)
        if not reachable:
            return ConnectError.exit_code
        if follow:
            follow_all(sess, reachable, cmd)
        else:
            _print_merged(sess, reachable, cmd)
    return 0 if len(reachable) == len(sess.hosts) else 1


def _connect_all(sess) -> list:
    def one(host):
        try:
            sess.connect_host(host)
            return host
        except ConnectError as e:
            console.fail(str(e))
            return None

    return [h for h in sess.each_settled(one) if h is not None and not isinstance(h, Exception)]


def _print_merged(sess, hosts: list, cmd: Cmd) -> None:
    def fetch(host):
        r = host.run("logs", cmd, warn=True, timeout=120)
        if not r.ok:
            why = (r.stderr.strip().splitlines() or [f"exit {r.code}"])[-1]
            console.warn(f"{host.name}: {why}")
        return host.name, r.stdout

    texts = {}
    for res in sess.each_settled(fetch, hosts):
        if isinstance(res, MlctlError):
            console.fail(str(res))
        else:
            texts[res[0]] = res[1]
    width = max((len(h) for h in texts), default=0)
    for host, line in merge(texts):
        console.out(prefixed(host, line, width))


# ---------------------------------------------------------------- following


class Printer:
    """Prefixes complete lines with the host and writes them whole, one thread at a time."""

    def __init__(self, width: int):
        self.width = width
        self.lock = threading.Lock()

    def feed(self, host: str, pending: bytes, data: bytes) -> bytes:
        pending += data
        *complete, rest = pending.split(b"\n")
        for raw in complete:
            self.line(host, raw.decode(errors="replace").rstrip("\r"))
        return rest

    def line(self, host: str, text: str) -> None:
        with self.lock:
            console.out(prefixed(host, text, self.width))


def follow_all(sess, hosts: list, cmd: Cmd) -> None:
    """Follow every host in its own thread until Ctrl-C (or every stream ends)."""
    stop = threading.Event()
    printer = Printer(max(len(h.name) for h in hosts))
    follow = _follow_local if sess.cfg.local else _follow_remote
    threads = [
        threading.Thread(
            target=follow, args=(h, cmd, printer, stop), daemon=True, name=f"logs-{h.name}"
        )
        for h in hosts
    ]
    for t in threads:
        t.start()
    try:
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(0.2)
    except KeyboardInterrupt:
        console.info("stopping…")
    finally:
        stop.set()
        for t in threads:
            t.join(5)


def _follow_remote(host, cmd: Cmd, printer: Printer, stop: threading.Event) -> None:
    sess = host.session
    shown = wrap(cmd, as_root=True, timeout=FOLLOW_TIMEOUT)
    start = time.monotonic()
    chan = host.c.transport.open_session()
    outcome = "ok"
    try:
        chan.get_pty(term="dumb", width=500)
        chan.settimeout(0.2)
        chan.exec_command(shown.render())
        pending = b""
        while not stop.is_set():
            try:
                data = chan.recv(65536)
            except TimeoutError:
                continue
            if not data:
                break
            pending = printer.feed(host.name, pending, data)
        if pending:
            printer.line(host.name, pending.decode(errors="replace").rstrip("\r"))
    except (OSError, EOFError) as e:
        outcome = "failed"
        printer.line(host.name, f"connection lost: {e}")
    finally:
        chan.close()  # hangs up the remote pty: the remote follower gets SIGHUP and ends
        sess.journal.record(
            host.name,
            "logs -f",
            command=shown.display(sess.secrets),
            duration_ms=int((time.monotonic() - start) * 1000),
            outcome=outcome,
        )


def _follow_local(host, cmd: Cmd, printer: Printer, stop: threading.Event) -> None:
    sess = host.session
    start = time.monotonic()
    # A session of its own: Ctrl-C reaches mlctl, which then ends the whole tail process group.
    proc = subprocess.Popen(
        ["sh", "-c", cmd.render()],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    reader = threading.Thread(target=_pump, args=(proc, host.name, printer), daemon=True)
    reader.start()
    try:
        while not stop.is_set() and proc.poll() is None:
            stop.wait(0.2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(5)
        reader.join(2)
        sess.journal.record(
            host.name,
            "logs -f",
            command=cmd.display(sess.secrets),
            duration_ms=int((time.monotonic() - start) * 1000),
            outcome="ok",
        )


def _pump(proc, host: str, printer: Printer) -> None:
    for raw in iter(proc.stdout.readline, b""):
        printer.line(host, raw.decode(errors="replace").rstrip("\r\n"))
