"""setup's certificate steps (pure): the operator's files uploaded (`tls: files`), or certbot's
certificate obtained and renewed (`tls: acme`), in the order that keeps `nginx -t` passing."""

from __future__ import annotations

import hashlib

from mlctl.commands import provision as pv
from mlctl.commands import sites
from mlctl.commands import tls as tlscmd
from mlctl.commands.release import write_file
from mlctl.commands.setup_steps import Action, Step, enable_actions, file_writes
from mlctl.core.shell import Cmd

CERTBOT_REFUSED = (
    "certbot could not obtain the certificate (port 80 serves only the ACME challenge until it"
    " does; rerun setup once the names resolve to this host)"
)


def bootstraps(facts, cfg) -> bool:
    """acme without its certificate yet: port 80 is served first, for the challenge."""
    return cfg.tls.mode == "acme" and not facts.cert_ready


def tls_steps(facts, cfg, uploads: dict[str, bytes]) -> list[Step]:
    """The certificate: the operator's files uploaded, or certbot's obtained (acme)."""
    if not cfg.tls.on:
        return []
    project = cfg.project["name"]
    writes = tuple(
        Action(f"write {path}", upload_cmd(path, cfg), data)
        for path, data in uploads.items()
        if facts.sums.get(path) != hashlib.sha256(data).hexdigest()
    )
    dirs = (Action("TLS directory", tlscmd.make_dir(f"{tlscmd.TLS_DIR}/{project}")),)
    step = Step("certificate files", bool(writes), (dirs + writes) if writes else ())
    if cfg.tls.mode == "files":
        return [step]
    return [step, acme_step(facts, cfg)]


def certbot_action(cfg) -> Action:
    project = cfg.project["name"]
    ca = tlscmd.cert_paths(project, cfg.tls).ca
    cmd = tlscmd.certbot_certonly(project, cfg.server_name, cfg.tls, ca)
    return Action("certbot certonly", cmd, refusal=CERTBOT_REFUSED)


def names_step(facts, cfg) -> list[Step]:
    """acme, a certificate there and the site rewritten (its names may have changed): once the
    new site serves the challenge for every name, certbot asks again (a no-op while the
    certificate covers the names and is not due), and nginx reloads to serve what it got."""
    if cfg.tls.mode != "acme" or not facts.cert_ready:
        return []
    if not file_writes(facts.sums, pv.site_file(cfg, nginx=facts.nginx)):
        return []
    return [
        Step(
            "certificate names",
            True,
            (certbot_action(cfg), Action("reload nginx", pv.reload_nginx())),
        )
    ]


def upload_cmd(path: str, cfg) -> Cmd:
    paths = tlscmd.cert_paths(cfg.project["name"], cfg.tls)
    return tlscmd.write_private(path) if path == paths.key else write_file(path)


def acme_step(facts, cfg) -> Step:
    """certbot's certificate: on the first run port 80 is served (the challenge) before certbot
    asks for it; the renewal timer and the hook that reloads nginx on renewal are ensured."""
    project = cfg.project["name"]
    hook = file_writes(facts.sums, {tlscmd.DEPLOY_HOOK: tlscmd.DEPLOY_HOOK_TEXT})
    hook = tuple(Action(a.label, write_file(tlscmd.DEPLOY_HOOK, "0755"), a.stdin) for a in hook)
    prepare = (
        Action("ACME webroot", tlscmd.make_dir(tlscmd.webroot(project))),
        Action("hook directory", tlscmd.make_dir(tlscmd.DEPLOY_HOOK.rsplit("/", 1)[0])),
    )
    timer = Action("renewal timer", tlscmd.renewal_on())
    if not bootstraps(facts, cfg):
        return Step("certificate", bool(hook), (*prepare, *hook, timer))
    avail, enabled = pv.site_paths(project)
    port80 = file_writes({}, pv.site_file(cfg, cert_ready=False))
    on = sites.wants_default(cfg.server_name, facts.others)
    actions = (*prepare, *hook, *port80, *enable_actions(avail, enabled, on), certbot_action(cfg))
    return Step("certificate", True, (*actions, timer))
