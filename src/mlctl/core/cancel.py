"""Ending a run on a signal: SIGINT (Ctrl-C), SIGTERM (a cancelled CI job, `kill`) and SIGHUP (a
closed terminal) all do what Ctrl-C does: the current step is stopped, what was built is cleaned
up, the lock released and the outcome recorded; the run exits 128 + the signal's number.

A second signal while that cleanup runs ends the process at once: what is left (a lock, a partial
release) is what the next run already knows how to clean up.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A KeyboardInterrupt that knows which signal caused it (every Ctrl-C path handles it)."""

    def __init__(self, signum: int = signal.SIGINT):
        self.signum = int(signum)
        super().__init__(signal.Signals(self.signum).name)


AFTERMATH = "the lock was released and the current release left serving"


def exit_code(error: KeyboardInterrupt) -> int:
    """130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP."""
    return 128 + getattr(error, "signum", signal.SIGINT)


def describe(error: KeyboardInterrupt) -> str:
    signum = getattr(error, "signum", signal.SIGINT)
    return (
        "interrupted" if signum == signal.SIGINT else f"terminated by {signal.Signals(signum).name}"
    )


_state: dict = {"signal": 0, "pending": 0, "held": 0, "last_words": None}


def install(last_words=None) -> None:
    """Handle SIGINT, SIGTERM and SIGHUP for this run (main thread only). `last_words(code)` runs
    before a second signal ends the process (e.g. to write the CI summary)."""
    if threading.current_thread() is not threading.main_thread():
        return
    _state.update(signal=0, pending=0, held=0, last_words=last_words)
    for s in SIGNALS:
        signal.signal(s, _handle)


def _handle(signum, frame):
    if _state["signal"]:
        _die(signum)
    _state["signal"] = signum
    if _state["held"]:
        _state["pending"] = signum
        return
    raise Interrupted(signum)


def _die(signum: int) -> None:
    from mlctl.core import console

    code = 128 + signum
    name = signal.Signals(signum).name
    try:
        console.fail(f"{name} again: stopping now; the next run cleans up what is left")
        if _state["last_words"]:
            _state["last_words"](code)
    finally:
        os._exit(code)


@contextlib.contextmanager
def held(reraise: bool = True):
    """Hold a first signal until the block ends, then raise it (a second one ends the run).

    Taking the locks runs in threads that a signal would not stop: a lock they take after the
    interrupt would be left without its outcome in the history, and held. The cleanup after a
    failure runs with `reraise=False`: a signal then changes nothing (the run is ending anyway,
    with its own error); a second one still ends it at once.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _handle) for s in SIGNALS}
    _state["held"] += 1
    try:
        yield
    finally:
        _state["held"] -= 1
        for s, h in previous.items():
            signal.signal(s, h)
    if _state["pending"] and not _state["held"]:
        signum, _state["pending"] = _state["pending"], 0
        if reraise:
            raise Interrupted(signum)


RUN_END_WAIT = 15.0  # seconds: the watcher TERMs a group, then KILLs it 5 s later


def stop_remote(sess) -> list:
    """After a signal: end every remote command of this run (see Session.abort) and wait, at
    most RUN_END_WAIT seconds per host, until none of its processes is left there. Returns the
    hosts where some still run (their cleanup must not touch what those processes use)."""
    from mlctl import remote
    from mlctl.core import console
    from mlctl.core.shell import Cmd

    sess.abort()

    def ended(host) -> bool:
        code = remote.source("runs")
        cmd = Cmd.of(sess.cfg.python, "-c", code, sess.journal.run_id, str(RUN_END_WAIT))
        r = host.run("wait for this run's processes", cmd, warn=True, timeout=RUN_END_WAIT + 30)
        if not r.ok:
            console.warn(f"{host.name}: processes of this run still running: {r.stdout.strip()}")
        return r.ok

    results = sess.each_settled(ended, [h for h in sess.hosts if h.c is not None])
    hosts = [h for h in sess.hosts if h.c is not None]
    return [h for h, ok in zip(hosts, results, strict=True) if ok is not True]
