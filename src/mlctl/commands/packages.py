"""The system packages an environment declares (`packages: [redis-server]`): whether each is
installed and its service running, and the commands that make it so (pure builders).

A package's service is the unit named after it (redis-server -> redis-server.service), when the
package ships one: that is Debian's convention for a daemon package, and a package without one
(a library, a tool) is only installed.
"""

from __future__ import annotations

from mlctl.core.shell import Cmd, Raw

UNIT_DIRS = ("/lib/systemd/system", "/usr/lib/systemd/system")


def survey(packages: list[str]) -> Cmd:
    """`pkg NAME STATUS` per package (installed, or what dpkg knows: missing when nothing), then
    `unit NAME.service enabled active` for each package service (see processes.unit_states)."""
    return Cmd(
        (
            Raw("for p in"),
            Cmd.of(*packages),
            Raw(
                "; do s=$(dpkg-query -W -f='${db:Status-Status}' \"$p\" 2>/dev/null);"
                ' echo "pkg $p ${s:-missing}"; done;'
            ),
        )
    )


def install(packages: list[str]) -> Cmd:
    """apt-get install, without prompts; its last stderr line names what failed (a package apt
    does not know, no network)."""
    return Cmd.of(
        "env",
        "DEBIAN_FRONTEND=noninteractive",
        "apt-get",
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        *packages,
    )


def start_services(packages: list[str]) -> Cmd:
    """Enable and start each package's own service, where the package ships one."""
    dirs = " ".join(UNIT_DIRS)
    return Cmd(
        (
            Raw("for p in"),
            Cmd.of(*packages),
            Raw(
                f'; do for d in {dirs}; do if [ -e "$d/$p.service" ]; then'
                ' systemctl enable --now "$p.service" || exit 1; break; fi; done; done'
            ),
        )
    )


def refusal(packages: list[str]) -> str:
    return f"cannot install {', '.join(packages)} (apt-get install failed)"
