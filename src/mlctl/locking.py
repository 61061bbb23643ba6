"""The deploy lock on every host: take it (first host, then the rest), wait for a live holder,
take over a stale one, release it. One lock per DEPLOY_TO, an atomic `mkdir` (commands/lock.py)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time

from . import console
from .commands import lock as lockcmd
from .errors import LockHeld, RemoteCommandFailed
from .journal import local_user
from .layout import Layout
from .steps import layout


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
    lay = layout(host)
    record = holder_record(host, action, release)
    data = (json.dumps(record) + "\n").encode()
    timeouts = host.session.cfg["timeouts"]
    deadline = time.monotonic() + timeouts["lock_wait"]
    took_over = False
    while True:
        r = _try_lock(host, lay, data)
        if r is None:
            return
        holder = parse_holder(r)
        stale = stale_reason(holder, timeouts["lock_stale"])
        if stale and not took_over:
            _take_over(host, lay, holder, stale)
            took_over = True
            continue
        if not stale and time.monotonic() < deadline:
            time.sleep(1)  # a live holder: wait for it, as long as lock_wait allows
            continue
        waited = f" after waiting {timeouts['lock_wait']:g}s" if timeouts["lock_wait"] else ""
        raise LockHeld(
            f"{host.name}: deploy lock held by {describe_holder(holder)}{waited}",
            "wait for it to finish (timeouts.lock_wait), or `mlctl ENV unlock` if it is stale",
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
    try:
        return json.loads(text.strip().splitlines()[0]) if text.strip() else {}
    except (ValueError, IndexError):
        return {}


def stale_reason(holder: dict, max_age: float) -> str:
    """Why a lock is stale ('' if its holder may be alive)."""
    if not holder:
        return "no holder recorded"
    age = time.time() - float(holder.get("time") or 0)
    pid = int(holder.get("pid") or 0)
    if holder.get("host") == socket.gethostname() and not process_alive(pid):
        return f"process {holder.get('pid')} on {holder.get('host')} is gone"
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
    if not h:
        return "an unknown holder"
    since = time.strftime("%H:%M:%S", time.localtime(float(h.get("time") or 0)))
    return (
        f"{h.get('user')}@{h.get('host')} pid {h.get('pid')} ({h.get('action')} "
        f"{h.get('release') or ''}, since {since})"
    ).replace(" ,", ",")


def lock_hosts(sess, action: str, release: str, locked: list) -> None:
    """Lock the first host (it decides between two concurrent runs), then the rest in parallel.
    Every lock taken is appended to `locked`, also when Ctrl-C is pressed meanwhile."""
    first, rest = sess.hosts[0], sess.hosts[1:]

    def take(h):
        lock(h, action, release)
        locked.append(h)

    with deferred_interrupt():
        take(first)
        if rest:
            sess.each(take, rest)


@contextlib.contextmanager
def deferred_interrupt():
    """Hold a Ctrl-C until the block ends (a second one goes through at once).

    Taking the locks runs in threads that a Ctrl-C would not stop: a lock they take after the
    interrupt would be left without its outcome in the history, and held.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pressed: list = []

    def hold(signum, frame):
        if pressed:
            raise KeyboardInterrupt
        pressed.append(signum)

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pressed:
        raise KeyboardInterrupt


def unlock(host) -> None:
    host.run("unlock", lockcmd.release(layout(host), host.session.journal.run_id), warn=True)
