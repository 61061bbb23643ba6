"""The deploy lock: an atomic `mkdir` with the holder's details; history's "started" record.

The lock is a lease: its holder touches `lock/heartbeat` every few seconds while it runs
(`heartbeat`), and `read` reports the host's clock with the files' times, so a lock's age and its
heartbeat's age are measured on the host (no clock skew between control machines)."""

from __future__ import annotations

from mlctl.config.layout import Layout
from mlctl.core.shell import Cmd, Raw, script

HELD = 3  # exit code of `acquire` when someone else holds the lock


def acquire(lay: Layout) -> Cmd:
    """mkdir the lock; on success store stdin as holder.json and append it to the history. Exit
    HELD (with the holder on stdout) only when the lock exists; any other mkdir failure
    (permissions, a full or read-only disk) exits 1 with mkdir's own message."""
    holder = f"{lay.lock}/holder.json"
    return Cmd(
        (
            Cmd.of("mkdir", "-p", lay.state),
            Raw("&& if _e=$("),
            Cmd.of("mkdir", lay.lock),
            Raw("2>&1); then"),
            Cmd.of("cat").redirect(holder),
            Raw("&&"),
            Cmd.of("touch", f"{lay.lock}/heartbeat"),
            Raw("&&"),
            Cmd.of("cat", holder).redirect(lay.history, append=True),
            Raw("; elif"),
            Cmd.of("test", "-d", lay.lock),
            Raw("; then"),
            Cmd.of("cat", holder),
            Raw(f'2>/dev/null; exit {HELD}; else echo "$_e" >&2; exit 1; fi'),
        )
    )


CLOCK = "clock"  # read's last line: `clock NOW HOLDER BEAT LOCK`, mtimes by the host's clock


def read(lay: Layout) -> Cmd:
    """The holder record (if any), then the clock line: the host's time and the mtimes of
    holder.json, the heartbeat and the lock directory (empty for a missing one)."""
    holder, beat = f"{lay.lock}/holder.json", f"{lay.lock}/heartbeat"
    return Cmd(
        (
            Cmd.of("cat", holder),
            Raw(f'2>/dev/null; printf "{CLOCK} %s %s %s %s\\n" "$(date +%s)" "$('),
            Cmd.of("stat", "-c", "%Y", holder),
            Raw('2>/dev/null)" "$('),
            Cmd.of("stat", "-c", "%Y", beat),
            Raw('2>/dev/null)" "$('),
            Cmd.of("stat", "-c", "%Y", lay.lock),
            Raw('2>/dev/null)"'),
        )
    )


def heartbeat(lay: Layout, run_id: str) -> Cmd:
    """Refresh the lease, only while this run holds the lock (never re-creates a removed one)."""
    holder = f"{lay.lock}/holder.json"
    return Cmd(
        (
            Cmd.of("grep", "-qF", f'"run_id": "{run_id}"', holder),
            Raw("2>/dev/null &&"),
            Cmd.of("touch", "-c", f"{lay.lock}/heartbeat"),
            Raw("|| true"),
        )
    )


def release(lay: Layout, run_id: str) -> Cmd:
    """Remove the lock only if this run holds it."""
    holder = f"{lay.lock}/holder.json"
    return Cmd(
        (
            Raw("if"),
            Cmd.of("grep", "-qF", f'"run_id": "{run_id}"', holder),
            Raw("2>/dev/null; then"),
            Cmd.of("rm", "-rf", lay.lock),
            Raw("; fi"),
        )
    )


def take_over(lay: Layout, run_id: str) -> Cmd:
    """Move a stale lock aside (atomic rename) and delete it."""
    aside = f"{lay.lock}.stale-{run_id}"
    return script(Cmd.of("mv", "-T", lay.lock, aside), Cmd.of("rm", "-rf", aside))
