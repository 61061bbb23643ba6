"""A farm of real Debian hosts booted from the machine's own root filesystem, or
from a Debian 13 tree (image.py).

Each host is systemd booted by systemd-nspawn on an overlay of the image (writes go
to a per-host tmpfs), inside its own network namespace attached to a private bridge.
Hosts run sshd, nginx and PostgreSQL like a small deploy target and reach
nothing but each other and the bridge address.

    with Farm(3) as farm:
        farm.ssh("h1", "systemctl is-active nginx")
        inventory = farm.inventory_path

Every resource is named after the farm's prefix (netns/veth "<prefix>-h1",
bridge "<prefix>-br", cgroup "<prefix>-farm", nspawn machine "<prefix>-h1") or
lives under its workdir, so cleanup_leftovers() can find and remove whatever a
crashed run left behind without any record of it.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import client
from . import image as images
from . import network, rootfs
from .system import (
    INOTIFY_INSTANCES,
    CommandError,
    attempt,
    cgroup_hierarchies,
    cgroup_pids,
    cmdline,
    find_processes,
    fs_type,
    mounts_under,
    pss_bytes,
    raise_limit,
    remove_cgroup,
    signal_pid,
    unmount,
    wait_gone,
    wait_reaped,
)

log = logging.getLogger("tests.hosts")

DEFAULT_WORKDIR = Path("/tmp/mlctl-farm")
DEFAULT_PREFIX = "mlctl"
DEFAULT_NETWORK = "198.51.100.0/24"
FIRST_HOST_OFFSET = 10  # h1 is .11, h2 .12, ...; .1 is the bridge
NSPAWN_RUNTIME = Path("/run/systemd/nspawn")
STOP_TIMEOUT = 15
INOTIFY_INSTANCES_NEEDED = 4096  # ~6 a host: room for several people's farms at once

# Ready means: sshd took our key (we are running this), boot finished, and
# PostgreSQL accepts connections on localhost.
READY_SCRIPT = (
    "state=$(systemctl is-system-running --wait); "
    'case "$state" in running|degraded) ;; *) echo "system state: $state"; exit 3 ;; esac; '
    'pg_isready -q -h localhost -t 30 || { echo "postgresql is not accepting connections"; '
    "exit 4; }; "
    'echo "$state"; [ "$state" = running ] || systemctl --failed --no-legend --plain'
)


class FarmError(RuntimeError):
    pass


@dataclass(frozen=True)
class Host:
    name: str  # also the hostname inside the host: h1, h2, ...
    address: str
    prefix: str

    @property
    def netns(self) -> str:
        """Network namespace, machine-side veth end and nspawn machine name."""
        return network.link_name(self.prefix, self.name)

    def __str__(self) -> str:
        return self.name


def can_boot(image_name: str = images.DEFAULT_IMAGE) -> tuple[bool, str]:
    """Whether this machine can run a farm; the reason is one line when it cannot."""
    if os.geteuid() != 0:
        return False, "test hosts need root (network namespaces, mounts, cgroups)"
    tools = ["systemd-nspawn", "ip", "ssh", "ssh-keygen"]
    try:
        built = images.get(image_name)
        if built.suite is not None and not images.is_complete(images.cached_path(built)):
            tools.append("mmdebstrap")  # the image must be built first
    except images.ImageError as exc:
        return False, str(exc)
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if built.suite is None:  # the hosts run what this machine has installed
        missing += [
            path
            for path in ("/usr/sbin/sshd", "/usr/sbin/nginx", "/usr/bin/pg_isready")
            if not os.access(path, os.X_OK)
        ]
    if missing:
        return False, "missing " + ", ".join(missing) + " (see tests/hosts/README.md)"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return False, "kernel has no overlayfs (modprobe overlay)"
    if not cgroup_hierarchies():
        return False, "no cgroup2 or name=systemd cgroup hierarchy mounted"
    return True, "ok"


# MLCTL_FARM_SLOT=N moves every farm of a run (the suite's, the battery's, init's, the bench's)
# into a space of its own: prefix "<prefix>N", the same host octets in 198.18.N.0/24 (for
# 198.51.100.0/24) or 198.19.N.0/24 (for 203.0.113.0/24), workdir "<workdir>-slotN". Several runs
# can then share one machine without touching each other's hosts.
SLOT_NETWORKS = {"198.51.100.": "198.18.", "203.0.113.": "198.19."}


def farm_slot() -> str:
    return os.environ.get("MLCTL_FARM_SLOT", "").strip()


def placed(prefix: str, network: str, workdir: str | os.PathLike) -> tuple[str, str, Path]:
    """A farm's prefix, network and workdir, moved into MLCTL_FARM_SLOT when it is set."""
    slot = farm_slot()
    if not slot:
        return prefix, network, Path(workdir)
    if not slot.isdigit() or not 1 <= int(slot) <= 99:
        raise FarmError(f"MLCTL_FARM_SLOT must be a number from 1 to 99, not {slot!r}")
    for old, new in SLOT_NETWORKS.items():
        if network.startswith(old):
            network = f"{new}{slot}.{network[len(old):]}"
            break
    return f"{prefix}{slot}", network, Path(f"{workdir}-slot{slot}")


def default_workdir() -> Path:
    explicit = os.environ.get("MLCTL_FARM_DIR")
    return Path(explicit or placed(DEFAULT_PREFIX, DEFAULT_NETWORK, DEFAULT_WORKDIR)[2]).absolute()


def default_image() -> str:
    """$MLCTL_FARM_IMAGE (debian13: every farm of the run boots Debian 13), else the machine's."""
    return os.environ.get("MLCTL_FARM_IMAGE", "").strip() or images.DEFAULT_IMAGE


def default_prefix() -> str:
    return os.environ.get("MLCTL_FARM_PREFIX") or placed(DEFAULT_PREFIX, DEFAULT_NETWORK, "")[0]


def default_network() -> str:
    return os.environ.get("MLCTL_FARM_NETWORK") or placed(DEFAULT_PREFIX, DEFAULT_NETWORK, "")[1]


class Farm:
    """N hosts h1..hN; h1 is the 'test' environment, the others 'live'.

    Farm.ssh() runs commands as root (root's authorized_keys holds the farm
    key); pass user="deploy" to run as the deploy user, who has passwordless
    sudo. Default workdir, prefix, network and image come from MLCTL_FARM_DIR,
    MLCTL_FARM_PREFIX, MLCTL_FARM_NETWORK and MLCTL_FARM_IMAGE.
    """

    def __init__(
        self,
        n: int = 3,
        workdir: str | os.PathLike | None = None,
        *,
        prefix: str | None = None,
        network: str | None = None,
        boot_timeout: float = 60,
        image: str | None = None,
    ):
        self.image = images.get(image or default_image())
        self.workdir = Path(workdir).absolute() if workdir else default_workdir()
        self.prefix = prefix or default_prefix()
        self.network = ipaddress.IPv4Network(network or default_network())
        self.boot_timeout = boot_timeout
        self.hosts = self._plan_hosts(n)
        self._procs: dict[str, subprocess.Popen] = {}

    def _plan_hosts(self, n: int) -> list[Host]:
        usable = self.network.num_addresses - FIRST_HOST_OFFSET - 2
        if not 1 <= n <= min(usable, 99):
            raise ValueError(f"cannot fit {n} hosts into {self.network}")
        for name in (network.bridge_name(self.prefix), network.link_name(self.prefix, f"h{n}")):
            network.check_name(name)
        return [
            Host(f"h{i}", str(self.network[FIRST_HOST_OFFSET + i]), self.prefix)
            for i in range(1, n + 1)
        ]

    @classmethod
    def attach(cls, workdir: str | os.PathLike | None = None) -> Farm:
        """The farm a previous `up` (maybe in another process) left running."""
        workdir = Path(workdir).absolute() if workdir else default_workdir()
        state = read_state(workdir)
        if not state:
            raise FarmError(f"no farm state in {workdir}; run `python -m tests.hosts up`")
        return cls(
            len(state["hosts"]),
            workdir,
            prefix=state["prefix"],
            network=state["network"],
            image=state.get("image", images.DEFAULT_IMAGE),
        )

    # --- paths ------------------------------------------------------------

    @property
    def identity_file(self) -> Path:
        return self.workdir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.workdir / "known_hosts"

    @property
    def ssh_config(self) -> Path:
        return self.workdir / "ssh_config"

    @property
    def inventory_path(self) -> Path:
        return self.workdir / "environments.yaml"

    @property
    def state_path(self) -> Path:
        return self.workdir / "state.json"

    @property
    def bridge_address(self) -> str:
        return str(self.network[1])

    def _layout(self, host: Host) -> rootfs.Layout:
        return rootfs.Layout(self.workdir / "hosts" / host.name)

    def _cgroups(self, host: Host) -> list[Path]:
        return [top / host.name for top in cgroup_tops(self.prefix)]

    def _console_log(self, host: Host) -> Path:
        return self.workdir / "logs" / f"{host.name}.console.log"

    # --- lifecycle ----------------------------------------------------------

    def __enter__(self) -> Farm:
        return self.up()

    def __exit__(self, *exc_info: object) -> None:
        self.down()

    def up(self) -> Farm:
        """Clean leftovers, boot all hosts in parallel, wait until each is ready.

        An image that is not cached yet is built first; the boot timeout starts after that.
        """
        ok, reason = can_boot(self.image.name)
        if not ok:
            raise FarmError(reason)
        try:
            lower = self.image.ensure()
        except (images.ImageError, CommandError) as exc:
            raise FarmError(f"image {self.image.name}: {exc}") from exc
        raise_limit(INOTIFY_INSTANCES, INOTIFY_INSTANCES_NEEDED)
        started = time.monotonic()
        cleanup_leftovers(self.prefix, self.workdir, wait_for_reaping=False)
        try:
            self._create(lower)
            self._wait_ready(started + self.boot_timeout)
            self._save_state("up")
        except BaseException:
            log.error("farm did not come up; tearing down what was created")
            self.down()
            raise
        log.info("%d host(s) ready in %.1fs", len(self.hosts), time.monotonic() - started)
        return self

    def down(self) -> None:
        """Stop every host and remove every trace; safe to call any number of times."""
        pids = [proc.pid for proc in self._procs.values()]
        cleanup_leftovers(self.prefix, self.workdir, pids=pids)
        for proc in self._procs.values():
            attempt(f"reap nspawn {proc.pid}", proc.wait, 5)
        self._procs.clear()

    def _create(self, lower: Path) -> None:
        for directory in (self.workdir, self.workdir / "hosts", self.workdir / "logs"):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Recorded before anything exists, so even a run killed right now
        # leaves enough for `down` from another process.
        self._save_state("creating")
        bridge = network.bridge_name(self.prefix)
        network.create_bridge(
            bridge, ipaddress.IPv4Interface(f"{self.bridge_address}/{self.network.prefixlen}")
        )
        public_key = client.create_client_key(self.identity_file)
        host_keys = {
            host.address: self._create_host(host, bridge, public_key, lower) for host in self.hosts
        }
        self._write_client_files(host_keys)
        for host in self.hosts:
            self._start(host)
        self._save_state("booting")

    def _create_host(self, host: Host, bridge: str, client_public_key: str, lower: Path) -> str:
        interface = ipaddress.IPv4Interface(f"{host.address}/{self.network.prefixlen}")
        network.create_host_link(host.netns, bridge, interface)
        layout = self._layout(host)
        rootfs.mount(layout, lower)
        identity = rootfs.Identity(
            name=host.name,
            farm_hosts={h.name: h.address for h in self.hosts},
            client_public_key=client_public_key,
        )
        return rootfs.seed(layout.root, identity)

    def _write_client_files(self, host_keys: dict[str, str]) -> None:
        addresses = {host.name: host.address for host in self.hosts}
        client.write_private(self.known_hosts, client.known_hosts_text(host_keys), 0o644)
        client.write_private(
            self.ssh_config,
            client.ssh_config_text(addresses, self.identity_file, self.known_hosts),
            0o644,
        )
        data = client.inventory(list(addresses.values()), self.identity_file, self.known_hosts)
        client.write_private(self.inventory_path, client.inventory_text(data), 0o644)

    def _start(self, host: Host) -> None:
        root = self._layout(host).root
        rootfs.assert_bootable(root)
        cgroups = self._cgroups(host)
        for cgroup in cgroups:
            cgroup.mkdir(parents=True, exist_ok=True)
        # nspawn needs a cgroup of its own to delegate to the host's systemd;
        # the shell joins them and then becomes nspawn, so nothing escapes.
        joins = [f"echo $$ > {shlex.quote(str(c / 'cgroup.procs'))}" for c in cgroups]
        script = " && ".join([*joins, 'exec "$@"'])
        with open(self._console_log(host), "wb") as console:
            self._procs[host.name] = subprocess.Popen(
                ["sh", "-c", script, "sh", *self._nspawn_argv(host, root)],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                # Own session: a Ctrl-C meant for the test run must not reach
                # the hosts before teardown stops them in order.
                start_new_session=True,
            )

    def _nspawn_argv(self, host: Host, root: Path) -> list[str]:
        return [
            "systemd-nspawn",
            "--boot",
            "--register=no",  # no machined on this machine
            "--keep-unit",  # ... and no systemd to create a scope with
            "--settings=no",
            f"--machine={host.netns}",
            f"--hostname={host.name}",
            f"--directory={root}",
            f"--network-namespace-path={network.NETNS_DIR / host.netns}",
            "--link-journal=no",
            "--resolv-conf=off",
            "--timezone=off",
            # The machine's /tmp is in the lower layer; the host's boot-time
            # tmpfiles cleanup would otherwise walk (and whiteout) all of it.
            "--tmpfs=/tmp",
            "--console=read-only",
        ]

    # --- readiness ----------------------------------------------------------

    def _wait_ready(self, deadline: float) -> None:
        with ThreadPoolExecutor(max_workers=len(self.hosts)) as pool:
            futures = {h.name: pool.submit(self._wait_host, h, deadline) for h in self.hosts}
        errors = []
        for name, future in futures.items():
            if future.exception() is not None:
                errors.append(f"{name}: {future.exception()}")
        if errors:
            raise FarmError("hosts not ready: " + "; ".join(errors))

    def _wait_host(self, host: Host, deadline: float) -> None:
        last = "no attempt yet"
        while time.monotonic() < deadline:
            proc = self._procs[host.name]
            if proc.poll() is not None:
                raise FarmError(f"systemd-nspawn exited {proc.returncode}: {self._tail(host)}")
            try:
                result = self.ssh(host, READY_SCRIPT, timeout=max(1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                break
            if result.returncode == 0:
                if result.stdout.split()[:1] != ["running"]:
                    log.warning("%s booted degraded:\n%s", host.name, result.stdout.strip())
                return
            last = (result.stdout + result.stderr).strip()
            if result.returncode != 255:  # 255: ssh itself failed, sshd not up yet
                raise FarmError(last)
            time.sleep(0.05)
        raise FarmError(f"not ready after {self.boot_timeout}s (last: {last}); {self._tail(host)}")

    def _tail(self, host: Host, lines: int = 15) -> str:
        try:
            text = self._console_log(host).read_text(errors="replace")
        except OSError:
            return "no console log"
        return "console: " + " | ".join(text.strip().splitlines()[-lines:])

    # --- use ----------------------------------------------------------------

    def host(self, which: Host | str) -> Host:
        """Look a host up by Host, name (h1) or address."""
        for host in self.hosts:
            if which in (host, host.name, host.address):
                return host
        raise KeyError(f"no host {which!r} in this farm")

    def ssh_argv(self, which: Host | str, command: str | None = None, user: str = "root"):
        argv = ["ssh", "-F", str(self.ssh_config), "-l", user, self.host(which).name]
        return argv + ([command] if command is not None else [])

    def ssh(
        self,
        which: Host | str,
        command: str,
        *,
        user: str = "root",
        timeout: float = 60,
        check: bool = False,
    ) -> subprocess.CompletedProcess:
        """Run a shell command on a host over ssh, pinned host key, as root by default."""
        return subprocess.run(
            self.ssh_argv(which, command, user),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
            stdin=subprocess.DEVNULL,
        )

    def status(self) -> list[dict]:
        """Per host: address, nspawn pid, process count and memory use.

        Memory is the processes' PSS plus what the host keeps in tmpfs: its
        overlay upper layer and the /run, /tmp and /dev/shm nspawn mounts.
        """
        state = {h["name"]: h for h in (read_state(self.workdir) or {}).get("hosts", [])}
        rows = []
        for host in self.hosts:
            pids = set().union(*(cgroup_pids(c) for c in self._cgroups(host)))
            init = self._init_pid(host)
            inner = (
                [Path(f"/proc/{init}/root", d) for d in ("run", "tmp", "dev/shm")] if init else []
            )
            rows.append(
                {
                    "name": host.name,
                    "address": host.address,
                    "pid": state.get(host.name, {}).get("pid"),
                    "processes": len(pids),
                    "pss_bytes": pss_bytes(pids),
                    "tmpfs_bytes": _used_bytes(self._layout(host).base)
                    + sum(_used_bytes(path, check_tmpfs=False) for path in inner),
                }
            )
        return rows

    def _init_pid(self, host: Host) -> int | None:
        """Host-side pid of the host's PID 1: systemd keeps itself alone in init.scope."""
        for cgroup in self._cgroups(host):
            pids = cgroup_pids(cgroup / "payload" / "init.scope")
            if pids:
                return min(pids)
        return None

    # --- state ----------------------------------------------------------------

    def _save_state(self, status: str) -> None:
        hosts = []
        for host in self.hosts:
            proc = self._procs.get(host.name)
            hosts.append(
                {
                    "name": host.name,
                    "address": host.address,
                    "netns": host.netns,
                    "mount": str(self._layout(host).root),
                    "pid": proc.pid if proc else None,
                    "console_log": str(self._console_log(host)),
                }
            )
        state = {
            "status": status,
            "prefix": self.prefix,
            "image": self.image.name,
            "network": str(self.network),
            "bridge": network.bridge_name(self.prefix),
            "cgroups": [str(top) for top in cgroup_tops(self.prefix)],
            "hosts": hosts,
        }
        client.write_private(self.state_path, json.dumps(state, indent=2) + "\n", 0o644)


def read_state(workdir: Path) -> dict | None:
    try:
        return json.loads((Path(workdir) / "state.json").read_text())
    except (OSError, ValueError):
        return None


def cgroup_tops(prefix: str) -> list[Path]:
    return [hierarchy / f"{prefix}-farm" for hierarchy in cgroup_hierarchies()]


def _used_bytes(path: Path, check_tmpfs: bool = True) -> int:
    try:
        if check_tmpfs and fs_type(path) != "tmpfs":
            return 0
        stats = os.statvfs(path)
    except OSError:
        return 0  # host went away meanwhile
    return (stats.f_blocks - stats.f_bfree) * stats.f_frsize


# --- teardown -----------------------------------------------------------------


def cleanup_leftovers(
    prefix: str | None = None,
    workdir: str | os.PathLike | None = None,
    pids: list[int] | tuple[int, ...] = (),
    wait_for_reaping: bool = True,
) -> list[str]:
    """Remove everything a farm with this prefix/workdir may have left behind.

    Works from what exists, not from what was recorded: nspawn processes are
    found by machine name and by cgroup, namespaces and links by name, mounts by
    location. Each step is attempted on its own and failures are logged, so one
    stuck resource never keeps the others alive. Returns what it found.

    wait_for_reaping: also wait (up to 3 s) until init has reaped stopped nspawns
    whose parent is gone, so nothing shows in `ps` afterwards. `up` skips that.
    """
    prefix = prefix or default_prefix()
    workdir = Path(workdir).absolute() if workdir else default_workdir()
    found = []
    nspawn = _nspawn_pids(prefix, workdir, pids)
    if nspawn:
        found.append(f"nspawn pids {sorted(nspawn)}")
        attempt("stop hosts", _stop_nspawn, nspawn, wait_for_reaping)
    for top in cgroup_tops(prefix):
        if top.exists():
            found.append(str(top))
            attempt(f"remove cgroup {top}", remove_cgroup, top)
    locks = _nspawn_locks(workdir / "hosts")
    for point in mounts_under(workdir / "hosts"):
        found.append(point)
        attempt(f"unmount {point}", unmount, point)
    attempt("remove nspawn runtime files", _remove_nspawn_files, prefix, locks)
    attempt("remove host dirs", _remove_host_dirs, workdir / "hosts")
    bridge = network.bridge_name(prefix)
    links = [name for name in _safe(network.list_links, prefix) if name != bridge]
    for name in links:
        found.append(name)
        attempt(f"delete link {name}", network.delete_link, name)
    for name in _safe(network.list_netns, prefix):
        found.append(f"netns {name}")
        attempt(f"delete netns {name}", network.delete_netns, name)
    if Path(f"/sys/class/net/{bridge}").exists():
        found.append(bridge)
        attempt(f"delete bridge {bridge}", network.delete_link, bridge)
    attempt("remove state file", (workdir / "state.json").unlink, True)
    if found:
        log.info("cleaned up: %s", ", ".join(found))
    return found


def _safe(lister, prefix: str) -> list[str]:
    try:
        return lister(prefix)
    except Exception as exc:  # noqa: BLE001 - a failed listing must not stop teardown
        log.warning("cleanup: listing for %s failed: %s", prefix, exc)
        return []


def _nspawn_pids(prefix: str, workdir: Path, pids) -> set[int]:
    """nspawn processes of this farm: given, recorded in the state file, or found."""
    machine = re.compile(rf"--machine={re.escape(prefix)}-h\d+")
    found = set(pids)
    for host in (read_state(workdir) or {}).get("hosts", []):
        if host.get("pid"):
            found.add(host["pid"])
    found.update(find_processes(lambda argv: any(machine.fullmatch(arg) for arg in argv)))
    # Recorded pids may have been reused by now; only signal actual nspawns.
    return {pid for pid in found if _is_nspawn(pid, machine)}


def _is_nspawn(pid: int, machine: re.Pattern) -> bool:
    argv = cmdline(pid)
    return bool(argv) and any(machine.fullmatch(arg) for arg in argv)


def _stop_nspawn(pids: set[int], reaped: bool) -> None:
    # SIGTERM makes nspawn ask the host's systemd for a clean poweroff. A request
    # arriving before systemd installed its handlers is dropped (a namespace's
    # init ignores signals it does not handle), so repeat it until it sticks.
    pending = set(pids)
    deadline = time.monotonic() + STOP_TIMEOUT
    while pending and time.monotonic() < deadline:
        for pid in pending:
            signal_pid(pid, signal.SIGTERM)
        pending = wait_gone(pending, min(1.0, max(0.0, deadline - time.monotonic())))
    if pending:
        log.warning("nspawn %s ignored SIGTERM for %ss; killing", sorted(pending), STOP_TIMEOUT)
        for pid in pending:
            signal_pid(pid, signal.SIGKILL)
    if reaped:
        wait_reaped(pids, 3)


def _nspawn_locks(hosts_dir: Path) -> list[Path]:
    """Lock files nspawn keys on the booted directory's device and inode."""
    locks = []
    for point in mounts_under(hosts_dir):
        if fs_type(Path(point)) == "overlay":
            st = os.stat(point)
            locks.append(NSPAWN_RUNTIME / "locks" / f"inode-{st.st_dev}:{st.st_ino}")
    return locks


def _remove_nspawn_files(prefix: str, locks: list[Path]) -> None:
    # Normally removed by nspawn itself; a killed nspawn leaves them behind.
    for lock in locks:
        lock.unlink(missing_ok=True)
    propagate = NSPAWN_RUNTIME / "propagate"
    pattern = re.compile(rf"{re.escape(prefix)}-h\d+")
    for entry in propagate.iterdir() if propagate.is_dir() else []:
        if pattern.fullmatch(entry.name) and not mounts_under(entry):
            shutil.rmtree(entry)


def _remove_host_dirs(hosts_dir: Path) -> None:
    for base in hosts_dir.iterdir() if hosts_dir.is_dir() else []:
        # Only ever delete plain directories: a mount below base would be a
        # host's tmpfs or the overlay onto the machine's /.
        if mounts_under(base) or fs_type(base) is not None:
            log.warning("cleanup: %s is still mounted; leaving it", base)
            continue
        shutil.rmtree(base)
