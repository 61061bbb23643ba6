"""The Python version a project needs, and the check of a host's interpreter against it.

Read, first found wins: `project.requires_python` in the inventory, else the project's
`requires-python` (pyproject.toml), `.python-version` (pyenv, uv) or `runtime.txt`
(`python-3.12.4`). The last two name the version the project is developed on; mlctl takes it as
the oldest that works (`>=3.12`), since a newer minor version usually runs it too.
"""

from __future__ import annotations

import re
import tomllib

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from mlctl.core.errors import PreflightFailed

SETTING = "project.requires_python"


def from_project(read) -> tuple[str, str] | None:
    """(constraint, where it was found) from the project's files; `read(relpath)` returns the
    file's text or None."""
    text = read("pyproject.toml")
    if text:
        try:
            spec = tomllib.loads(text).get("project", {}).get("requires-python")
        except tomllib.TOMLDecodeError:
            spec = None
        if isinstance(spec, str) and spec.strip():
            return spec.strip(), "requires-python in pyproject.toml"
    for name, pattern in (
        (".python-version", r"(\d+)\.(\d+)"),
        ("runtime.txt", r"python-(\d+)\.(\d+)"),
    ):
        for line in (read(name) or "").splitlines():
            line = line.split("#", 1)[0].strip()
            m = re.match(pattern, line)
            if m:
                return f">={m[1]}.{m[2]}", name
            if line:
                break  # `system`, `pypy3.10`: not a CPython version to require
    return None


def needed(setting: str, read) -> tuple[str, str] | None:
    if setting:
        return setting, SETTING
    return from_project(read)


def valid(value: str) -> bool:
    try:
        SpecifierSet(value)
    except InvalidSpecifier:
        return False
    return True


def satisfied(version: str, constraint: str) -> bool:
    try:
        return SpecifierSet(constraint).contains(Version(version), prereleases=True)
    except (InvalidSpecifier, InvalidVersion):
        return True  # nothing to hold the host to: pip says more later


def oldest(constraint: str) -> str:
    """The oldest X.Y a constraint names (for the hint: `install python3.12+`)."""
    versions = re.findall(r"(?:>=|==|~=|>)\s*(\d+)\.(\d+)", constraint)
    return ".".join(max(versions, key=lambda v: (int(v[0]), int(v[1])))) if versions else ""


def check(host: str, version: str, need: tuple[str, str] | None) -> None:
    """PreflightFailed when the host's interpreter does not satisfy the project's constraint."""
    if not need or not version or satisfied(version, need[0]):
        return
    minor = oldest(need[0])
    install = f"install python{minor}+" if minor else "install a Python that fits"
    raise PreflightFailed(
        f"host {host} has Python {version}; the project needs {need[0]} ({need[1]})",
        f"{install} on it and set python: to it (e.g. python: /usr/bin/python{minor or '3'}), "
        f"or change {need[1]}",
    )
