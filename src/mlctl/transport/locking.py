"""The deploy lock on every host: take it (first host, then the rest), wait for a live holder,
take over a stale one, release it. One lock per DEPLOY_TO, an atomic `mkdir` (commands/lock.py).

The lock is a lease: while a run holds it, a thread of that run touches the lock's heartbeat on
every host every lease/4 seconds. A lock whose heartbeat is older than `timeouts.lock_lease` is
stale whichever machine took it (a cancelled CI job's runner is gone, its pid means nothing
here); a holder on this machine whose process is gone is stale at once."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time

from mlctl.commands import lock as lockcmd
from mlctl.config.layout import Layout
from mlctl.core import cancel, console
from mlctl.core.errors import LockHeld, RemoteCommandFailed
from mlctl.transport.journal import local_user


def holder_record(host, action: str, release: str = "") -> dict:
    sess = host.session
    return {
        "event": "started",
        "action": action,
        "run_id": sess.journal.run_id,
        "user": local_user(),
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "time": time.time(),
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "release": release,
        "env": sess.cfg.name,
    }


def lock(host, action: str, release: str = "") -> None:
    """Take the host's deploy lock, taking over a stale one and waiting up to
    timeouts.lock_wait for a live holder; LockHeld names a live holder."""
    lay = Layout.of(host.session.cfg)
    record = holder_record(host, action, release)
    data = (json.dumps(record) + "\n").encode()
    timeouts = host.session.cfg.timeouts
    deadline = time.monotonic() + timeouts.lock_wait
    took_over = False
    while True:
        r = _try_lock(host, lay, data)
        if r is None:
            heartbeat_for(host.session).add(host)
            return
        holder = parse_holder(r)
        lock_age = lock_dir_age(r)
        if lock_age is None or (not holder and lock_age < NEW_LOCK):
            time.sleep(0.2)  # released meanwhile, or its holder is still writing its record
            continue
        stale = stale_reason(holder, timeouts.lock_stale, timeouts.lock_lease)
        if stale and not took_over:
            _take_over(host, lay, holder, stale)
            took_over = True
            continue
        if not stale and time.monotonic() < deadline:
            time.sleep(1)  # a live holder: wait for it, as long as lock_wait allows
            continue
        waited = f" after waiting {timeouts.lock_wait:g}s" if timeouts.lock_wait else ""
        raise LockHeld(
            f"{host.name}: deploy lock held by {describe_holder(holder)}{waited}",
            "wait for it to finish (--lock-wait SECONDS, timeouts.lock_wait), or "
            "`mlctl ENV unlock` if it is stale",
        )


def _take_over(host, lay: Layout, holder: dict, stale: str) -> None:
    host.session.journal.record(host.name, "lock", outcome="stale-taken-over", holder=holder)
    console.warn(f"{host.name}: taking over stale lock of {describe_holder(holder)} ({stale})")
    host.run("remove stale lock", lockcmd.take_over(lay, host.session.journal.run_id))


def _try_lock(host, lay: Layout, data: bytes):
    try:
        host.stream("lock", lockcmd.acquire(lay), data)
        return None
    except Exception as e:  # noqa: BLE001 — exit HELD is the expected "someone holds it"
        if isinstance(e, RemoteCommandFailed) and e.code == lockcmd.HELD:
            r = host.run("read lock", lockcmd.read(lay))
            return r.stdout
        raise


def parse_holder(text: str) -> dict:
    """The holder record `read` printed, with its `age` and `heartbeat_age` in seconds as the
    host's clock measures them (absent when unknown: a lock taken before leases existed)."""
    lines = text.strip().splitlines()
    clock = [ln.split(" ") for ln in lines if ln.startswith(lockcmd.CLOCK + " ")]
    body = [ln for ln in lines if not ln.startswith(lockcmd.CLOCK + " ")]
    try:
        holder = json.loads(body[0]) if body and body[0].strip() else {}
    except ValueError:
        holder = {}
    if holder and clock:
        now, *mtimes = (_int(x) for x in (clock[-1] + ["", "", ""])[1:4])  # LOCK: lock_dir_age
        for key, mtime in zip(("age", "heartbeat_age"), mtimes, strict=True):
            if now is not None and mtime is not None:
                holder[key] = max(0, now - mtime)
    return holder


NEW_LOCK = 5  # seconds: a lock younger than this without a holder record is being taken


def lock_dir_age(text: str) -> int | None:
    """The lock directory's age by the host's clock; None when there is no lock (anymore). A
    `read` without the lock's time (an older mlctl's output) counts as present, age unknown."""
    clock = [ln.split(" ") for ln in text.strip().splitlines() if ln.startswith(lockcmd.CLOCK)]
    if not clock:
        return NEW_LOCK
    fields = (clock[-1] + ["", "", "", ""])[1:5]
    now, mtime = _int(fields[0]), _int(fields[3])
    if now is None or mtime is None:
        return None
    return max(0, now - mtime)


def _int(word: str) -> int | None:
    return int(word) if word.strip().isdigit() else None


def stale_reason(holder: dict, max_age: float, lease: float = 0.0, here: str = "") -> str:
    """Why a lock is stale ('' if its holder may be alive). A holder on this machine whose
    process is gone is stale at once; any holder whose heartbeat is older than `lease`; a lock
    without a heartbeat (taken before leases existed) only after `max_age`."""
    if not holder:
        return "no holder recorded"
    age = holder.get("age")
    if age is None:
        age = time.time() - float(holder.get("time") or 0)
    pid = int(holder.get("pid") or 0)
    if holder.get("host") == (here or socket.gethostname()) and not process_alive(pid):
        return f"process {holder.get('pid')} on {holder.get('host')} is gone"
    beat = holder.get("heartbeat_age")
    if lease and beat is not None and beat > lease:
        return f"no heartbeat for {beat:g}s, more than timeouts.lock_lease ({lease:g}s)"
    if max_age and age > max_age:
        return f"older than {max_age:g}s"
    return ""


def process_alive(pid: int) -> bool:
    """Whether a process of this machine with that pid exists (pids <= 0 never do)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe_holder(h: dict) -> str:
    """`user@machine pid N (deploy RELEASE, since 12:00:00, for 30s, heartbeat 2s ago)`."""
    if not h:
        return "an unknown holder"
    since = time.strftime("%H:%M:%S", time.localtime(float(h.get("time") or 0)))
    ages = f", for {h['age']:g}s" if h.get("age") is not None else ""
    if h.get("heartbeat_age") is not None:
        ages += f", heartbeat {h['heartbeat_age']:g}s ago"
    return (
        f"{h.get('user')}@{h.get('host')} pid {h.get('pid')} ({h.get('action')} "
        f"{h.get('release') or ''}, since {since}{ages})"
    ).replace(" ,", ",")


def lock_hosts(sess, action: str, release: str, locked: list) -> None:
    """Lock the first host (it decides between two concurrent runs), then the rest in parallel.
    Every lock taken is appended to `locked`, also when Ctrl-C is pressed meanwhile."""
    first, rest = sess.hosts[0], sess.hosts[1:]

    def take(h):
        lock(h, action, release)
        locked.append(h)

    with cancel.held():
        take(first)
        if rest:
            sess.each(take, rest)


def unlock(host) -> None:
    host.run(
        "unlock",
        lockcmd.release(Layout.of(host.session.cfg), host.session.journal.run_id),
        warn=True,
    )
    heartbeat_for(host.session).discard(host)


class Heartbeat:
    """A daemon thread that refreshes this run's lease on every host it holds a lock on, through
    the host's own connection, every lease/4 seconds (1 to 15). A beat that fails (a connection
    being reopened) is simply retried at the next one."""

    def __init__(self, sess):
        self.sess = sess
        self.hosts: list = []
        self.stopped = threading.Event()
        lease = sess.cfg.timeouts.lock_lease
        self.every = min(15.0, max(1.0, lease / 4))
        self.thread = threading.Thread(target=self._beat, name="mlctl-heartbeat", daemon=True)

    def add(self, host) -> None:
        if host not in self.hosts:
            self.hosts.append(host)
        if not self.thread.is_alive() and not self.stopped.is_set():
            self.thread.start()

    def discard(self, host) -> None:
        if host in self.hosts:
            self.hosts.remove(host)

    def stop(self) -> None:
        self.stopped.set()

    def _beat(self) -> None:
        while not self.stopped.wait(self.every):
            for host in list(self.hosts):
                with contextlib.suppress(Exception):
                    beat(host)


def beat(host) -> None:
    """One heartbeat: not a step of the run (not logged, not counted as a round trip)."""
    sess = host.session
    transport = getattr(host.c, "transport", None)
    if transport is not None and not transport.is_active():
        return  # closed (being reopened): Fabric would silently open this one again
    cmd = host.wrapped(lockcmd.heartbeat(Layout.of(sess.cfg), sess.journal.run_id), True, None, 30)
    host.c.run(cmd.render(), hide=True, warn=True, in_stream=False, timeout=40)


def heartbeat_for(sess) -> Heartbeat:
    if getattr(sess, "heartbeat", None) is None:
        sess.heartbeat = Heartbeat(sess)
    return sess.heartbeat
