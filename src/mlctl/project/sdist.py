"""Wheels built on the control machine for packages that ship only a source distribution.

The wheel must fit the host: built by an interpreter of the host's Python version (found on PATH,
under pyenv, or by uv), and either pure (`none-any`) or for the host's machine on a glibc that is
not newer than the host's.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from mlctl.core.errors import PreflightFailed


def find_interpreter(version: str) -> str | None:
    """An interpreter of Python `version` (X.Y) on this machine, or None."""
    for candidate in _candidates(version):
        if _reports(candidate, version):
            return candidate
    return None


def _candidates(version: str):
    on_path = shutil.which(f"python{version}")
    if on_path:
        yield on_path  # may be a pyenv shim that refuses to run: _reports checks
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if pyenv.is_dir():
        for d in sorted(pyenv.glob(f"{version}*"), reverse=True):
            if re.fullmatch(rf"{re.escape(version)}(\.\d+)?", d.name):
                yield str(d / "bin" / f"python{version}")
    uv = shutil.which("uv") or _bundled_uv()
    if uv:
        p = subprocess.run([uv, "python", "find", version], capture_output=True, text=True)
        if p.returncode == 0 and p.stdout.strip():
            yield p.stdout.strip()


def _bundled_uv() -> str | None:
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        return None


def _reports(python: str, version: str) -> bool:
    return ".".join(version_of(python).split(".")[:2]) == version


def version_of(python: str) -> str:
    """The full version of an interpreter (e.g. 3.12.4), "" when it does not run."""
    try:
        p = subprocess.run(
            [python, "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return p.stdout.strip() if p.returncode == 0 else ""


def local_glibc() -> str:
    try:
        name, _, version = os.confstr("CS_GNU_LIBC_VERSION").partition(" ")
        return version if name == "glibc" else ""
    except (ValueError, OSError, AttributeError):
        return ""


def fits(wheel: str, machine: str, libc: str) -> bool:
    """Whether a wheel built here runs on the host: pure, or this machine's platform and a glibc
    no newer than the host's (a platform wheel links against the glibc it was built on)."""
    plat = wheel[: -len(".whl")].split("-")[-1]
    if plat == "any":
        return True
    ours = local_glibc()
    same_family = sys.platform == "linux" and bool(ours) and bool(libc)
    return (
        same_family
        and platform.machine() == machine
        and plat in (f"linux_{machine}",)
        and _version(ours) <= _version(libc)
    )


def _version(v: str) -> tuple:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:2])


def build_wheel(
    spec: str, requirements: Path, dest: Path, python: str, machine: str, libc: str
) -> Path:
    """Build `spec` (e.g. `pkg==1.0`, from pip's "No matching distribution" line), as the
    `requirements` file asks for it (the set's index options and, when the set is hashed, its
    line with the lock's hashes: pip checks the source against them), into `dest`.
    PreflightFailed naming the package and what to do when it cannot be done here."""
    where = f"Python {python} on {machine} (glibc {libc or '?'})"
    interpreter = find_interpreter(python)
    if interpreter is None:
        raise PreflightFailed(
            f"{spec} has no wheel for {where}, and no python{python} on this machine builds one",
            f"install Python {python} here (e.g. `uv python install {python}` or pyenv), "
            "or set build.install: remote (the hosts build it: compiler and registry needed)",
        )
    with tempfile.TemporaryDirectory(prefix="mlctl-sdist-") as out:
        failed = _pip_wheel(interpreter, requirements, Path(out))
        if failed:
            raise PreflightFailed(
                f"{spec} has no wheel for {where}; building it with {interpreter} failed: "
                f"{failed[:160]}",
                "install what its build needs here, or set build.install: remote",
            )
        wheels = sorted(Path(out).glob("*.whl"))
        if not wheels or not fits(wheels[0].name, machine, libc):
            name = wheels[0].name if wheels else "no wheel"
            raise PreflightFailed(
                f"{spec} has no wheel for {where}; the one built here ({name}) does not fit it",
                "deploy from a machine of the hosts' platform, or set build.install: remote",
            )
        target = dest / wheels[0].name
        shutil.move(str(wheels[0]), target)
    return target


def _pip_wheel(interpreter: str, requirements: Path, out: Path) -> str:
    """Build the wheels of `requirements` (without their dependencies) into `out` with that
    interpreter's pip; pip's last line of error when it fails, "" when it builds."""
    argv = [interpreter, "-m", "pip", "wheel", "--disable-pip-version-check", "-q"]
    if not _has_pip(interpreter):  # this pip, run for that interpreter
        argv = [sys.executable, "-m", "pip", "--python", interpreter, *argv[3:]]
    p = subprocess.run(
        [*argv, "--no-deps", "--wheel-dir", str(out), "-r", str(requirements)],
        capture_output=True,
        text=True,
    )
    if p.returncode == 0:
        return ""
    return (p.stderr.strip().splitlines() or ["pip wheel failed"])[-1]


def _has_pip(python: str) -> bool:
    p = subprocess.run([python, "-m", "pip", "--version"], capture_output=True, text=True)
    return p.returncode == 0


def wheel_hash(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
