"""Root filesystems the hosts boot from: the machine's own, or a cached Debian 13 tree.

    image = get("debian13")
    lower = image.ensure()     # builds it once (a minute or two), then reuses the cache

"machine" (the default) is the machine's own `/`, whatever it runs (Debian 12 here).
"debian13" is a trixie tree that `mmdebstrap` builds from the Debian mirror this machine's apt
sources name (read at run time), with the release renamed: every package source whose suite is
the machine's release (bookworm, bookworm-updates, bookworm-security) becomes the same source
for trixie. The tree is cached under /var/cache/mlctl-test-images (or $MLCTL_IMAGE_CACHE) in a
directory named after a hash of everything that decides its contents; it is built in a
temporary directory next to it and renamed into place only when complete, under a lock, so a
second build running at the same time waits and then reuses the first one's tree.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .system import mounts_under, run

log = logging.getLogger("tests.hosts")

DEFAULT_IMAGE = "machine"
CACHE_DIR = Path("/var/cache/mlctl-test-images")
MARKER = ".mlctl-image.json"  # written last, inside the tree, before the rename
BUILD_TIMEOUT = 1200
APT_SOURCES = Path("/etc/apt")

# What a host needs to be a deploy target, and what the farm and its tests use on a host
# (curl, ss, pg_isready, runuser, sqlite3, git...). The Debian 12 hosts get all of these from
# the machine's own root (scripts/install-host-packages.sh).
DEBIAN13_PACKAGES = (
    "ca-certificates",
    "certbot",  # tls: acme (the test's ACME server, pebble, runs on the machine itself)
    "curl",
    "dbus",
    "git",
    "iproute2",
    "less",
    "libpam-systemd",
    "nginx",
    "openssh-server",
    "openssl",
    "postgresql",
    "procps",
    "python3",
    "python3-venv",
    "redis-server",
    "sqlite3",
    "sudo",
    "systemd",
    "systemd-sysv",
    "tzdata",
    "xz-utils",
    "zstd",
)

# Documentation and translations are never read on a test host; leaving them out makes the
# tree a third smaller and the build faster.
DPKG_OPTIONS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/info/*",
)


class ImageError(RuntimeError):
    pass


@dataclass(frozen=True)
class Image:
    name: str
    suite: str | None = None  # None: the machine's own root, nothing to build
    packages: tuple[str, ...] = ()
    variant: str = "minbase"

    def options(self) -> list[str]:
        """mmdebstrap's options, except the target and the package sources."""
        argv = [
            "--mode=root",
            "--format=directory",
            f"--variant={self.variant}",
            "--include=" + ",".join(self.packages),
        ]
        return argv + [f"--dpkgopt={option}" for option in DPKG_OPTIONS]

    def key(self, sources: list[str]) -> str:
        """A hash of everything that decides the tree: suite, packages, options, sources."""
        spec = {"suite": self.suite, "options": self.options(), "sources": sources}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]

    def ensure(self, cache: Path | None = None) -> Path:
        """The tree to use as the hosts' lower layer, built first if it is not cached."""
        if self.suite is None:
            return Path("/")
        return build(self, cache or cache_dir())


IMAGES = {
    "machine": Image("machine"),
    "debian13": Image("debian13", "trixie", DEBIAN13_PACKAGES),
}


def get(name: str) -> Image:
    try:
        return IMAGES[name]
    except KeyError:
        raise ImageError(f"no image {name!r}; known: {', '.join(IMAGES)}") from None


def cache_dir() -> Path:
    return Path(os.environ.get("MLCTL_IMAGE_CACHE") or CACHE_DIR)


def cached_path(image: Image, cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / f"{image.name}-{image.key(package_sources(image.suite))}"


def is_complete(tree: Path) -> bool:
    return (tree / MARKER).is_file()


def build(image: Image, cache: Path) -> Path:
    sources = package_sources(image.suite)
    final = cache / f"{image.name}-{image.key(sources)}"
    if is_complete(final):
        return final
    cache.mkdir(mode=0o755, parents=True, exist_ok=True)
    with open(cache / f".{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent build of the same tree finishes first
        if is_complete(final):
            return final
        _remove_stale(cache, final)
        started = time.monotonic()
        log.info("building image %s into %s (takes a minute or two)", image.name, final)
        tree = Path(tempfile.mkdtemp(prefix=f".{final.name}.build-", dir=cache))
        try:
            _mmdebstrap(image, tree, sources, cache / f"{final.name}.build.log")
            _finish(tree, image, sources)
            os.rename(tree, final)
        except BaseException:
            _remove_build(tree)
            raise
        log.info("image %s built in %.0fs", image.name, time.monotonic() - started)
    return final


def _mmdebstrap(image: Image, tree: Path, sources: list[str], log_path: Path) -> None:
    argv = ["mmdebstrap", *image.options(), image.suite, tree, *sources]
    proc = run(*argv, check=False, timeout=BUILD_TIMEOUT)
    log_path.write_text(f"{' '.join(map(str, argv))}\n{proc.stdout}{proc.stderr}")
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ImageError(
            f"mmdebstrap exited {proc.returncode} (log: {log_path}): {' | '.join(last)}"
        )


def _finish(tree: Path, image: Image, sources: list[str]) -> None:
    # The farm gives every host a fresh host key and machine id; none is shared through the image.
    for key in (tree / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    clusters = sorted(p.parent.name for p in (tree / "etc/postgresql").glob("*/*/postgresql.conf"))
    if not clusters:
        raise ImageError(f"{tree}: postgresql-common created no cluster")
    record = {"image": image.name, "suite": image.suite, "sources": sources, "built": time.time()}
    (tree / MARKER).write_text(json.dumps(record, indent=2) + "\n")


def _remove_stale(cache: Path, final: Path) -> None:
    """What a killed build left (we hold the lock: none is in progress): its build
    directories, and a tree without the marker, which no build of ours renames into place."""
    for stale in [*cache.glob(f".{final.name}.build-*"), final]:
        if stale.exists():
            _remove_build(stale)


def _remove_build(tree: Path) -> None:
    # mmdebstrap mounts /proc, /sys and /dev into the tree while it builds; never delete
    # through a mount that a killed build left behind.
    if mounts_under(tree):
        log.warning("leaving %s: still has mounts %s", tree, mounts_under(tree))
        return
    shutil.rmtree(tree, ignore_errors=True)


# --- package sources ---------------------------------------------------------------------


def machine_release() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip().strip('"')
    raise ImageError("/etc/os-release names no VERSION_CODENAME")


def package_sources(
    suite: str | None, apt_dir: Path = APT_SOURCES, release: str | None = None
) -> list[str]:
    """One-line apt sources for `suite`: the machine's own Debian sources, release renamed."""
    if suite is None:
        return []
    release = release or machine_release()
    lines = []
    for entry in read_apt_sources(apt_dir):
        for uri in entry["uris"]:
            for own in entry["suites"]:
                if own != release and not own.startswith(release + "-"):
                    continue  # another vendor's repository, or another release
                options = f"[signed-by={entry['signed_by']}] " if entry["signed_by"] else ""
                renamed = suite + own[len(release) :]
                lines.append(f"deb {options}{uri} {renamed} {' '.join(entry['components'])}")
    if not lines:
        raise ImageError(f"no apt source in {apt_dir} names this machine's release {release!r}")
    return lines


def read_apt_sources(apt_dir: Path) -> list[dict]:
    """Binary ('deb') entries of sources.list.d/*.sources (deb822) and sources.list(.d/*.list)."""
    entries = []
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        entries += _deb822_entries(path.read_text())
    one_line = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]
    for path in one_line:
        if path.is_file():
            entries += _one_line_entries(path.read_text())
    return entries


def _deb822_entries(text: str) -> list[dict]:
    entries = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        last = None
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0].isspace() and last:
                fields[last] += "\n" + line.strip()  # continuation (e.g. an inline key)
                continue
            name, _, value = line.partition(":")
            last = name.strip().lower()
            fields[last] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        signed_by = fields.get("signed-by", "")
        entries.append(
            {
                "uris": fields.get("uris", "").split(),
                "suites": fields.get("suites", "").split(),
                "components": fields.get("components", "").split(),
                # An inline key block cannot go on a one-line source; apt's keyrings then decide.
                "signed_by": signed_by if signed_by.startswith("/") else "",
            }
        )
    return entries


def _one_line_entries(text: str) -> list[dict]:
    entries = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        options = re.search(r"\[([^\]]*)\]", line)
        words = re.sub(r"\[[^\]]*\]", " ", line).split()
        if len(words) < 4 or words[0] != "deb":
            continue
        signed_by = ""
        for option in (options.group(1).split() if options else []):
            if option.startswith("signed-by="):
                signed_by = option.split("=", 1)[1]
        entries.append(
            {
                "uris": [words[1]],
                "suites": [words[2]],
                "components": words[3:],
                "signed_by": signed_by,
            }
        )
    return entries
