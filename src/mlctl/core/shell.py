"""Quoting in one place: commands are argv lists rendered with shlex, secrets masked when shown.

A `Cmd` is an argv list (or a pipeline/sequence of them) that knows which of its words are secret.
`render()` gives the string to execute; `display()` the same string with secrets replaced, for logs
and the console. Nothing else in mlctl builds shell strings by concatenation.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field

MASK = "********"
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def quote(word) -> str:
    return shlex.quote(str(word))


@dataclass(frozen=True)
class Cmd:
    """A shell command: argv words joined by quoting, or a raw operator between sub-commands."""

    parts: tuple = field(default_factory=tuple)

    @classmethod
    def of(cls, *argv) -> Cmd:
        return cls(tuple(_word(a) for a in argv))

    def render(self) -> str:
        return " ".join(_render(p, masked=False) for p in self.parts)

    def display(self, extra_secrets: Iterable[str] = ()) -> str:
        text = " ".join(_render(p, masked=True) for p in self.parts)
        return mask(text, extra_secrets)

    def __str__(self) -> str:
        return self.display()

    # Composition: operators are kept as raw tokens, operands stay quoted.
    def then(self, other: Cmd) -> Cmd:
        return Cmd((self, _Op("&&"), other))

    def otherwise(self, other: Cmd) -> Cmd:
        return Cmd((self, _Op("||"), other))

    def pipe(self, other: Cmd) -> Cmd:
        return Cmd((self, _Op("|"), other))

    def redirect(self, path: str, append: bool = False) -> Cmd:
        return Cmd((self, _Op(">>" if append else ">"), _word(path)))

    def stdin_from(self, path: str) -> Cmd:
        return Cmd((self, _Op("<"), _word(path)))

    def quiet(self) -> Cmd:
        return Cmd((self, _Op(">/dev/null 2>&1")))

    def in_dir(self, path: str) -> Cmd:
        return Cmd.of("cd", path).then(self)

    def with_env(self, env: dict) -> Cmd:
        """Run with extra environment variables (a compound command runs under `sh -c`)."""
        if not env:
            return self
        words = ["env"] + [Assign(k, v) for k, v in sorted(env.items())]
        if self._is_simple():
            return Cmd((Cmd.of(*words), self))
        return Cmd((Cmd.of(*words, "sh", "-c"), _Quoted(self)))

    def _is_simple(self) -> bool:
        return not any(isinstance(p, Cmd | _Op | Raw | _Quoted) for p in self.parts)


class _Op(str):
    """A shell operator inserted between commands (never from user input)."""


class Raw(str):
    """A fixed shell fragment written in mlctl's source (never from user input)."""


class Assign:
    """NAME=value for `env`; the name is validated, the value quoted (and masked if secret)."""

    def __init__(self, name: str, value):
        if not ENV_NAME.match(name):  # ASCII only: str.isalnum() would accept 'é' or '²'
            raise ValueError(f"invalid environment variable name: {name!r}")
        self.name, self.value = name, value


def seq(*cmds: Cmd) -> Cmd:
    """Run commands in order, stopping at the first failure (`a && b && c`)."""
    out = cmds[0]
    for c in cmds[1:]:
        out = out.then(c)
    return out


SET_E = Raw("set -e;")


def script(*cmds: Cmd) -> Cmd:
    """A `set -e` script of several commands, sent as one remote round trip; a script among
    `cmds` is spliced in, so scripts compose into one."""
    parts: list = [SET_E]
    for c in cmds:
        if c.parts and isinstance(c.parts[0], Raw) and c.parts[0] == SET_E:
            parts += c.parts[1:]
        else:
            parts += [c, _Op(";")]
    return Cmd(tuple(parts))


def _word(value):
    if isinstance(value, Cmd | Raw | Assign | _Op | _Quoted):
        return value
    return str(value)


class _Quoted:
    """A command passed as one quoted argument (e.g. to `sh -c`), masked recursively."""

    def __init__(self, cmd: Cmd):
        self.cmd = cmd


def _render(part, masked: bool) -> str:
    if isinstance(part, Cmd):
        return part.display() if masked else part.render()
    if isinstance(part, _Quoted):
        return quote(part.cmd.display() if masked else part.cmd.render())
    if isinstance(part, _Program):
        return part.label if masked else quote(part)
    if isinstance(part, _Op | Raw):
        return str(part)
    if isinstance(part, Assign):
        return part.name + "=" + quote(part.value)
    return quote(part)


def sudo(cmd: Cmd, user: str | None = None) -> Cmd:
    """Wrap a whole command once: `sudo -n [-u USER] sh -c '<command>'` (never `sudo cd`)."""
    return wrap(cmd, as_root=True, user=user)


MASK_ANYWHERE = 16  # a secret this long is masked wherever it appears; a shorter one as a word


def mask(text: str, secrets: Iterable[str] = ()) -> str:
    """Replace each secret value (longest first) with the mask.

    A long secret is masked wherever it appears. A short one only where it stands as a word of
    its own (between spaces, quotes, `=`, `:`, `@`, ...), never inside a longer word or a path:
    a 6-character password that happens to be a directory name must not mangle every path."""
    for value in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        if len(value) >= MASK_ANYWHERE:
            text = text.replace(value, MASK)
        else:
            word = r"(?<![\w/.-])" + re.escape(value) + r"(?![\w/-])(?!\.\w)"
            text = re.sub(word, MASK, text)
    return text


@dataclass(frozen=True)
class Watch:
    """How a step runs under remote/watch.py: the host's Python and the run's tag."""

    python: str
    tag: str  # MLCTL_RUN=<tag> in the step's environment: `<run id>.<step number>`


def wrap(
    cmd: Cmd,
    as_root: bool = False,
    user: str | None = None,
    timeout: float | None = None,
    watch: Watch | None = None,
) -> Cmd:
    """The one wrapper every step goes through: `[sudo -n [-u U]] [timeout …] sh -c '<cmd>'`.

    The host's own `timeout` kills a command that never returns, even if the connection is gone.
    With `watch`, the watcher takes the place of `timeout`: `[sudo …] PYTHON -I -S -c <watch>
    TIMEOUT TAG sh -c '<cmd>'` runs the command in a process group of its own and stops the
    whole group when the channel ends, on a signal, or after TIMEOUT seconds (exit 124).
    """
    argv: list = []
    if as_root or user:
        argv += ["sudo", "-n"] + (["-u", user] if user else [])
    if watch:
        limit = str(max(1, int(timeout))) if timeout else "0"
        argv += [watch.python, "-I", "-S", "-c", WATCHER, limit, watch.tag]
    elif timeout:
        argv += ["timeout", "-k", "5", str(max(1, int(timeout)))]
    return Cmd((Cmd.of(*argv, "sh", "-c"), _Quoted(cmd)))


class _Program(Raw):
    """A fixed program text passed as one argument: quoted when run, named when shown."""

    def __new__(cls, text: str, label: str):
        obj = super().__new__(cls, text)
        obj.label = label
        return obj


def _watcher() -> _Program:
    from mlctl import remote

    text = remote.source("watch")
    body = text.split('"""', 2)[2].lstrip("\n")  # the docstring stays on this side
    return _Program(body, "<mlctl-watch>")


WATCHER = _watcher()
