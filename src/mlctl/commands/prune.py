"""Commands that remove old releases and the venvs and wheelhouses no release uses any more."""

from __future__ import annotations

from mlctl.config.layout import Layout
from mlctl.core.shell import Cmd, Raw

FAILED = "mlctl: could not remove old releases"


def remove_releases(lay: Layout, doomed: list[str]) -> Cmd:
    """Best effort: a failure prints FAILED on stderr and never stops the script."""
    rm = Cmd.of("rm", "-rf", *[lay.release(r) for r in doomed])
    return rm.otherwise(Cmd((Cmd.of("echo", FAILED), Raw(">&2"))))


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
