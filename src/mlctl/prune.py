"""Keep `keep_releases` releases: never current, never the last good one; drop unused venvs."""

from __future__ import annotations

from . import steps
from .commands import release as relcmd
from .layout import RELEASE_ID, Layout
from .shell import Cmd, script


def choose(releases: list[str], metas: dict, current: str | None, keep: int) -> list[str]:
    """Release ids to delete (pure): keep the newest `keep` good ones, current and the last good;
    failed (bad or partial) releases go unless current."""
    ids = sorted(r for r in releases if RELEASE_ID.match(r))
    good = [r for r in reversed(ids) if metas.get(r, {}).get("status") == "good"]
    survivors = set(good[: max(keep, 1)]) | {current}
    return [r for r in ids if r not in survivors]


def prune(host, current: str) -> list[str]:
    facts = steps.gather_facts(host)
    lay = Layout(host.session.cfg["deploy_to"])
    doomed = choose(
        facts["releases"],
        facts["metas"],
        facts["current"] or current,
        host.session.cfg["keep_releases"],
    )
    if doomed:
        host.run("prune releases", script(*[relcmd.remove_release(lay, r) for r in doomed]))
    host.run("prune venvs", unused_venvs(lay))
    return doomed


def unused_venvs(lay: Layout) -> Cmd:
    """Delete venvs (and their wheelhouses) no remaining release links to."""
    from .shell import Raw

    return Cmd(
        (
            Cmd.of("cd", lay.root),
            Raw(
                '&& for v in venvs/*; do [ -d "$v" ] || continue; h=${v#venvs/};'
                " used=0; for l in releases/*/.venv;"
                ' do [ "$(readlink "$l")" = "$PWD/$v" ] && used=1;'
                ' done; [ $used = 1 ] || rm -rf "$v" "wheelhouse/$h"; done; true'
            ),
        )
    )
