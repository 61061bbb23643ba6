"""The maintenance page: nginx's part of it (written by `setup`) and the flag that turns it on.

`setup` renders templates/nginx_maintenance.conf into the site's server block (the
`{app_server_extra}` line of nginx.conf), writes the `geo` block of the addresses that still
reach the app into conf.d, and the page into /etc/nginx/mlctl/<project>/. From then on
`maintenance on` writes the page with its message and creates the flag file next to it, and
`maintenance off` removes the flag: nginx tests for the file on every request, so neither needs
a reload.
"""

from __future__ import annotations

import html
import ipaddress
import re
from importlib.resources import files
from urllib.parse import urlsplit

from mlctl.core.errors import InventoryError
from mlctl.core.shell import Cmd

PAGE_URI = "/__mlctl_maintenance.html"
# A health path nginx can hold in a quoted string as it is (no `$`, quote or space).
NGINX_PATH = re.compile(r"^/[A-Za-z0-9._~/%+-]*$")


def state_dir(project: str) -> str:
    return f"/etc/nginx/mlctl/{project}"


def page_path(project: str) -> str:
    return f"{state_dir(project)}/maintenance.html"


def flag_path(project: str) -> str:
    return f"{state_dir(project)}/maintenance.on"


def geo_path(project: str) -> str:
    return f"/etc/nginx/conf.d/mlctl-{project}-maintenance.conf"


def geo_var(project: str) -> str:
    return "mlctl_" + project.replace("-", "_") + "_maintenance_allowed"


def health_path(url: str) -> str:
    path = urlsplit(url).path or "/"
    if not NGINX_PATH.match(path):
        raise InventoryError(
            f"health.url: the path {path!r} cannot be excepted from the maintenance page",
            "use a plain path such as /healthz",
        )
    return path


def _template(name: str) -> str:
    return files("mlctl").joinpath("templates", name).read_text()


def server_directives(project: str, health_url: str) -> str:
    """The site's server-level lines (nginx.conf's `{app_server_extra}`)."""
    return _template("nginx_maintenance.conf").format(
        flag=flag_path(project),
        page=page_path(project),
        page_uri=PAGE_URI,
        geo_file=geo_path(project),
        geo_var=geo_var(project),
        health_path=health_path(health_url),
    )


def geo_block(project: str, allow: list[str] | tuple) -> str:
    """conf.d's geo block: "allowed" for the host itself and each maintenance.allow entry."""
    nets = [str(ipaddress.ip_network(a, strict=False)) for a in allow]
    lines = "".join(f"    {n} allowed;\n" for n in dict.fromkeys(nets))
    return _template("nginx_maintenance_geo.conf").format(
        project=project, geo_var=geo_var(project), allow=lines
    )


def page(message: str) -> str:
    return _template("maintenance.html").format(message=html.escape(message))


def site_files(project: str, allow, message: str) -> dict[str, str]:
    """The files `setup` keeps in step: path -> content."""
    return {geo_path(project): geo_block(project, allow), page_path(project): page(message)}


def make_state_dir(project: str) -> Cmd:
    return Cmd.of("install", "-d", "-m", "755", state_dir(project))


def switch_on(project: str) -> Cmd:
    """Create the flag (after the page is written): nginx answers 503 from the next request."""
    return Cmd.of("touch", flag_path(project))


def switch_off(project: str) -> Cmd:
    return Cmd.of("rm", "-f", flag_path(project))


def is_on(project: str) -> Cmd:
    """Exit 0 when maintenance is on; exit 3 when nginx has not the page set up (run setup)."""
    site = Cmd.of("test", "-f", geo_path(project)).otherwise(Cmd.of("exit", "3"))
    return site.then(Cmd.of("test", "-e", flag_path(project)))
