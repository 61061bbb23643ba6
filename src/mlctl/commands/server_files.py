"""The files `setup` writes on a server, rendered from mlctl's templates/ (pure): the app slots'
units, the project's nginx site (HTTP or HTTPS, with the maintenance page's lines) and mlctl's
neutral default site."""

from __future__ import annotations

import re
from importlib.resources import files

from mlctl.commands import maintenance, sites
from mlctl.commands import tls as tlscmd
from mlctl.config.layout import AppSlots, unit_name

site_paths = sites.site_paths


def render(name: str, **values) -> str:
    return files("mlctl").joinpath("templates", name).read_text().format(**values)


def template_values(cfg) -> dict:
    unit = unit_name(cfg.project["name"])
    slots = AppSlots(cfg.project["name"])
    return {
        "project": cfg.project["name"],
        "unit": unit,
        "upstream_file": slots.upstream_file,
        "static_file": slots.static_file,
        "app_user": cfg.app_user,
        "deploy_to": cfg.deploy_to,
        "workers": cfg.gunicorn.workers,
        "preload": " --preload" if cfg.gunicorn.preload else "",
        "wsgi": cfg.project["wsgi"],
        "settings_module": cfg.project["settings_module"],
        "server_name": cfg.server_name,
        "app_server_extra": "",
    }


def unit_files(cfg) -> dict[str, str]:
    """The app slots' template units (socket and service), path -> content."""
    v = template_values(cfg)
    base = f"/etc/systemd/system/{v['unit']}@"
    return {
        f"{base}.socket": render("gunicorn.socket", **v),
        f"{base}.service": render("gunicorn.service", **v),
    }


def single_unit_files(project: str) -> tuple[str, str]:
    """The one socket and service an earlier mlctl wrote for a project, before its two slots."""
    base = f"/etc/systemd/system/{unit_name(project)}"
    return f"{base}.socket", f"{base}.service"


def site_file(cfg, cert_ready: bool = True, nginx: str = "") -> dict[str, str]:
    """The project's nginx site, with the maintenance page's lines, geo block and page
    (maintenance.py). With `tls: acme` before its first certificate (`cert_ready` false) only
    port 80 is served, for the challenge: a 443 block without a certificate would fail
    `nginx -t`. `nginx`: the host's `nginx -v` (HTTP/2 is switched on as it understands)."""
    project = cfg.project["name"]
    avail = site_paths(project)[0]
    if cfg.tls.on and not cert_ready:
        return {
            avail: "# Managed by mlctl (setup): waiting for the first certificate.\n"
            + render("nginx_redirect.conf", **site_pieces(cfg))
        }
    v = template_values(cfg)
    extra = maintenance.server_directives(project, cfg.health.url)
    site = render("nginx.conf", **{**v, **server_blocks(cfg, v, nginx), "app_server_extra": extra})
    m = cfg.maintenance
    return {avail: site, **maintenance.site_files(project, m.allow, m.message)}


def site_pieces(cfg) -> dict:
    return {"server_name": cfg.server_name, "webroot": tlscmd.webroot(cfg.project["name"])}


def server_blocks(cfg, v: dict, nginx: str = "") -> dict:
    """The app server's `listen` lines and TLS settings, and the port-80 redirect with TLS."""
    if not cfg.tls.on:
        default = " default_server" if sites.catch_all(cfg.server_name) else ""
        return {"listen": f"    listen 80{default};", "tls": "", "redirect_server": ""}
    paths = tlscmd.cert_paths(v["project"], cfg.tls)
    hsts = ""
    if cfg.tls.hsts:
        hsts = f'    add_header Strict-Transport-Security "max-age={cfg.tls.hsts}" always;'
    return {
        "listen": https_listen(nginx),
        "tls": render("nginx_tls.conf", cert=paths.cert, key=paths.key, hsts=hsts),
        "redirect_server": "\n" + render("nginx_redirect.conf", **site_pieces(cfg)),
    }


NGINX_VERSION = re.compile(r"nginx/(\d+)\.(\d+)\.(\d+)")


def https_listen(nginx: str) -> str:
    """nginx 1.25.1 and later take `http2 on;` (their `listen ... http2` is deprecated)."""
    m = NGINX_VERSION.search(nginx)
    if m and tuple(map(int, m.groups())) >= (1, 25, 1):
        return "    listen 443 ssl;\n    http2 on;"
    return "    listen 443 ssl http2;"


def default_site() -> dict[str, str]:
    """mlctl's neutral default site (commands/sites.py), path -> content."""
    return {
        sites.DEFAULT_AVAIL: files("mlctl").joinpath("templates", "nginx_default.conf").read_text()
    }
