"""The control machine's side: the git ref, its archive, its requirements, the pytest gate."""

from __future__ import annotations

import gzip
import posixpath
import shlex
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from mlctl.core.errors import PreflightFailed
from mlctl.project import installset


@dataclass
class Source:
    repo: str
    subdir: str
    commit: str
    ref: str
    branch: str
    subject: str
    _archive: bytes | None = field(default=None, repr=False, compare=False)
    _files: dict = field(default_factory=dict, repr=False, compare=False)
    _sets: dict = field(default_factory=dict, repr=False, compare=False)
    _sets_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def archive(self) -> bytes:
        """The project directory at the commit, as one gzipped tar (streamed to every host);
        made once."""
        if self._archive is None:
            tree = f"{self.commit}:{self.subdir}" if self.subdir else self.commit
            raw = git(self.repo, "archive", "--format=tar", tree, binary=True)
            self._archive = gzip.compress(raw, compresslevel=1)
        return self._archive

    def file(self, relpath: str) -> bytes:
        """One file at the commit (read once: every host thread asks for the requirements)."""
        if relpath not in self._files:
            path = posixpath.normpath(posixpath.join(self.subdir, relpath))
            if path.startswith("../") or path == "..":
                raise PreflightFailed(f"{relpath} is outside the repository {self.repo}")
            self._files[relpath] = git(self.repo, "show", f"{self.commit}:{path}", binary=True)
        return self._files[relpath]

    def text(self, relpath: str) -> str | None:
        """A text file at the commit, None when it is not there."""
        try:
            return self.file(relpath).decode(errors="replace")
        except PreflightFailed:
            return None

    def install_set(self, requirements: str) -> installset.InstallSet:
        """What the venv installs (project.requirements read from the commit), made once."""
        # Hosts build in parallel threads: one resolve for all of them (a uv export each would
        # also race in sysconfig, whose first use is not thread-safe: uv's EXE read as None).
        with self._sets_lock:
            if requirements not in self._sets:
                self._sets[requirements] = installset.resolve(self.file, requirements)
            return self._sets[requirements]


def git(repo: str, *args: str, binary: bool = False):
    try:
        p = subprocess.run(["git", "-C", repo, *args], capture_output=True, check=False)
    except FileNotFoundError:
        raise PreflightFailed("git is not installed on this machine") from None
    if p.returncode != 0:
        err = p.stderr.decode(errors="replace").strip().splitlines()
        raise PreflightFailed(f"git {args[0]} failed in {repo}: {err[-1] if err else p.returncode}")
    return p.stdout if binary else p.stdout.decode().strip()


def resolve(repo: str, subdir: str, ref: str) -> Source:
    if not Path(repo, ".git").exists() and not Path(repo).joinpath("HEAD").exists():
        raise PreflightFailed(f"{repo} is not a git repository", "set project.source.repo")
    if ref.startswith("-"):  # git would read it as an option
        raise PreflightFailed(f"ref {ref!r} is not a valid git ref", "pass a branch, tag or commit")
    try:  # the commit and its subject in one call
        line = git(repo, "log", "-1", "--format=%H %s", f"{ref}^{{commit}}", "--")
        commit, _, subject = line.partition(" ")
    except PreflightFailed:
        raise PreflightFailed(
            f"ref {ref!r} not found in {repo}", "fetch it or pass --ref"
        ) from None
    branch = git(repo, "rev-parse", "--abbrev-ref", "HEAD") if ref == "HEAD" else ref
    return Source(repo, subdir, commit, ref, branch, subject.strip())


def dirty_files(repo: str) -> list[str]:
    # Unstripped: the first line's status column may start with a space (" M path").
    out = git(repo, "status", "--porcelain", "--untracked-files=no", binary=True).decode()
    return [line[3:] for line in out.splitlines() if line.strip()]


def run_gate(src: Source, tests: str) -> None:
    """The pytest gate on the exact commit: the app's tests and `makemigrations --check`, with
    what they need prepared first (see gate.py)."""
    from mlctl.project import gate

    gate.run(src.archive(), _python_argv(tests), _path())


def _python_argv(command: str) -> list[str]:
    argv = shlex.split(command)
    return [sys.executable, *argv[1:]] if argv and argv[0] in ("python", "python3") else argv


def _path() -> str:
    import os

    return os.environ.get("PATH", "/usr/bin:/bin")
