"""The read of a server's facts (remote/facts.py), and small tests of a host's files."""

from __future__ import annotations

from mlctl.core.shell import Cmd


def read_facts(
    python: str, program: str, deploy_to: str, public: list[str], slots: tuple = ()
) -> Cmd:
    """remote/facts.py as root: DEPLOY_TO's releases, metadata, marker, lock, the host's Python;
    `public`: the .env names whose values are not secret; `slots`: (unit, upstream file) of a
    server's app slots, whose state comes along."""
    return Cmd.of(python, "-c", program, deploy_to, ",".join(public), *slots)


def nonempty(path: str) -> Cmd:
    """Exit 0 when `path` is a file with something in it (a database, a snapshot)."""
    return Cmd.of("test", "-s", path)


def in_new_dir(directory: str, cmd: Cmd) -> Cmd:
    return Cmd.of("mkdir", "-p", directory).then(cmd)
