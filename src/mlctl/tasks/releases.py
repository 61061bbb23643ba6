"""Which release a rollback goes back to (pure decisions on release ids and their metadata).

Release ids sort by time (YYYYmmddHHMMSS-<commit>), so "earlier" is a string comparison.
"""

from __future__ import annotations

from mlctl.core.errors import RollbackFailed

HINT = "see `mlctl ENV releases`"


def earlier_good(releases, metas: dict, current: str | None) -> set[str]:
    """Releases on the host that are good, not removed and older than `current` (all of them
    when nothing is current)."""
    below = current or "~"  # after every digit: no current release, every release is earlier
    return {
        r
        for r in releases
        if r < below and metas.get(r, {}).get("status") == "good" and not metas[r].get("removed")
    }


def rollback_target(hosts: dict[str, dict], to: str | None = None) -> str:
    """`to` if every host has it; else the newest release that is good on every host and older
    than what each host serves (hosts can differ: a deploy with --host, a host added later).
    `hosts`: each host's name -> its facts (releases, metas, current)."""
    if to:
        for name, facts in hosts.items():
            if to not in facts["releases"]:
                raise RollbackFailed(f"{name}: release {to} is not on this host", HINT)
        return to
    common = set.intersection(
        *(earlier_good(f["releases"], f["metas"], f["current"]) for f in hosts.values())
    )
    if not common:
        raise RollbackFailed("no earlier good release to roll back to on every host", HINT)
    return max(common)
