"""The watcher every step runs under: exact command strings, and its behaviour on this machine
(a process group of its own, stopped when the reader of its output goes away, on a signal or at
its timeout)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from mlctl.core.shell import WATCHER, Cmd, Watch, quote, wrap

PY = sys.executable
W = Watch(PY, "run1.7")


def test_watched_command_strings():
    c = Cmd.of("echo", "a b")
    assert wrap(c, as_root=True, timeout=30.5, watch=W).render() == (
        f"sudo -n {PY} -I -S -c {quote(WATCHER)} 30 run1.7 sh -c 'echo '\"'\"'a b'\"'\"''"
    )
    assert wrap(c, user="www-data", timeout=0.2, watch=W).display() == (
        f"sudo -n -u www-data {PY} -I -S -c <mlctl-watch> 1 run1.7 sh -c 'echo '\"'\"'a b'\"'\"''"
    )
    assert wrap(c, watch=W).display() == (
        f"{PY} -I -S -c <mlctl-watch> 0 run1.7 sh -c 'echo '\"'\"'a b'\"'\"''"
    )
    secret = wrap(Cmd.of("echo", "hunter22"), timeout=5, watch=W)
    assert "hunter22" not in secret.display(["hunter22"]) and "hunter22" in secret.render()
    assert '"""' not in WATCHER  # the docstring is not sent with every command


def run(cmd: Cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S602 — the shell is the point: it runs what ssh would
        cmd.render(), shell=True, capture_output=True, text=True, timeout=30, **kw
    )


def test_exit_status_output_and_tag_pass_through():
    r = run(
        wrap(
            Cmd((Cmd.of("printenv", "MLCTL_RUN"),)).then(Cmd.of("sh", "-c", "exit 4")),
            timeout=20,
            watch=W,
        )
    )
    assert (r.returncode, r.stdout) == (4, "run1.7\n")
    r = run(wrap(Cmd.of("cat"), watch=W), input="streamed\n")
    assert (r.returncode, r.stdout) == (0, "streamed\n")


def test_timeout_stops_the_whole_group_with_exit_124():
    start = time.monotonic()
    r = run(wrap(Cmd.of("sh", "-c", "sleep 60 & sleep 61"), timeout=1, watch=W))
    assert r.returncode == 124 and "timed out after 1s" in r.stderr
    assert time.monotonic() - start < 10
    assert not alive("^sleep 6[01]$")


def alive(pattern: str) -> list[str]:
    p = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return p.stdout.split()


def test_reader_gone_stops_the_whole_group_within_seconds():
    """What sshd does to a channel that closes (or to every channel when it dies): it closes the
    pipes. No signal reaches the command; the watcher sees its stdout lose its reader."""
    cmd = wrap(Cmd.of("sh", "-c", "sleep 71 & sleep 72 & wait"), timeout=900, watch=W)
    p = subprocess.Popen(["sh", "-c", cmd.render()], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while len(alive("^sleep 7[12]$")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(alive("^sleep 7[12]$")) == 2
    p.stdout.close()
    p.stderr.close()
    deadline = time.monotonic() + 10
    while alive("^sleep 7[12]$") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive("^sleep 7[12]$")
    p.wait(timeout=10)


def test_sigterm_to_the_watcher_stops_the_group():
    cmd = wrap(Cmd.of("sh", "-c", "sleep 81 & sleep 82"), timeout=900, watch=W)
    p = subprocess.Popen(["sh", "-c", "exec " + cmd.render()], stdout=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while len(alive("^sleep 8[12]$")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGTERM)
    assert p.wait(timeout=10) == 128 + signal.SIGTERM
    assert not alive("^sleep 8[12]$")
    p.stdout.close()
