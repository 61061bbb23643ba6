"""The one way a command reaches a host: `Host.run` and `Host.stream` both go through `execute`.

One place renders the command as it runs (sudo or the app user, the `timeout -k` wrapper, the
watcher), one place records it in the journal and one maps how it ended to an error. In a dry run
(`session.planning`) the same rendered command is printed and recorded as "planned" instead of run,
and a successful empty result lets the step logic go on: what a dry run prints is what a real run
would run.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field

from invoke.exceptions import CommandTimedOut
from paramiko import SSHException

from mlctl.core import console
from mlctl.core.errors import CommandTimeout, ConnectError, RemoteCommandFailed
from mlctl.core.shell import Cmd, Watch, mask, wrap

LOST = -1  # Invoke's exit code when the channel closed without an exit status
TIMED_OUT = 124  # `timeout`'s exit code: the host-side limit fired
GRACE = 10  # seconds the local side waits beyond the host-side limit before giving up


@dataclass
class Result:
    stdout: str
    stderr: str
    code: int
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.code == 0


class _TimedOut(Exception):
    """The local side gave up waiting (the host-side `timeout` should have fired first)."""


@dataclass
class Host:
    name: str
    session: object  # the Session this host belongs to
    c: object = None  # invoke Context or fabric Connection
    commands: int = 0  # steps run on this host so far: numbers the watcher tag of each step
    facts: dict = field(default_factory=dict)

    @property
    def local(self) -> bool:
        return self.session.cfg.local

    def run(
        self,
        step: str,
        cmd: Cmd,
        root: bool = True,
        user: str | None = None,
        timeout: float | None = None,
        warn: bool = False,
        quiet: bool = True,
    ) -> Result:
        """Run one step; log it; raise (RemoteCommandFailed, CommandTimeout, …) unless `warn`."""
        res = self.execute(step, cmd, root, user, timeout, warn, None)
        if not quiet and res.stdout.strip():
            console.step(self.name, res.stdout.strip())
        return res

    def stream(self, step: str, cmd: Cmd, data: bytes, root: bool = True) -> Result:
        """Run `cmd` with `data` on its stdin (an archive), in one round trip."""
        return self.execute(step, cmd, root, None, None, False, data)

    def execute(self, step, cmd: Cmd, root, user, timeout, warn, data: bytes | None) -> Result:
        """The one executor: render, run (or plan), record, map the ending to an error."""
        sess = self.session
        timeout = timeout or sess.cfg.timeouts.command
        wrapped = self.wrapped(cmd, root, user, timeout)
        shown = wrapped.display(sess.secrets)
        extra = {} if data is None else {"bytes": len(data)}
        self.commands += 1
        if getattr(sess, "planning", False):
            return self._plan(step, shown, extra, data is not None)
        start = time.monotonic()
        try:
            code, out, err = self._transport(wrapped.render(), data, timeout)
        except _TimedOut:
            sess.journal.record(
                self.name, step, command=shown, exit_code=None, duration_ms=_ms(start),
                outcome="timeout", **extra,
            )  # fmt: skip
            raise timed_out(self.name, step, timeout) from None
        except (OSError, EOFError, SSHException) as e:
            raise ConnectError(f"{self.name}: connection lost during '{step}': {e}") from None
        res = Result(out, err, code, _ms(start))
        sess.journal.record(
            self.name, step, command=shown, exit_code=None if lost(res, self.local) else code,
            duration_ms=res.duration_ms, outcome=outcome(res, warn, self.local), **extra,
        )  # fmt: skip
        error = failure(self.name, step, res, timeout, warn, self.local, sess.secrets)
        if error is not None:
            raise error
        return res

    def _plan(self, step: str, shown: str, extra: dict, streamed: bool) -> Result:
        """Dry run: print and record the exact command instead of running it."""
        console.out(f"[{self.name}] {step}: {shown}" + (" < archive" if streamed else ""))
        self.session.journal.record(self.name, step, command=shown, outcome="planned", **extra)
        return Result("", "", 0, 0)

    def _transport(self, command: str, data: bytes | None, timeout: float):
        """(exit code, stdout, stderr) of one command; raises _TimedOut or a connection error."""
        if data is None:
            try:
                r = self.c.run(
                    command, hide=True, warn=True, in_stream=False, timeout=timeout + GRACE
                )
            except CommandTimedOut:
                raise _TimedOut() from None
            return r.exited, r.stdout, r.stderr
        send = _stream_local if self.local else _stream_remote
        return send(self.c, command, data, timeout + GRACE)

    def wrapped(self, cmd: Cmd, root: bool, user: str | None, timeout: float) -> Cmd:
        """`cmd` as it runs: under sudo unless local, and under the watcher, tagged with this
        run's id and the step's number (how a cancelled run's processes are found)."""
        sess = self.session
        watch = Watch(sess.cfg.python, f"{sess.journal.run_id}.{self.commands}")
        return wrap(
            cmd,
            as_root=root and not self.local,
            user=None if self.local else user,
            timeout=timeout,
            watch=watch,
        )


# ---------------------------------------------------------------- how a command ended


def lost(res: Result, local: bool) -> bool:
    """The channel closed without an exit status: the command's outcome is unknown."""
    return res.code == LOST and not local


def outcome(res: Result, warn: bool, local: bool) -> str:
    if lost(res, local):
        return "connection lost"
    if res.code == TIMED_OUT:
        return "timeout"
    return "ok" if res.ok else ("warn" if warn else "failed")


def failure(host, step, res: Result, timeout: float, warn: bool, local: bool, secrets=()):
    """The error a finished command raises, or None (a lost channel raises even with `warn`)."""
    if lost(res, local):
        return ConnectError(f"{host}: connection lost during '{step}'")
    if res.ok or warn:
        return None
    if res.code == TIMED_OUT:
        return timed_out(host, step, timeout)
    detail = _last_line(mask(res.stderr or res.stdout, secrets))
    return RemoteCommandFailed(host, step, res.code, detail)


def timed_out(host: str, step: str, timeout: float) -> CommandTimeout:
    return CommandTimeout(
        f"{host}: step '{step}' timed out after {timeout:g}s (timeouts.command)",
        "raise timeouts.command or check the host",
    )


# ---------------------------------------------------------------- streaming stdin


def _stream_remote(conn, command: str, data: bytes, wait: float):
    chan = conn.transport.open_session()
    chan.settimeout(wait)
    try:
        chan.exec_command(command)
        chan.sendall(data)
        chan.shutdown_write()
        out, err = _drain(chan, time.monotonic() + wait)
        return chan.recv_exit_status(), out, err
    except TimeoutError:
        raise _TimedOut() from None
    finally:
        chan.close()


def _drain(chan, deadline: float) -> tuple[str, str]:
    out, err = bytearray(), bytearray()
    while True:
        got = False
        if chan.recv_ready():
            out += chan.recv(65536)
            got = True
        if chan.recv_stderr_ready():
            err += chan.recv_stderr(65536)
            got = True
        if not got:
            if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                break
            if time.monotonic() > deadline:
                raise _TimedOut()
            time.sleep(0.002)
    return out.decode(errors="replace"), err.decode(errors="replace")


def _stream_local(_ctx, command: str, data: bytes, wait: float):
    try:
        p = subprocess.run(["sh", "-c", command], input=data, capture_output=True, timeout=wait)
    except subprocess.TimeoutExpired:
        raise _TimedOut() from None
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def _ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return console.clip(lines[-1]) if lines else ""
