"""Keep `keep_releases` releases: never current, never the release a rollback would go back to,
never one an app slot still runs; drop unused venvs (the commands are in commands/prune.py)."""

from __future__ import annotations

from mlctl.commands.prune import FAILED, remove_releases, unused_venvs  # noqa: F401 — prune's API
from mlctl.config.layout import RELEASE_ID, Layout
from mlctl.core.shell import Cmd
from mlctl.tasks.releases import earlier_good


def choose(releases: list[str], metas: dict, current: str | None, keep: int) -> list[str]:
    """Release ids to delete (pure): keep the newest `keep` good ones, current and the rollback
    target (the newest good one before current, whatever `keep` says); failed (bad or partial)
    releases go unless current."""
    ids = sorted(r for r in releases if RELEASE_ID.match(r))
    good = [r for r in reversed(ids) if metas.get(r, {}).get("status") == "good"]
    target = earlier_good(ids, metas, current)
    survivors = set(good[: max(keep, 1)]) | {current} | ({max(target)} if target else set())
    return [r for r in ids if r not in survivors]


def is_running(slot) -> bool:
    """An app slot (facts["slots"]'s blue or green) running a release: never pruned under it."""
    return isinstance(slot, dict) and bool(slot.get("active"))


def commands(lay: Layout, facts: dict, release: str, keep: int) -> list[Cmd]:
    """Pruning after `release` went live, from the facts gathered before the run (the deploy
    lock kept them true): best effort, so a failure here never fails the deploy."""
    releases = [*facts.get("releases", []), release]
    metas = {**facts.get("metas", {}), release: {"status": "good"}}
    running = {s.get("release") for s in (facts.get("slots") or {}).values() if is_running(s)}
    doomed = [r for r in choose(releases, metas, release, keep) if r not in running]
    return [remove_releases(lay, doomed), unused_venvs(lay)] if doomed else [unused_venvs(lay)]
