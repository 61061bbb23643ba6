"""Wheels for a host's Python and platform, resolved on the control machine and cached by hash.

Many servers cannot reach a package registry; they install from the uploaded wheelhouse with
`--no-index`. The cache lives under the user's state dir: one download per requirements hash.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

from .errors import PreflightFailed
from .journal import state_dir


def platform_tags(machine: str, libc: str) -> list[str]:
    """manylinux tags a glibc host accepts, newest first (e.g. 2.36 → manylinux_2_36 … 2_17)."""
    if not libc:
        return []
    major, minor = (int(x) for x in libc.split(".")[:2])
    tags = [f"manylinux_{major}_{m}_{machine}" for m in range(minor, 16, -1)]
    return tags + [f"manylinux2014_{machine}", f"linux_{machine}"]


# Hosts build in parallel threads and usually share one wheelhouse: resolve it once.
_building = threading.Lock()


def build(req_hash: str, requirements: bytes, python: str, machine: str, libc: str) -> Path:
    """Download the wheels once into the cache; return the directory."""
    target = state_dir() / "wheelhouse" / req_hash
    with _building:
        if not (target / ".complete").exists():
            _clean_abandoned(target.parent)
            _download(target, requirements, python, machine, libc)
    return target


def _download(target: Path, requirements: bytes, python: str, machine: str, libc: str) -> None:
    """Resolve into a private temporary directory, then rename it into place (atomic)."""
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "requirements.txt").write_bytes(requirements)
    argv = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        "-q",
        "--only-binary=:all:",
        "--dest",
        str(tmp),
        "-r",
        str(tmp / "requirements.txt"),
        "--python-version",
        python,
        "--implementation",
        "cp",
        "--abi",
        "cp" + python.replace(".", ""),
    ]
    for tag in platform_tags(machine, libc):
        argv += ["--platform", tag]
    p = subprocess.run(argv, capture_output=True, text=True)
    if p.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tail = (p.stderr.strip().splitlines() or ["pip download failed"])[-1]
        raise PreflightFailed(
            f"cannot resolve requirements for Python {python}: {tail[:200]}",
            "check requirements.txt, or set build.install: remote",
        )
    (tmp / ".complete").touch()
    _move_into_place(tmp, target)


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
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@functools.lru_cache(maxsize=4)
def tarball(directory: Path) -> bytes:
    """The wheels as one tar, built once per wheelhouse however many hosts receive it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for f in sorted(directory.iterdir()):
            if f.suffix == ".whl" or f.name == "requirements.txt":
                tar.add(f, arcname=f.name)
    return buf.getvalue()
