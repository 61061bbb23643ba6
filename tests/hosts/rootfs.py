"""Per-host root filesystems: an image (the machine's own / by default) with a private
writable layer.

Layout of one host under <workdir>/hosts/<name> (a tmpfs of its own):
    upper/  overlay upper layer - everything the host ever writes
    work/   overlay work dir
    root/   the merged tree systemd-nspawn boots

The lower layer is the machine's own / or a Debian 13 tree (image.py); nothing
here assumes which: versions, unit paths and dotfiles are read from the tree.
The host is configured by writing through root/ before boot: overlayfs copies
the touched files up, so the image's files are never modified. Deleting a file
through root/ leaves a whiteout in upper/, which is how machine secrets (ssh host
keys, root's ssh dir) are hidden from the hosts.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from .system import fs_type, run

DEPLOY_UID = 1500

# Units that make no sense in a container, touch hardware, or only slow the
# boot down. Masked (linked to /dev/null) in the host's /etc.
MASKED_UNITS = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "console-getty.service",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
    "getty@tty1.service",
    "man-db.timer",
    "systemd-pstore.service",
    "systemd-timesyncd.service",
    "systemd-tmpfiles-clean.timer",
)

# Enabled in the base image but not wanted on a deploy target: MariaDB alone
# writes ~120 MiB of redo logs into the tmpfs at first start. Disabled rather
# than masked so a test can still `systemctl start` it.
DISABLED_UNITS = ("multi-user.target.wants/mariadb.service",)

# What the hosts must run; links are created if the base image lacks them. sshd runs as a
# service, not socket-activated, on both images: readiness means sshd answered.
ENABLED_UNITS = ("ssh.service", "nginx.service", "postgresql.service")
UNIT_DIRS = ("usr/lib/systemd/system", "lib/systemd/system")  # /usr-merged first

SSHD_CONFIG = """\
# Test host: key authentication only, one host key per host.
HostKey /etc/ssh/ssh_host_ed25519_key
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UseDNS no
"""

# The stock unit starts the cluster through pg_ctlcluster, which confirms the
# server is up with fixed 0.5 s sleeps: ~2.2 s on every boot, the longest step
# by far. postgres reports readiness to systemd itself (sd_notify), so run it
# directly, the way upstream's example unit does. Same cluster, config, unit
# name, log file and data directory; pg_ctlcluster/pg_lsclusters keep working.
POSTGRESQL_DROP_IN = """\
[Service]
Type=notify
User=postgres
Group=postgres
PIDFile=
ExecStart=
ExecStart=/usr/lib/postgresql/{version}/bin/postgres \\
    -c config_file=/etc/postgresql/{version}/{cluster}/postgresql.conf
ExecStop=
ExecReload=
ExecReload=/bin/kill -HUP $MAINPID
KillMode=mixed
KillSignal=SIGINT
TimeoutStopSec=30
StandardOutput=append:/var/log/postgresql/postgresql-{version}-{cluster}.log
StandardError=inherit
"""

JOURNALD_CONFIG = """\
[Journal]
Storage=volatile
RuntimeMaxUse=16M
"""


@dataclass(frozen=True)
class Layout:
    base: Path

    @property
    def upper(self) -> Path:
        return self.base / "upper"

    @property
    def work(self) -> Path:
        return self.base / "work"

    @property
    def root(self) -> Path:
        return self.base / "root"


@dataclass(frozen=True)
class Identity:
    """What makes one host distinct from the others."""

    name: str
    farm_hosts: dict[str, str]  # name -> address, for /etc/hosts
    client_public_key: str


def mount(layout: Layout, lower: Path = Path("/"), tmpfs_size: str = "1g") -> None:
    layout.base.mkdir(parents=True, exist_ok=True)
    run("mount", "-t", "tmpfs", "-o", f"size={tmpfs_size},mode=0755", "tmpfs", layout.base)
    for directory in (layout.upper, layout.work, layout.root):
        directory.mkdir()
    options = f"lowerdir={lower},upperdir={layout.upper},workdir={layout.work}"
    run("mount", "-t", "overlay", "overlay", "-o", options, layout.root)


def assert_bootable(root: Path) -> None:
    """Refuse to boot anything but our overlay: booting systemd on the machine's
    real root would run its boot-time cleanups (e.g. wiping /tmp) on the machine."""
    if root.resolve() == Path("/") or fs_type(root) != "overlay":
        raise RuntimeError(f"{root} is not a farm overlay mount; refusing to boot it")


def seed(root: Path, identity: Identity) -> str:
    """Configure the host through its merged tree; returns its ssh host public key."""
    _seed_identity(root, identity)
    _seed_units(root)
    _seed_root_home(root, identity.client_public_key)
    _seed_deploy_user(root, identity.client_public_key)
    _seed_postgresql(root)
    return _seed_sshd(root, identity.name)


# --- steps --------------------------------------------------------------------


def _seed_identity(root: Path, identity: Identity) -> None:
    write(root, "etc/hostname", identity.name + "\n")
    write(root, "etc/machine-id", uuid.uuid4().hex + "\n")
    lines = ["127.0.0.1\tlocalhost", "::1\t\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{address}\t{name}" for name, address in identity.farm_hosts.items()]
    write(root, "etc/hosts", "\n".join(lines) + "\n")
    # No nameserver: lookups fail at once instead of timing out against a DNS
    # server the host cannot reach.
    write(root, "etc/resolv.conf", "# test host: no DNS, names come from /etc/hosts\n")


def _seed_units(root: Path) -> None:
    system = "etc/systemd/system"
    for unit in MASKED_UNITS:
        link(root, f"{system}/{unit}", "/dev/null")
    for wants in DISABLED_UNITS:
        remove(root, f"{system}/{wants}")
    for unit in ENABLED_UNITS:
        wants = f"{system}/multi-user.target.wants/{unit}"
        if not (root / wants).is_symlink():
            link(root, wants, "/" + unit_file(root, unit))
    write(root, "etc/systemd/journald.conf.d/test-host.conf", JOURNALD_CONFIG)


def _seed_root_home(root: Path, public_key: str) -> None:
    # The machine's root dotfiles put pyenv and cargo on PATH (slow, and not what
    # a deploy target looks like); hosts get Debian's stock ones instead.
    _copy_skel(root, "root", 0, 0)
    remove_tree(root, "root/.ssh")
    _authorize(root, "root", public_key, 0, 0)


def _seed_deploy_user(root: Path, public_key: str) -> None:
    uid = gid = DEPLOY_UID
    append(root, "etc/passwd", f"deploy:x:{uid}:{gid}::/home/deploy:/bin/bash\n", "deploy:")
    append(root, "etc/group", f"deploy:x:{gid}:\n", "deploy:")
    append(root, "etc/shadow", "deploy:*:19000:0:99999:7:::\n", "deploy:")
    append(root, "etc/gshadow", "deploy:!::\n", "deploy:")
    write(root, "etc/sudoers.d/deploy", "deploy ALL=(ALL) NOPASSWD:ALL\n", mode=0o440)
    make_dir(root, "home/deploy", 0o755, uid, gid)
    _copy_skel(root, "home/deploy", uid, gid)
    _authorize(root, "home/deploy", public_key, uid, gid)


def _seed_postgresql(root: Path) -> None:
    for conf in sorted((root / "etc/postgresql").glob("*/*/postgresql.conf")):
        version, cluster = conf.parent.parent.name, conf.parent.name
        # A pid file captured from a cluster running on the machine would make
        # the host's postmaster refuse to start.
        remove(root, f"var/lib/postgresql/{version}/{cluster}/postmaster.pid")
        write(
            root,
            f"etc/systemd/system/postgresql@{version}-{cluster}.service.d/test-host.conf",
            POSTGRESQL_DROP_IN.format(version=version, cluster=cluster),
        )


def _seed_sshd(root: Path, name: str) -> str:
    # Hide the machine's host keys; each host gets a fresh ed25519 key so host
    # key pinning actually tells hosts apart.
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        remove(root, f"etc/ssh/{key.name}")
    key_path = safe_path(root, "etc/ssh/ssh_host_ed25519_key")
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{name}", "-f", key_path)
    write(root, "etc/ssh/sshd_config.d/test-host.conf", SSHD_CONFIG)
    return key_path.with_suffix(".pub").read_text().strip()


def unit_file(root: Path, unit: str) -> str:
    """Where the image ships a unit, relative to its root."""
    for directory in UNIT_DIRS:
        if (root / directory / unit).is_file():
            return f"{directory}/{unit}"
    raise RuntimeError(f"{root} has no {unit}")


def _copy_skel(root: Path, home: str, uid: int, gid: int) -> None:
    # The image's own skeleton (the merged tree shows the lower layer's).
    for dotfile in sorted((root / "etc/skel").iterdir()):
        write(root, f"{home}/{dotfile.name}", dotfile.read_text(), uid=uid, gid=gid)


def _authorize(root: Path, home: str, public_key: str, uid: int, gid: int) -> None:
    make_dir(root, f"{home}/.ssh", 0o700, uid, gid)
    write(root, f"{home}/.ssh/authorized_keys", public_key + "\n", 0o600, uid, gid)


# --- safe file operations inside the merged tree ----------------------------
#
# The merged tree's absolute symlinks point at the machine when followed from
# the machine side (e.g. /var/run -> /run). Every operation therefore refuses
# paths whose parent is reached through a symlink, and never follows the last
# component.


def safe_path(root: Path, relative: str) -> Path:
    path = root / relative
    expected = os.path.normpath(path.parent)
    if os.path.realpath(path.parent) != expected:
        raise RuntimeError(f"{path.parent} leaves the host tree through a symlink")
    return path


def write(
    root: Path, relative: str, text: str, mode: int = 0o644, uid: int = 0, gid: int = 0
) -> None:
    path = safe_path(root, relative)
    path.parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(path):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, mode)  # not subject to umask, unlike os.open's mode
    os.chown(path, uid, gid)


def append(root: Path, relative: str, line: str, unless_prefix: str) -> None:
    path = safe_path(root, relative)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW)
    with os.fdopen(fd, "r+") as handle:
        text = handle.read()
        if any(existing.startswith(unless_prefix) for existing in text.splitlines()):
            return
        handle.write(line if text.endswith("\n") or not text else "\n" + line)


def link(root: Path, relative: str, target: str) -> None:
    path = safe_path(root, relative)
    path.parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(path):
        path.unlink()
    path.symlink_to(target)


def remove(root: Path, relative: str) -> None:
    path = safe_path(root, relative)
    if os.path.lexists(path):
        path.unlink()


def remove_tree(root: Path, relative: str) -> None:
    path = safe_path(root, relative)
    if path.is_symlink():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def make_dir(root: Path, relative: str, mode: int, uid: int, gid: int) -> None:
    path = safe_path(root, relative)
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    os.chown(path, uid, gid)
