"""Commands that build, switch, list and prune releases under DEPLOY_TO (see layout.py)."""

from __future__ import annotations

import json

from mlctl.commands.db import load_env
from mlctl.config.layout import Layout, check_shared_name
from mlctl.core.shell import Cmd, Raw, script


def manage(rel: str, *args: str) -> Cmd:
    """`manage.py ARGS` in a release, with the shared .env exported (values stay off argv)."""
    return Cmd(
        (
            Cmd.of("cd", rel),
            Raw("&&"),
            load_env("./.env"),
            Raw("&&"),
            Cmd.of("./.venv/bin/python", "manage.py", *args),
        )
    )


def python_in(rel: str, code: str, *args: str) -> Cmd:
    """Run Python code with the release's venv and .env (for imports and probes)."""
    return Cmd(
        (
            Cmd.of("cd", rel),
            Raw("&&"),
            load_env("./.env"),
            Raw("&&"),
            Cmd.of("./.venv/bin/python", "-c", code, *args),
        )
    )


def extract(lay: Layout, rid: str) -> Cmd:
    """Receive the release archive on stdin (one stream per host)."""
    rel = lay.release(rid)
    return script(
        Cmd.of("mkdir", "-p", lay.releases, lay.metas),
        Cmd.of("mkdir", rel),
        Cmd.of("tar", "-xzf", "-", "-C", rel, "--no-same-owner"),
    )


def finish_tree(lay: Layout, rid: str, shared_files: list[str], shared_dirs: list[str]) -> Cmd:
    """REVISION, MANIFEST, links to shared files and dirs; code not writable by others."""
    rel = lay.release(rid)
    steps = [
        Cmd.of("printf", "%s\\n", rid).redirect(f"{rel}/REVISION"),
        Cmd(
            (
                Cmd.of("cd", rel),
                Raw(
                    "&& find . -type f ! -name MANIFEST -print0 | sort -z |"
                    " xargs -0 sha256sum > MANIFEST"
                ),
            )
        ),
    ]
    for name in [*shared_dirs, *shared_files]:
        check_shared_name(name)  # MLCTL_* and --set values never passed the inventory's check
    for name in shared_dirs:
        steps += [
            Cmd.of("mkdir", "-p", f"{lay.shared}/{name}"),
            Cmd.of("rm", "-rf", f"{rel}/{name}"),
            Cmd.of("ln", "-sfn", f"{lay.shared}/{name}", f"{rel}/{name}"),
        ]
    for name in shared_files:
        steps.append(Cmd.of("ln", "-sfn", f"{lay.shared}/{name}", f"{rel}/{name}"))
    steps.append(Cmd.of("chmod", "-R", "go-w", rel))
    return script(*steps)


def venv_ready(venv: str) -> Cmd:
    return Cmd.of("test", "-f", f"{venv}/.complete")


def clean_partial_venvs(venvs: str) -> Cmd:
    """Remove half-built venvs (directories without `.complete`) that no running build holds:
    a build keeps its directory flock'ed while any of its processes lives."""
    return Cmd(
        (
            Raw("("),
            Cmd.of("cd", venvs),
            Raw(
                '&& for d in *; do [ -L "$d" ] || [ ! -d "$d" ] || [ -e "$d/.complete" ] ||'
                ' flock -n "$d" rm -rf "$d" || true; done ) || true'
            ),
        )
    )


def build_venv(
    python: str,
    venv: str,
    wheelhouse: str | None,
    requirements: str,
    build: str,
    server: str | None = None,
    no_deps: bool = False,
) -> Cmd:
    """Build the venv in a directory of its own (`<venv>.<build>`, where it stays: venvs are not
    relocatable) under a lock, mark it complete last, then rename a link to it into place
    (`<venv>` → `<hash>.<build>`), so `<venv>` is there only when complete. Half-built ones
    that no build holds any more are removed first. `server` (the gunicorn mlctl adds to a set
    without one) is installed by a second pip run, so a hashed set needs no hash for it."""
    install = ["pip", "install", "--disable-pip-version-check", "-q"]
    if wheelhouse:
        install += ["--no-index", "--find-links", wheelhouse]
    deps = ["--no-deps"] if no_deps else []  # a complete lock export: no second resolve
    target = f"{venv}.{build}"
    name = target.rsplit("/", 1)[-1]
    tmp_link = f"{venv}.new-{build}"
    venvs = venv.rsplit("/", 1)[0]
    return script(
        Cmd.of("mkdir", "-p", venvs),
        clean_partial_venvs(venvs),
        Cmd.of("mkdir", target),
        Cmd((Raw("exec 9<"), Cmd.of(target))),  # held by every process of this build
        Cmd.of("flock", "9"),
        Cmd.of(python, "-m", "venv", target),
        Cmd.of(f"{target}/bin/python", "-m", *install, *deps, "-r", requirements),
        *([Cmd.of(f"{target}/bin/python", "-m", *install, "-r", server)] if server else []),
        Cmd.of("touch", f"{target}/.complete"),
        Cmd.of("ln", "-sfn", name, tmp_link),
        Cmd.of("mv", "-Tf", tmp_link, venv),
    )


def receive_wheelhouse(wheelhouse: str, build: str) -> Cmd:
    """Unpack the wheels on stdin into `<wheelhouse>.tmp-<build>`, then rename it into place,
    unless a complete one is there already (in use by a build: never replaced under it)."""
    tmp = f"{wheelhouse}.tmp-{build}"
    done = f"{wheelhouse}/.complete"
    return script(
        Cmd.of("mkdir", "-p", wheelhouse.rsplit("/", 1)[0]),
        Cmd.of("rm", "-rf", tmp),
        Cmd.of("mkdir", tmp),
        Cmd.of("tar", "-xf", "-", "-C", tmp, "--no-same-owner"),
        Cmd.of("touch", f"{tmp}/.complete"),
        Cmd(
            (
                Raw("if"),
                Cmd.of("test", "-f", done),
                Raw("; then"),
                Cmd.of("rm", "-rf", tmp),
                Raw("; else"),
                Cmd.of("rm", "-rf", wheelhouse),
                Raw("&&"),
                Cmd.of("mv", "-T", tmp, wheelhouse),
                Raw("; fi"),
            )
        ),
    )


def link_venv(lay: Layout, rid: str, venv: str) -> Cmd:
    return Cmd.of("ln", "-sfn", venv, f"{lay.release(rid)}/.venv")


def present(lay: Layout, rid: str) -> Cmd:
    """Exit 1 naming the release when it is not on the host."""
    missing = Cmd.of("echo", f"release {rid} is not on this host")
    return Cmd.of("test", "-d", lay.release(rid)).otherwise(
        Cmd((Raw("{"), missing, Raw(">&2; exit 1; }")))
    )


def switch(lay: Layout, rid: str) -> Cmd:
    """Atomic switch: a new link, then rename over `current` (never rm then ln); `current`
    never points at a release that is not there."""
    tmp = f"{lay.current}.new-{rid}"
    return script(
        present(lay, rid),
        Cmd.of("ln", "-sfn", f"releases/{rid}", tmp),
        Cmd.of("mv", "-Tf", tmp, lay.current),
    )


def remove_release(lay: Layout, rid: str) -> Cmd:
    return Cmd.of("rm", "-rf", lay.release(rid))


def write_file(path: str, mode: str = "0644") -> Cmd:
    """Write stdin to `path` atomically (temp file + rename)."""
    tmp = f"{path}.tmp"
    return script(
        Cmd.of("cat").redirect(tmp), Cmd.of("chmod", mode, tmp), Cmd.of("mv", "-f", tmp, path)
    )


def put_file(path: str, text: str, mode: str = "0644") -> Cmd:
    """Write `text` (one argv word, no stdin needed) to `path` atomically."""
    tmp = f"{path}.tmp"
    return script(
        Cmd.of("printf", "%s", text).redirect(tmp),
        Cmd.of("chmod", mode, tmp),
        Cmd.of("mv", "-f", tmp, path),
    )


def write_meta(lay: Layout, meta: dict) -> Cmd:
    """A release's metadata file (.mlctl/releases/<id>.json)."""
    return script(
        Cmd.of("mkdir", "-p", lay.metas),
        put_file(lay.meta(meta["id"]), json.dumps(meta, indent=1) + "\n"),
    )


def append_history(lay: Layout, record: dict) -> Cmd:
    """One JSON line appended to the environment's history on this host."""
    return script(
        Cmd.of("mkdir", "-p", lay.state),
        Cmd.of("printf", "%s\\n", json.dumps(record)).redirect(lay.history, append=True),
    )


def build_release(lay: Layout, rid: str, venv: str, program: str, *args: str) -> Cmd:
    """Link the venv, then one Django process of the release runs `program` (remote/build.py)."""
    return script(link_venv(lay, rid, venv), python_in(lay.release(rid), program, *args))


def record(lay: Layout, metas=(), history: dict | None = None, then=(), unlock=None) -> Cmd:
    """Release metadata, a history line, then `then` commands and `unlock` (the lock's release,
    last: a run whose records failed still holds, and later frees, its lock)."""
    cmds = [write_meta(lay, m) for m in metas]
    if history:
        cmds.append(append_history(lay, history))
    cmds += list(then)
    if unlock is not None:
        cmds.append(unlock)
    return script(*cmds)
