"""Keep `keep_releases` releases: never current, never the last good one; drop unused venvs."""

from __future__ import annotations

from .layout import RELEASE_ID, Layout
from .shell import Cmd, Raw


def choose(releases: list[str], metas: dict, current: str | None, keep: int) -> list[str]:
    """Release ids to delete (pure): keep the newest `keep` good ones, current and the last good;
    failed (bad or partial) releases go unless current."""
    ids = sorted(r for r in releases if RELEASE_ID.match(r))
    good = [r for r in reversed(ids) if metas.get(r, {}).get("status") == "good"]
    survivors = set(good[: max(keep, 1)]) | {current}
    return [r for r in ids if r not in survivors]


FAILED = "mlctl: could not remove old releases"


def commands(lay: Layout, facts: dict, release: str, keep: int) -> list[Cmd]:
    """Pruning after `release` went live, from the facts gathered before the run (the deploy
    lock kept them true): best effort, so a failure here never fails the deploy."""
    releases = [*facts.get("releases", []), release]
    metas = {**facts.get("metas", {}), release: {"status": "good"}}
    doomed = choose(releases, metas, release, keep)
    cmds = [unused_venvs(lay)]
    if doomed:
        rm = Cmd.of("rm", "-rf", *[lay.release(r) for r in doomed])
        cmds.insert(0, rm.otherwise(Cmd((Cmd.of("echo", FAILED), Raw(">&2")))))
    return cmds


def unused_venvs(lay: Layout) -> Cmd:
    """Delete venv links (and their wheelhouses) no remaining release links to, then the venv
    directories no link points to (half-built ones only when no running build holds
    them), and wheelhouses left half-uploaded; best effort, in a subshell, so it never stops (or
    moves) the script it is part of."""
    return Cmd(
        (
            Raw("("),
            Cmd.of("cd", lay.root),
            Raw(
                '&& for v in venvs/*; do [ -L "$v" ] || continue; h=${v#venvs/};'
                " used=0; for l in releases/*/.venv;"
                ' do [ "$(readlink "$l")" = "$PWD/$v" ] && used=1;'
                ' done; [ $used = 1 ] || rm -rf "$v" "wheelhouse/$h"; done;'
                ' for v in venvs/*; do [ -d "$v" ] && [ ! -L "$v" ] || continue; linked=0;'
                ' for l in venvs/* releases/*/.venv; do [ -L "$l" ] || continue;'
                ' t=$(readlink "$l"); [ "$t" = "${v#venvs/}" ] || [ "$t" = "$PWD/$v" ] &&'
                " linked=1; done;"
                ' [ $linked = 1 ] || flock -n "$v" rm -rf "$v" "wheelhouse/${v#venvs/}"; done;'
                ' for w in wheelhouse/*.tmp-*; do [ -d "$w" ] && rm -rf "$w"; done ) || true'
            ),
        )
    )
