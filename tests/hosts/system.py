"""Thin wrappers around the machine-side kernel interfaces the farm uses.

Commands, mounts, cgroups and processes. Everything here is usable by the
teardown path on its own, without any state from the run that created the
resources, so a crashed farm can always be cleaned up by scanning.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

log = logging.getLogger("tests.hosts")

CGROUP_FS = Path("/sys/fs/cgroup")


class CommandError(RuntimeError):
    """A helper command failed; carries its stderr so failures are readable."""


def run(*argv: object, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    args = [str(a) for a in argv]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise CommandError(f"{' '.join(args)} exited {proc.returncode}: {detail}")
    return proc


def attempt(what: str, step: Callable[..., object], *args: object) -> bool:
    """Run one teardown step; log and swallow its failure so later steps still run."""
    try:
        step(*args)
        return True
    except Exception as exc:  # noqa: BLE001 - teardown must never stop half-way
        log.warning("cleanup: %s failed: %s", what, exc)
        return False


# --- mounts -----------------------------------------------------------------


def _unescape_mount_field(field: str) -> str:
    # /proc/self/mountinfo escapes space, tab, newline and backslash as \ooo.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts() -> list[tuple[str, str]]:
    """(mount point, fs type) for every mount in this mount namespace, in mount order."""
    found = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            fields = line.split()
            sep = fields.index("-")
            found.append((_unescape_mount_field(fields[4]), fields[sep + 1]))
    return found


def mounts_under(root: Path) -> list[str]:
    """Mount points strictly below root, deepest (most recently stacked) first."""
    prefix = str(root).rstrip("/") + "/"
    points = [point for point, _ in mounts() if point.startswith(prefix)]
    # Reverse mount order unmounts stacked mounts top-down; sorting by depth
    # first also handles a parent that was mounted after its child.
    points.reverse()
    return sorted(points, key=lambda p: p.count("/"), reverse=True)


def fs_type(path: Path) -> str | None:
    for point, kind in reversed(mounts()):
        if point == str(path):
            return kind
    return None


def unmount(path: str) -> None:
    proc = run("umount", path, check=False)
    if proc.returncode != 0:
        # Something still pins it; detach so the next run can proceed, and say so.
        log.warning("umount %s failed (%s); detaching lazily", path, proc.stderr.strip())
        run("umount", "--lazy", path)


# --- cgroups ----------------------------------------------------------------


def cgroup_hierarchies() -> list[Path]:
    """Hierarchies systemd-nspawn needs a delegated cgroup in.

    Pure cgroup v2 machines have one (cgroup2 at /sys/fs/cgroup); hybrid ones
    (like this container) have the v2 'unified' mount plus the named v1
    'systemd' hierarchy, and nspawn moves itself in both.
    """
    found: list[Path] = []
    with open("/proc/self/mounts") as table:
        for line in table:
            _dev, point, kind, opts = line.split()[:4]
            named_systemd = kind == "cgroup" and "name=systemd" in opts.split(",")
            if (kind == "cgroup2" or named_systemd) and Path(point) not in found:
                found.append(Path(point))
    return found


def cgroup_dirs(top: Path) -> list[Path]:
    """All cgroup directories at or below top, children before parents."""
    if not top.is_dir():
        return []
    found = [Path(dirpath) for dirpath, _dirs, _files in os.walk(top)]
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def cgroup_pids(top: Path) -> set[int]:
    pids: set[int] = set()
    for directory in cgroup_dirs(top):
        try:
            pids.update(int(p) for p in (directory / "cgroup.procs").read_text().split())
        except OSError:
            continue  # removed under us
    return pids


def kill_cgroup(top: Path) -> None:
    """SIGKILL every process in the subtree (cgroup.kill where the kernel has it)."""
    kill_file = top / "cgroup.kill"
    if kill_file.exists():
        kill_file.write_text("1")
    # v1 hierarchies have no cgroup.kill, and cgroup.kill can race with forks.
    for pid in cgroup_pids(top):
        signal_pid(pid, signal.SIGKILL)


def remove_cgroup(top: Path, timeout: float = 10) -> None:
    """Kill what is left in the subtree, wait for it to empty, remove it bottom-up."""
    deadline = time.monotonic() + timeout
    while cgroup_pids(top):
        kill_cgroup(top)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{top} still has processes {sorted(cgroup_pids(top))}")
        time.sleep(0.05)
    for directory in cgroup_dirs(top):
        directory.rmdir()


# --- kernel limits ------------------------------------------------------------

INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")


def raise_limit(path: Path, minimum: int) -> None:
    """Raise a machine-wide kernel limit to at least `minimum`; never lower it.

    Every host's systemd, logind and dbus hold inotify instances of their own (about six of
    root's per host), and all hosts count against the machine's root: the default 128 stops
    the ~20th host on the machine with "Failed to allocate manager object: Too many open
    files", whoever started the other 19.
    """
    try:
        current = int(path.read_text())
        if current < minimum:
            path.write_text(str(minimum))
            log.info("raised %s from %d to %d for the hosts", path, current, minimum)
    except OSError as exc:
        log.warning("could not raise %s to %d: %s; many hosts may not boot", path, minimum, exc)


# --- processes --------------------------------------------------------------


def signal_pid(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def is_alive(pid: int) -> bool:
    """True while pid exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the parenthesised command name.
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def find_processes(match: Callable[[list[str]], bool]) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and match(cmdline(int(entry.name))):
            pids.append(int(entry.name))
    return pids


def reap(pid: int) -> None:
    """Collect pid's exit status if it is our child; others are init's to reap."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def wait_gone(pids: Iterable[int], timeout: float) -> set[int]:
    """Wait until none of pids is alive; return the ones still alive at the deadline."""
    pending = set(pids)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for pid in pending:
            reap(pid)
        pending = {pid for pid in pending if is_alive(pid)}
        if pending:
            time.sleep(0.05)
    return {pid for pid in pending if is_alive(pid)}


def wait_reaped(pids: Iterable[int], timeout: float) -> None:
    """Wait for dead processes to leave the process table, so that a `ps` right
    after teardown shows nothing (orphans are reaped by init, a bit later)."""
    deadline = time.monotonic() + timeout
    pending = set(pids)
    while pending and time.monotonic() < deadline:
        for pid in pending:
            reap(pid)
        pending = {pid for pid in pending if Path(f"/proc/{pid}").exists()}
        if pending:
            time.sleep(0.02)


def pss_bytes(pids: Iterable[int]) -> int:
    """Proportional set size of the processes: shared pages are split fairly."""
    total = 0
    for pid in pids:
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in rollup.splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1]) * 1024
    return total
