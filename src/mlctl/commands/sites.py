"""Several projects on one server: each project's nginx site is routed by its `server_name`, and
mlctl's own neutral default site answers the names no project claims (pure builders).

A project whose server_name is `_` is the server's catch-all, as a server with one site has
always been: its site is nginx's default server itself, and mlctl's default site stays off while
it is there. Setup surveys the other projects' sites (the enabled sites whose first line says
mlctl manages them) and refuses a name another project already serves.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlctl.core.shell import Cmd, Raw, script

AVAILABLE = "/etc/nginx/sites-available"
ENABLED = "/etc/nginx/sites-enabled"
NGINX_DEFAULT = f"{ENABLED}/default"  # Debian's own default site, replaced by mlctl's
DEFAULT_NAME = "mlctl-default"
MANAGED = "# Managed by mlctl"


def site_paths(name: str) -> tuple[str, str]:
    """(sites-available file, sites-enabled link) of a site."""
    return f"{AVAILABLE}/{name}", f"{ENABLED}/{name}"


DEFAULT_AVAIL, DEFAULT_ENABLED = site_paths(DEFAULT_NAME)


@dataclass(frozen=True)
class Claim:
    """Another project's site on the host: the names it serves, and whether it is the
    server's catch-all (`listen ... default_server`)."""

    site: str
    names: frozenset
    default: bool


def catch_all(server_name: str) -> bool:
    return server_name.split() == ["_"]


def survey_sites(project: str) -> list:
    """Print `site<TAB>server_name ... default_server` for every other mlctl site enabled."""
    return [
        Raw(f'for f in {ENABLED}/*; do n=${{f##*/}}; [ -e "$f" ] || continue;'),
        Raw('[ "$n" ='),
        Cmd.of(project),
        Raw(f'] && continue; [ "$n" = {DEFAULT_NAME} ] && continue;'),
        Raw(f"head -n1 \"$f\" | grep -q '^{MANAGED}' || continue;"),
        Raw("printf '%s\\t' \"$n\"; grep -o 'server_name [^;]*\\|default_server' \"$f\""),
        Raw("| tr '\\n' ' '; echo; done;"),
    ]


def parse_sites(text: str) -> tuple[Claim, ...]:
    out = []
    for line in text.splitlines():
        site, _, rest = line.partition("\t")
        words = rest.split()
        if site.strip():
            names = frozenset(w for w in words if w not in ("server_name", "default_server"))
            out.append(Claim(site.strip(), names, "default_server" in words))
    return tuple(out)


def name_taken(server_name: str, others: tuple[Claim, ...]) -> str:
    """The line that refuses a name another project's site already serves on this host, or ''."""
    mine = set(server_name.split())
    for other in others:
        shared = sorted(mine & other.names)
        if shared:
            what = "the catch-all name _" if shared == ["_"] else f"server name {shared[0]}"
            return (
                f"{what} is already served by project {other.site!r} on this host "
                f"({AVAILABLE}/{other.site}): give this project its own server_name"
            )
    return ""


def wants_default(server_name: str, others: tuple[Claim, ...]) -> bool:
    """mlctl's default site is on unless a project's site is the server's catch-all."""
    return not catch_all(server_name) and not any(o.default for o in others)


def default_link(on: bool) -> Cmd:
    if on:
        return Cmd.of("ln", "-sfn", DEFAULT_AVAIL, DEFAULT_ENABLED)
    return Cmd.of("rm", "-f", DEFAULT_ENABLED)


def default_state() -> list:
    """`on` when mlctl's default site is enabled."""
    return [Raw("[ -L"), Cmd.of(DEFAULT_ENABLED), Raw("] && echo on;")]


def enable(avail: str, enabled: str, default_on: bool) -> Cmd:
    """Link the site and mlctl's default one (or not), drop nginx's own and test the config;
    nginx is reloaded only after."""
    return script(
        Cmd.of("ln", "-sfn", avail, enabled),
        default_link(default_on),
        Cmd.of("rm", "-f", NGINX_DEFAULT),
        Cmd.of("nginx", "-t", "-q"),
    )
