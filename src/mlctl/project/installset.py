"""What a release's venv installs, read from the deployed commit, and the venv key over it.

`project.requirements` names one of:
  a pip requirements file  (requirements.txt, requirements/production.txt, pip-tools output): the
                           file and every file it includes with -r/-c, followed like pip does
  uv.lock                  exported with `uv export --frozen` into a hashed requirements set
  Pipfile.lock             its "default" packages, pinned with their hashes
poetry.lock and a bare pyproject.toml end in a line that says what to do.

The set is uploaded next to the wheels and pip installs from that copy, so a generated set and one
spread over included files install the same way. The venv key covers every byte of the set, the
host's Python and its platform: a change anywhere in the closure builds a new venv.

mlctl runs the app with gunicorn. A set that does not name it (a project served by uwsgi, say)
gets `build.server` (a pinned gunicorn) as a second file, installed after the set by a pip run of
its own: a hashed set (a lock export) stays valid, and the key covers that file too.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import re
import shlex
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mlctl.core.errors import PreflightFailed

TOP = "requirements.txt"  # the name a generated set is installed from
SERVER = "mlctl-server.txt"  # the second file: the gunicorn mlctl adds when the set has none
INCLUDE_OPTIONS = {"-r": "-r", "--requirement": "-r", "-c": "-c", "--constraint": "-c"}
_UV_EXPORT = ("export", "--frozen", "--no-dev", "--no-emit-project", "--no-header")


@dataclass(frozen=True)
class InstallSet:
    top: str  # the file pip is given (-r), relative to the set's root
    files: dict  # every file of the set: path relative to the project directory -> bytes
    origin: str  # what the set was made from, for messages
    extra: str = ""  # a second file pip installs after `top` (SERVER), or ""
    # A lock's export lists every package the project needs: pip takes it as it is (--no-deps).
    # Resolving it again fails in pip's hash mode on an extra of a dependency (github3-py needs
    # pyjwt[crypto]; the lock pins pyjwt and cryptography, which pip does not match up).
    complete: bool = False

    def key(self, python: str, platform: str) -> str:
        """The venv key: every file (name and content), the Python version and the platform."""
        digest = hashlib.sha256()
        for path in sorted(self.files):
            digest.update(path.encode() + b"\0" + self.files[path] + b"\0")
        digest.update(f"{self.top}\0{python}\0{platform}".encode())
        return digest.hexdigest()[:16]

    def write(self, directory: Path) -> Path:
        """The set's files under `directory`, at their relative paths; returns the top file."""
        for rel, data in self.files.items():
            (directory / rel).parent.mkdir(parents=True, exist_ok=True)
            (directory / rel).write_bytes(data)
        return directory / self.top

    def tarball(self) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for rel in sorted(self.files):
                info = tarfile.TarInfo(rel)
                info.size, info.mode = len(self.files[rel]), 0o644
                tar.addfile(info, io.BytesIO(self.files[rel]))
        return buf.getvalue()


def resolve(read, setting: str) -> InstallSet:
    """The install set `setting` names; `read(relpath)` returns a file of the commit (bytes)
    and raises PreflightFailed when it is not there."""
    name = posixpath.basename(setting)
    if name == "uv.lock":
        return uv_lock(read, setting)
    if name == "Pipfile.lock":
        return pipfile_lock(read, setting)
    if name == "poetry.lock":
        raise PreflightFailed(
            f"{setting}: mlctl cannot install a poetry.lock exactly",
            "export it with `poetry export -f requirements.txt -o requirements.txt` "
            "(poetry-plugin-export), commit it and set project.requirements: requirements.txt",
        )
    if name == "pyproject.toml":
        raise PreflightFailed(
            f"{setting} pins no versions: a deploy would resolve whatever is newest",
            "lock it (`uv lock`, commit uv.lock, set project.requirements: uv.lock) "
            "or commit a pinned requirements.txt",
        )
    files = closure(read, normalize(setting))
    extra = len(files) - 1
    origin = setting + (f" and {extra} included file(s)" if extra else "")
    return InstallSet(normalize(setting), files, origin)


def names(iset: InstallSet) -> set[str]:
    """The normalized names of the packages the set's files list (options and comments left)."""
    found = set()
    for data in iset.files.values():
        for line in re.sub(r"\\\r?\n", " ", data.decode(errors="replace")).splitlines():
            m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", re.sub(r"(^|\s)#.*$", "", line))
            if m:
                found.add(re.sub(r"[-_.]+", "-", m.group(1).lower()))
    return found


def with_server(iset: InstallSet, server: str) -> InstallSet:
    """The set, plus `server` (e.g. gunicorn==27.0.1) in a file of its own when it has no
    gunicorn: the servers run the app with it whatever the project runs elsewhere."""
    if not server or iset.extra or "gunicorn" in names(iset):
        return iset
    files = {**iset.files, SERVER: f"{server}\n".encode()}
    return InstallSet(iset.top, files, f"{iset.origin} + {server}", SERVER, iset.complete)


# ---------------------------------------------------------------- pip requirements files


def normalize(path: str, base: str = "") -> str:
    """A path of the set, relative to the project directory (never outside it)."""
    joined = posixpath.normpath(posixpath.join(base, path))
    if joined.startswith("../") or joined == ".." or posixpath.isabs(joined):
        raise PreflightFailed(
            f"requirements file {path} is outside the project directory",
            "keep every -r/-c file inside the deployed directory (project.source.subdir)",
        )
    return joined


def includes(text: str) -> list[tuple[str, str]]:
    """The (-r|-c, path) options of a requirements file, as pip reads them: continuation
    lines joined, comments dropped, `-r x`, `-rx`, `--requirement=x`."""
    found = []
    for line in re.sub(r"\\\r?\n", " ", text).splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        if not line.startswith("-"):
            continue
        try:
            words = shlex.split(line)
        except ValueError:
            words = line.split()
        for i, word in enumerate(words):
            opt, eq, value = word.partition("=")
            if opt in INCLUDE_OPTIONS:
                value = value if eq else (words[i + 1] if i + 1 < len(words) else "")
            elif word[:2] in ("-r", "-c") and len(word) > 2:
                opt, value = word[:2], word[2:]
            else:
                continue
            if value and "://" not in value:
                found.append((INCLUDE_OPTIONS[opt], value))
    return found


def closure(read, top: str) -> dict:
    """The file and every file it includes, transitively; relative paths are taken from the
    including file's directory, as pip does."""
    files: dict = {}
    pending = [(top, "")]
    while pending:
        rel, parent = pending.pop()
        if rel in files:
            continue
        try:
            data = read(rel)
        except PreflightFailed:
            where = f" (included by {parent})" if parent else ""
            raise PreflightFailed(
                f"requirements file {rel}{where} is not in the deployed commit",
                "commit it, or fix project.requirements / the -r line",
            ) from None
        files[rel] = data
        for _opt, path in includes(data.decode(errors="replace")):
            pending.append((normalize(path, posixpath.dirname(rel)), rel))
    return files


# ---------------------------------------------------------------- lock files


def uv_lock(read, setting: str) -> InstallSet:
    """`uv export --frozen` on the commit's pyproject.toml + uv.lock: the locked versions with
    their hashes, for the project's default dependencies (no dev groups, not the project)."""
    lock = posixpath.normpath(setting)  # may be above the project directory (a repo's root)
    pyproject = posixpath.join(posixpath.dirname(lock), "pyproject.toml")
    with tempfile.TemporaryDirectory(prefix="mlctl-uv-") as tmp:
        Path(tmp, "uv.lock").write_bytes(read(lock))
        Path(tmp, "pyproject.toml").write_bytes(read(pyproject))
        p = subprocess.run(
            [uv_binary(), *_UV_EXPORT, "--format", "requirements-txt"],
            cwd=tmp,
            capture_output=True,
            text=True,
        )
    if p.returncode != 0:
        tail = (p.stderr.strip().splitlines() or ["uv export failed"])[-1]
        raise PreflightFailed(
            f"{setting}: uv export failed: {tail[:200]}",
            "run `uv lock` and commit uv.lock (it must match pyproject.toml)",
        )
    return InstallSet(TOP, {TOP: p.stdout.encode()}, f"{setting} (uv export)", complete=True)


def uv_binary() -> str:
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found:
            return found
    raise PreflightFailed("uv is not installed next to mlctl", "pip install uv")


def pipfile_lock(read, setting: str) -> InstallSet:
    """Pipfile.lock's "default" section (not "develop"): name==version, markers, hashes."""
    try:
        default = json.loads(read(posixpath.normpath(setting))).get("default", {})
    except (ValueError, AttributeError):
        raise PreflightFailed(f"{setting} is not valid JSON", "run `pipenv lock`") from None
    lines = []
    for name, spec in sorted(default.items()):
        if "version" not in spec:  # a VCS or path dependency: nothing to pin from a registry
            raise PreflightFailed(
                f"{setting}: {name} is not a registry package (no version)",
                "replace it with a released version, or use a requirements file",
            )
        extras = f"[{','.join(spec['extras'])}]" if spec.get("extras") else ""
        marker = f" ; {spec['markers']}" if spec.get("markers") else ""
        hashes = "".join(f" --hash={h}" for h in spec.get("hashes", []))
        lines.append(f"{name}{extras}{spec['version']}{marker}{hashes}\n")
    text = "# made by mlctl from " + setting + "\n" + "".join(lines)
    return InstallSet(TOP, {TOP: text.encode()}, f"{setting} (default packages)", complete=True)
