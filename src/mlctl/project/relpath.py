"""Paths as init writes and shows them: POSIX, relative, "." for the same directory."""

from __future__ import annotations

import os
from pathlib import Path


def posix(p: Path) -> str:
    s = p.as_posix()
    return "." if s in ("", ".") else s


def rel(path: Path, start: Path) -> str:
    """`path` relative to `start` (with .. when it is not below it)."""
    return posix(Path(os.path.relpath(path, start)))


def shown(p: Path) -> str:
    """`p` as the user typing in this directory would name it."""
    try:
        return str(p.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)
