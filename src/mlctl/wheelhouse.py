"""Wheels for a host's Python and platform, resolved on the control machine and cached by hash.

Many servers cannot reach a package registry; they install from the uploaded wheelhouse with
`--no-index`. The cache lives under the user's state dir: one download per requirements hash.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tarfile
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


def build(req_hash: str, requirements: bytes, python: str, machine: str, libc: str) -> Path:
    """Download the wheels once into the cache; return the directory."""
    target = state_dir() / "wheelhouse" / req_hash
    if (target / ".complete").exists():
        return target
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    (target / "requirements.txt").write_bytes(requirements)
    argv = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        "-q",
        "--only-binary=:all:",
        "--dest",
        str(target),
        "-r",
        str(target / "requirements.txt"),
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
        shutil.rmtree(target, ignore_errors=True)
        tail = (p.stderr.strip().splitlines() or ["pip download failed"])[-1]
        raise PreflightFailed(
            f"cannot resolve requirements for Python {python}: {tail[:200]}",
            "check requirements.txt, or set build.install: remote",
        )
    (target / ".complete").touch()
    return target


def tarball(directory: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for f in sorted(directory.iterdir()):
            if f.suffix == ".whl" or f.name == "requirements.txt":
                tar.add(f, arcname=f.name)
    return buf.getvalue()
