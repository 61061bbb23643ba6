"""A run against one environment: its settings, one context per host, the journal.

Per-host work takes a `Host`, whose `.c` is an Invoke Context (local) or a Fabric Connection
(remote), so the same step code runs through `inv` and `fab` alike.
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import ThreadPoolExecutor

from mlctl.config.inventory import EnvConfig
from mlctl.core import console
from mlctl.core.errors import ConnectError, GuardRefused, MlctlError
from mlctl.transport.connection import local_context, open_connection, ssh_user_for
from mlctl.transport.executor import Host, Result
from mlctl.transport.journal import Journal

__all__ = ["Host", "Result", "Session"]


class Session:
    """One environment, its hosts (connected lazily, once each), its journal.

    A context manager: `with open_session(sel, "deploy") as sess:` closes every connection
    however the block ends. `planning` (a dry run) makes every host print and record the
    commands it would run instead of running them (executor.Host.execute).
    """

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
        self.planning = False

    def add_secrets(self, values) -> None:
        values = [v for v in dict.fromkeys(values) if v and v not in self.secrets]
        self.secrets += values
        self.journal.add_secrets(values)
        console.add_secrets(values)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def connect(self, hosts: list[Host] | None = None) -> None:
        """Open the hosts' connections in parallel (those not open yet); refuse root on
        protected environments before any."""
        self.refuse_root()
        self.each(self.connect_host, self.hosts if hosts is None else hosts)

    def refuse_root(self) -> None:
        """Connecting as root to a protected environment is refused unless allow_root."""
        s = self.cfg.settings
        if self.cfg.local or not s["protected"] or s["allow_root"]:
            return
        for h in self.hosts:
            if ssh_user_for(h.name, s) == "root":
                raise GuardRefused(
                    f"{h.name}: connecting as root to protected environment "
                    f"{self.cfg.name} is refused",
                    "set a deploy user, or allow_root: true",
                )

    def connect_host(self, host: Host) -> int:
        """Connect `host` unless it is; the milliseconds it took (0 when already connected)."""
        if host.c is not None:
            return 0
        start = time.monotonic()
        local = self.cfg.local
        host.c = local_context() if local else open_connection(host.name, self.cfg.settings)
        return int((time.monotonic() - start) * 1000)

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

    def each_settled(self, fn, hosts: list[Host] | None = None, putting_back: str = "") -> list:
        """Like `each`, but return errors in place of results instead of raising. With
        `putting_back` (what fn restores), each error is also named on the console: the
        error that ends the run stays the one that caused it, but none is dropped unsaid."""
        hosts = self.hosts if hosts is None else hosts
        results = self._parallel(_settle, fn, hosts) if hosts else []
        for host, res in zip(hosts, results, strict=True):
            if putting_back and isinstance(res, MlctlError):
                console.fail(f"could not put back {putting_back} on {host.name}: {res}")
        return results

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
        deadline = time.monotonic() + self.cfg.timeouts.connect
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


def _settle(fn, host):
    try:
        return fn(host)
    except MlctlError as e:
        return e
