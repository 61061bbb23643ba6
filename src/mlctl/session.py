"""A run against one environment: its settings, one context per host, the journal.

Per-host work takes a `Host`, whose `.c` is an Invoke Context (local) or a Fabric Connection
(remote), so the same step code runs through `inv` and `fab` alike.
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from invoke.exceptions import CommandTimedOut
from paramiko import SSHException

from . import console
from .connection import local_context, open_connection, ssh_user_for
from .errors import CommandTimeout, ConnectError, GuardRefused, MlctlError, RemoteCommandFailed
from .inventory import EnvConfig
from .journal import Journal
from .shell import Cmd, Watch, mask, wrap

LOST = -1  # Invoke's exit code when the channel closed without an exit status


@dataclass
class Result:
    stdout: str
    stderr: str
    code: int
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.code == 0


@dataclass
class Host:
    name: str
    session: Session
    c: object = None  # invoke Context or fabric Connection
    commands: int = 0  # remote round trips, for the benchmark's count
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
        """Run one step; log it; raise RemoteCommandFailed unless `warn`."""
        sess = self.session
        timeout = timeout or sess.cfg["timeouts"]["command"]
        wrapped = self.wrapped(cmd, root, user, timeout)
        shown = wrapped.display(sess.secrets)
        start = time.monotonic()
        self.commands += 1
        try:
            r = self.c.run(
                wrapped.render(), hide=True, warn=True, in_stream=False, timeout=timeout + 10
            )
            res = Result(r.stdout, r.stderr, r.exited, _ms(start))
        except CommandTimedOut:
            sess.journal.record(
                self.name,
                step,
                command=shown,
                exit_code=None,
                duration_ms=_ms(start),
                outcome="timeout",
            )
            raise CommandTimeout(
                f"{self.name}: step '{step}' timed out after {timeout:g}s",
                "raise timeouts.command or check the host",
            ) from None
        except (OSError, EOFError, SSHException) as e:
            raise ConnectError(f"{self.name}: connection lost during '{step}': {e}") from None
        if res.code == LOST and not self.local:
            # The channel closed without an exit status: the command's outcome is unknown.
            sess.journal.record(self.name, step, command=shown, outcome="connection lost")
            raise ConnectError(f"{self.name}: connection lost during '{step}'")
        outcome = "ok" if res.ok else ("warn" if warn else "failed")
        sess.journal.record(
            self.name,
            step,
            command=shown,
            exit_code=res.code,
            duration_ms=res.duration_ms,
            outcome=outcome,
        )
        if not res.ok and not warn:
            detail = _last_line(mask(res.stderr or res.stdout, sess.secrets))
            if res.code == 124:
                raise CommandTimeout(
                    f"{self.name}: step '{step}' timed out after {timeout:g}s " "(timeouts.command)"
                )
            raise RemoteCommandFailed(self.name, step, res.code, detail)
        if not quiet and res.stdout.strip():
            console.step(self.name, res.stdout.strip())
        return res

    def wrapped(self, cmd: Cmd, root: bool, user: str | None, timeout: float) -> Cmd:
        """`cmd` as it runs: under sudo unless local, and under the watcher, tagged with this
        run's id and the step's number (how a cancelled run's processes are found)."""
        sess = self.session
        watch = Watch(sess.cfg["python"], f"{sess.journal.run_id}.{self.commands}")
        return wrap(
            cmd,
            as_root=root and not self.local,
            user=None if self.local else user,
            timeout=timeout,
            watch=watch,
        )

    def stream(self, step: str, cmd: Cmd, data: bytes, root: bool = True) -> Result:
        """Run `cmd` with `data` on its stdin (an archive), in one round trip."""
        sess = self.session
        timeout = sess.cfg["timeouts"]["command"]
        wrapped = self.wrapped(cmd, root, None, timeout)
        start = time.monotonic()
        self.commands += 1
        code, out, err = (_stream_local if self.local else _stream_remote)(
            self.c, wrapped.render(), data, timeout
        )
        res = Result(out, err, code, _ms(start))
        if code == LOST and not self.local:
            raise ConnectError(f"{self.name}: connection lost during '{step}'")
        sess.journal.record(
            self.name,
            step,
            command=wrapped.display(sess.secrets),
            exit_code=code,
            duration_ms=res.duration_ms,
            bytes=len(data),
            outcome="ok" if res.ok else "failed",
        )
        if not res.ok:
            raise RemoteCommandFailed(self.name, step, code, _last_line(mask(err, sess.secrets)))
        return res


def _stream_remote(conn, command: str, data: bytes, timeout: float):
    chan = conn.transport.open_session()
    chan.settimeout(timeout + 10)
    try:
        chan.exec_command(command)
        chan.sendall(data)
        chan.shutdown_write()
        out, err = _drain(chan)
        return chan.recv_exit_status(), out, err
    except (OSError, EOFError, SSHException) as e:
        raise ConnectError(f"{conn.host}: connection lost while streaming: {e}") from None
    finally:
        chan.close()


def _drain(chan) -> tuple[str, str]:
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
            time.sleep(0.002)
    return out.decode(errors="replace"), err.decode(errors="replace")


def _stream_local(_ctx, command: str, data: bytes, timeout: float):
    import subprocess

    p = subprocess.run(["sh", "-c", command], input=data, capture_output=True, timeout=timeout + 10)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def _ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return console.clip(lines[-1]) if lines else ""


class Session:
    """One environment, its hosts (connected lazily, once each), its journal."""

    def __init__(
        self,
        cfg: EnvConfig,
        action: str,
        only_hosts: list[str] | None = None,
        log_dir: str | None = None,
    ):
        self.cfg = cfg
        self.action = action
        self.secrets = cfg.secret_values()
        self.journal = Journal(cfg.name, action, self.secrets, log_dir)
        console.add_secrets(self.secrets)
        names = only_hosts or cfg.hosts
        self.hosts = [Host(n, self) for n in names]
        self.heartbeat = None  # locking.Heartbeat, while this run holds locks

    def add_secrets(self, values) -> None:
        values = [v for v in dict.fromkeys(values) if v and v not in self.secrets]
        self.secrets += values
        self.journal.add_secrets(values)
        console.add_secrets(values)

    def connect(self) -> None:
        """Open every host's connection in parallel; refuse root on protected envs first."""
        if self.cfg.local:
            for h in self.hosts:
                h.c = h.c or local_context()
            return
        s = self.cfg.settings
        for h in self.hosts:
            if ssh_user_for(h.name, s) == "root" and s["protected"] and not s["allow_root"]:
                raise GuardRefused(
                    f"{h.name}: connecting as root to protected environment "
                    f"{self.cfg.name} is refused",
                    "set a deploy user, or allow_root: true",
                )
        self.each(lambda h: setattr(h, "c", h.c or _open(h.name, s)))

    def each(self, fn, hosts: list[Host] | None = None) -> list:
        """Run fn(host) on every host in parallel; re-raise the first error after all finish."""
        hosts = self.hosts if hosts is None else hosts
        if len(hosts) == 1:
            return [fn(hosts[0])]
        results = self._parallel(_settle, fn, hosts)
        errors = [r for r in results if isinstance(r, MlctlError)]
        if errors:
            raise errors[0]
        return results

    def each_settled(self, fn, hosts: list[Host] | None = None) -> list:
        """Like `each`, but return errors in place of results instead of raising."""
        hosts = self.hosts if hosts is None else hosts
        return self._parallel(_settle, fn, hosts) if hosts else []

    @staticmethod
    def _parallel(runner, fn, hosts: list[Host]) -> list:
        pool = ThreadPoolExecutor(max_workers=max(1, min(16, len(hosts))))
        try:
            futures = [pool.submit(runner, fn, h) for h in hosts]
            return [f.result() for f in futures]
        except BaseException:
            # Ctrl-C: don't wait for remote commands still running; cleanup happens next and
            # closing the connections ends them.
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            pool.shutdown(wait=False)

    def reconnect(self, host: Host) -> None:
        """Open a new connection if the host's one was lost (cleanup must reach every host);
        retried until timeouts.connect runs out, as a cut link may come back."""
        transport = getattr(host.c, "transport", None)
        if self.cfg.local or host.c is None or (transport is not None and transport.is_active()):
            return
        console.warn(f"{host.name}: connection lost; reconnecting")
        host.c.close()
        self._reopen(host)

    def abort(self) -> None:
        """Stop every remote command of this run at once: close each host's connection (the
        watcher on the host stops the command's process group when its channel ends) and open
        a new one for the cleanup. Local commands are left to end by themselves."""
        if self.cfg.local:
            return
        for h in self.hosts:
            if h.c is not None:
                with contextlib.suppress(Exception):
                    h.c.close()
        self.each_settled(self._reopen, [h for h in self.hosts if h.c is not None])

    def _reopen(self, host: Host) -> None:
        """A new connection to `host`, retried until timeouts.connect."""
        deadline = time.monotonic() + self.cfg["timeouts"]["connect"]
        while True:
            try:
                host.c = open_connection(host.name, self.cfg.settings)
                return
            except ConnectError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(1)

    def close(self) -> None:
        heartbeat = getattr(self, "heartbeat", None)
        if heartbeat is not None:
            heartbeat.stop()
        for h in self.hosts:
            close = getattr(h.c, "close", None)
            if close and not self.cfg.local:
                try:
                    close()
                except Exception:  # noqa: BLE001 — closing must not mask the real error
                    pass


def _open(name: str, settings: dict):
    try:
        return open_connection(name, settings)
    except ConnectError as e:
        if "timed out" not in e.message:
            raise
        # Name the setting that fired, so the one-line error says what to raise.
        wait = settings["timeouts"]["connect"]
        raise ConnectError(e.message, f"is the host up? (timeouts.connect = {wait:g}s)") from None


def _settle(fn, host):
    try:
        return fn(host)
    except MlctlError as e:
        return e
