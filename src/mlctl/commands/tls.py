"""HTTPS on a host (pure builders): where a project's certificate lives, the commands that put it
there (the operator's files, or certbot's), and what the project's Django settings are told.

`tls: files`: the chain and key are uploaded to /etc/mlctl/tls/<project>/ (key 0600 root, sent on
stdin, never on argv). `tls: acme`: certbot (Debian's package) keeps them in
/etc/letsencrypt/live/<project>/ with the HTTP-01 challenge answered from a webroot that port 80
serves; certbot's own timer (certbot.timer, from the package) renews, and a deploy hook reloads
nginx after each renewal.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlctl.core.shell import Cmd, Raw, script

TLS_DIR = "/etc/mlctl/tls"
ACME_WEBROOT = "/var/lib/mlctl/acme"
LIVE_DIR = "/etc/letsencrypt/live"
RENEW_TIMER = "certbot.timer"
DEPLOY_HOOK = "/etc/letsencrypt/renewal-hooks/deploy/mlctl-reload-nginx"
DEPLOY_HOOK_TEXT = (
    "#!/bin/sh\n"
    "# Managed by mlctl (setup): a renewed certificate is served once nginx reloads.\n"
    "nginx -t -q && systemctl reload nginx\n"
)


@dataclass(frozen=True)
class CertPaths:
    """Where nginx reads a project's certificate chain and key, and the extra CA the health
    checks trust ('' when the system's store is enough)."""

    cert: str
    key: str
    ca: str


def cert_paths(project: str, tls) -> CertPaths:
    ca = f"{TLS_DIR}/{project}/ca.pem" if tls.ca_file else ""
    if tls.mode == "acme":
        return CertPaths(
            f"{LIVE_DIR}/{project}/fullchain.pem", f"{LIVE_DIR}/{project}/privkey.pem", ca
        )
    return CertPaths(f"{TLS_DIR}/{project}/fullchain.pem", f"{TLS_DIR}/{project}/privkey.pem", ca)


def webroot(project: str) -> str:
    return f"{ACME_WEBROOT}/{project}"


def names(server_name: str) -> list[str]:
    return [n for n in server_name.split() if n != "_"]


def host_files(cfg) -> list[str]:
    """The host files setup keeps the digests of for TLS (uploaded ones, the renewal hook)."""
    if not cfg.tls.on:
        return []
    paths = cert_paths(cfg.project["name"], cfg.tls)
    own = [paths.cert, paths.key] if cfg.tls.mode == "files" else [DEPLOY_HOOK]
    return [*own, *([paths.ca] if paths.ca else [])]


def cert_state(cfg) -> list:
    """`yes` when the certificate nginx is to serve is there (acme: certbot's)."""
    if not cfg.tls.on:
        return [Raw("true;")]
    cert = cert_paths(cfg.project["name"], cfg.tls).cert
    return [Raw("[ -s"), Cmd.of(cert), Raw("] && echo yes;")]


# ---------------------------------------------------------------- the operator's files


def key_problem(cert_pem: bytes, key_pem: bytes) -> str:
    """Why `key_pem` cannot serve `cert_pem` (the first certificate of the chain), or ''."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        return "the certificate file holds no PEM certificate"
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        return "the key file holds no unencrypted PEM private key"
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if cert.public_key().public_bytes(*fmt) != key.public_key().public_bytes(*fmt):
        return "the key does not match the certificate (their public keys differ)"
    return ""


def write_private(path: str) -> Cmd:
    """stdin to `path`, 0600 root from its first byte (umask 077, then renamed into place)."""
    tmp = f"{path}.tmp"
    parent = path.rsplit("/", 1)[0]
    return script(
        Cmd.of("install", "-d", "-m", "0755", "-o", "root", "-g", "root", parent),
        Cmd((Raw("umask 077 &&"), Cmd.of("cat").redirect(tmp))),
        Cmd.of("chown", "root:root", tmp),
        Cmd.of("chmod", "0600", tmp),
        Cmd.of("mv", "-f", tmp, path),
    )


def make_dir(path: str) -> Cmd:
    return Cmd.of("install", "-d", "-m", "0755", "-o", "root", "-g", "root", path)


# ---------------------------------------------------------------- certbot


def certbot_certonly(project: str, server_name: str, tls, ca_on_host: str = "") -> Cmd:
    """Obtain (or keep, while it is not due) the project's certificate over HTTP-01 from the
    webroot port 80 serves. A test CA for the ACME server's own HTTPS goes in REQUESTS_CA_BUNDLE
    (certbot's HTTP client reads it); without one, the system's store is used."""
    words = ["certbot", "certonly", "--webroot", "-w", webroot(project), "--cert-name", project]
    for name in names(server_name):
        words += ["-d", name]
    words += ["--server", tls.directory, "--non-interactive", "--agree-tos"]
    words += ["--keep-until-expiring", "--expand", "--no-eff-email"]
    words += ["--email", tls.email] if tls.email else ["--register-unsafely-without-email"]
    cmd = Cmd.of(*words)
    if ca_on_host:
        cmd = Cmd((Cmd.of("env", f"REQUESTS_CA_BUNDLE={ca_on_host}"), cmd))
    return cmd


def renewal_on() -> Cmd:
    """certbot's own timer (Debian's package ships it) renews twice a day when a cert is due."""
    return Cmd.of("systemctl", "enable", "--now", RENEW_TIMER)


# ---------------------------------------------------------------- Django behind HTTPS

# The .env keys setup owns for HTTPS; with tls: off they are taken out again.
DJANGO_TLS_KEYS = (
    "SECURE_PROXY_SSL_HEADER",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_SSL_REDIRECT",
    "CSRF_TRUSTED_ORIGINS",
    "DJANGO_SILENCED_CHECKS",
)
# Behind mlctl's nginx two deploy checks are answered by nginx, not Django: W008 (nginx's port 80
# redirects to HTTPS, so Django's own redirect stays off) and W004 (nginx sends the HSTS header,
# on every answer including static files, once tls.hsts is set).
NGINX_ANSWERS = "security.W004,security.W008"


def django_env(server_name: str) -> dict[str, str]:
    """What the deploy settings read from the .env when nginx terminates TLS."""
    return {
        "SECURE_PROXY_SSL_HEADER": "1",
        "SESSION_COOKIE_SECURE": "1",
        "CSRF_COOKIE_SECURE": "1",
        "SECURE_SSL_REDIRECT": "0",
        "CSRF_TRUSTED_ORIGINS": ",".join(f"https://{n}" for n in names(server_name)),
        "DJANGO_SILENCED_CHECKS": NGINX_ANSWERS,
    }
