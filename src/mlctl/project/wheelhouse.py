"""Wheels for a host's Python and platform, resolved on the control machine and cached by hash.

Many servers cannot reach a package registry; they install from the uploaded wheelhouse with
`--no-index`. The cache lives under the user's state dir: one download per requirements hash.
"""

from __future__ import annotations

import functools
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

from mlctl.core.errors import PreflightFailed
from mlctl.project import pipfail, sdist
from mlctl.project.installset import InstallSet
from mlctl.transport.journal import state_dir
from mlctl.transport.locking import process_alive


def platform_tags(machine: str, libc: str) -> list[str]:
    """manylinux tags a glibc host accepts, newest first (e.g. 2.36 → manylinux_2_36 … 2_17)."""
    if not libc:
        return []
    major, minor = (int(x) for x in libc.split(".")[:2])
    tags = [f"manylinux_{major}_{m}_{machine}" for m in range(minor, 16, -1)]
    return tags + [f"manylinux2014_{machine}", f"linux_{machine}"]


# Hosts build in parallel threads and usually share one wheelhouse: resolve it once.
_building = threading.Lock()
MAX_SOURCE_BUILDS = 20  # sdist-only packages built here for one wheelhouse
_NO_MATCH = re.compile(r"No matching distribution found for (\S+)")


def build(key: str, iset: InstallSet, python: str, machine: str, libc: str) -> Path:
    """Download the wheels once into the cache; return the directory."""
    target = state_dir() / "wheelhouse" / key
    with _building:
        if not (target / ".complete").exists():
            _clean_abandoned(target.parent)
            _download(target, iset, python, machine, libc)
    return target


def _download(target: Path, iset: InstallSet, python: str, machine: str, libc: str) -> None:
    """Resolve into a private temporary directory, then rename it into place (atomic). A package
    that ships only a source distribution is built here into a wheel, then resolving resumes."""
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    top = iset.write(tmp)
    built: set[str] = set()
    try:
        _resolve(iset, tmp, top, built, python, machine, libc, no_deps=iset.complete)
        if iset.extra:
            _resolve(iset, tmp, tmp / iset.extra, built, python, machine, libc)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    (tmp / ".complete").touch()
    _move_into_place(tmp, target)


def _resolve(
    iset: InstallSet, tmp: Path, requirements: Path, built: set, *host, no_deps: bool = False
) -> None:
    """Download the wheels of one file of the set into `tmp`, building the source-only ones."""
    python, machine, libc = host
    while True:
        argv = download_argv(tmp, requirements, *host) + (["--no-deps"] if no_deps else [])
        p = subprocess.run(argv, **_CAPTURE)
        if p.returncode == 0:
            return
        missing = _NO_MATCH.findall(p.stderr)
        if not missing or missing[-1] in built or len(built) >= MAX_SOURCE_BUILDS:
            why = pipfail.reason(p.stderr, f"for Python {python} on {machine} (glibc {libc})")
            raise PreflightFailed(
                f"cannot resolve {iset.origin} for Python {python}: {why}",
                "check the requirements, or set build.install: remote",
            )
        built.add(missing[-1])
        source_build(iset, tmp, missing[-1], *host)


_CAPTURE = {"capture_output": True, "text": True}


def source_build(iset: InstallSet, root: Path, spec: str, *host) -> None:
    """Build the wheel of `spec` here, with the set's index options; a hashed set gets the
    built wheel's hash next to the verified source's."""
    path, line = hashed_line(iset, root, spec)
    request = root / f".mlctl-build-{_name(spec)}.txt"
    request.write_text("".join(f"{o}\n" for o in index_options(iset, root)) + (line or spec) + "\n")
    wheel = sdist.build_wheel(spec, request, root, *host)
    request.unlink()
    if path:
        allow_hash(path, line, sdist.wheel_hash(wheel))


_INDEX_OPTIONS = ("-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--trusted-host")


def index_options(iset: InstallSet, root: Path) -> list[str]:
    return [
        line.strip()
        for rel in iset.files
        for line in (root / rel).read_text().splitlines()
        if line.strip().split("=")[0].split(" ")[0] in _INDEX_OPTIONS
    ]


def _name(spec: str) -> str:
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
    return re.sub(r"[-_.]+", "-", m.group(1).lower()) if m else ""


def hashed_line(iset: InstallSet, root: Path, spec: str) -> tuple[Path | None, str]:
    """The set file and its logical line that pins `spec` with --hash options, if any."""
    for rel in iset.files:
        text = (root / rel).read_text()
        for line in re.sub(r"\\\r?\n", " ", text).splitlines():
            if "--hash=" in line and _name(line) == _name(spec):
                return root / rel, line.strip()
    return None, ""


def allow_hash(path: Path, line: str, digest: str) -> None:
    """Accept the wheel built here from the verified source too: its hash joins the line's
    (in the uploaded copy of the set; pip on the host checks every file it installs)."""
    text = path.read_text()
    joined = re.sub(r"\\\r?\n", " ", text).splitlines()
    out = [f"{x.rstrip()} --hash={digest}" if x.strip() == line else x for x in joined]
    path.write_text("\n".join(out) + "\n")


def download_argv(dest: Path, top: Path, python: str, machine: str, libc: str) -> list[str]:
    """pip download of wheels for the host's Python and platform; wheels built here earlier
    (in `dest`) count as found."""
    argv = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        "-q",
        "--only-binary=:all:",
        "--dest",
        str(dest),
        "--find-links",
        str(dest),
        "-r",
        str(top),
        "--python-version",
        python,
        "--implementation",
        "cp",
        "--abi",
        "cp" + python.replace(".", ""),
    ]
    for tag in platform_tags(machine, libc):
        argv += ["--platform", tag]
    return argv


def _move_into_place(tmp: Path, target: Path) -> None:
    """Rename a complete wheelhouse into place. One that another run (another environment, the
    same requirements) completed meanwhile is kept, as that run may be uploading it: ours goes."""
    if (target / ".complete").exists():
        shutil.rmtree(tmp, ignore_errors=True)
        return
    shutil.rmtree(target, ignore_errors=True)  # an incomplete one left by an older version
    try:
        os.replace(tmp, target)
    except OSError:  # completed by another run between the check and the rename
        if not (target / ".complete").exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def _clean_abandoned(parent: Path) -> None:
    """Temporary directories of runs that died while resolving (their pid is gone)."""
    for tmp in parent.glob("*.tmp-*") if parent.is_dir() else []:
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


@functools.lru_cache(maxsize=4)
def tarball(directory: Path, names: tuple[str, ...]) -> bytes:
    """The wheels and the install set's files (`names`) as one tar, built once per wheelhouse
    however many hosts receive it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for f in sorted(directory.iterdir()):
            if f.suffix == ".whl":
                tar.add(f, arcname=f.name)
        for name in names:
            tar.add(directory / name, arcname=name)
    return buf.getvalue()
