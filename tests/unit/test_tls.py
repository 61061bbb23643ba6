"""`tls:` without servers: the settings and their errors, the nginx site for each mode, setup's
plan (uploads, certbot, Django's .env), the key check, the health program over real HTTPS on
this machine, and the served certificate judged by `check` and `monitor`."""

from __future__ import annotations

import hashlib
import json
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mlctl import remote
from mlctl.commands import provision as pv
from mlctl.commands import provision_plan as planner
from mlctl.commands import sites
from mlctl.commands import tls as tlscmd
from mlctl.config import healthpaths, inventory
from mlctl.core.errors import InventoryError, PreflightFailed
from mlctl.tasks import cert_judges, monitor
from mlctl.tasks import tls as tlstask
from tests.tlscerts import TestCA
from tests.unit.conftest import BASE
from tests.unit.test_setup_plan import LIVE_BLUE

SITE = "/etc/nginx/sites-available/app"


def fixed_secret(n: int) -> str:
    return f"generated-{n}"


@pytest.fixture
def ca(tmp_path):
    return TestCA(tmp_path)


def resolve(write_inventory, test: str, env: str = "test"):
    text = BASE.replace("    hosts: [t1.example.internal]\n", test)
    return inventory.resolve(inventory.load(write_inventory(text)), env)


def files_cfg(write_inventory, ca, key=None, extra=""):
    cert, own_key = ca.leaf(["notes.example"], "notes")
    text = (
        "    hosts: [t1.example.internal]\n"
        "    server_name: notes.example\n"
        f"    tls: {{mode: files, cert: {cert}, key: {key or own_key}{extra}}}\n"
    )
    return resolve(write_inventory, text)


def acme_cfg(write_inventory, extra=""):
    text = (
        "    hosts: [t1.example.internal]\n"
        "    server_name: notes.example www.notes.example\n"
        f"    tls: {{mode: acme, email: ops@notes.example{extra}}}\n"
    )
    return resolve(write_inventory, text)


def bare(**changes) -> planner.HostFacts:
    return planner.HostFacts(host="t1", address="t1", **changes)


# ---------------------------------------------------------------- settings


def test_a_bare_yaml_off_is_tls_off(write_inventory):
    cfg = resolve(write_inventory, "    hosts: [t1.example.internal]\n    tls: off\n")
    assert cfg.tls.mode == "off" and not cfg.tls.on


def test_the_shorthand_names_the_mode(write_inventory):
    cfg = acme_cfg(write_inventory)
    assert (cfg.tls.mode, cfg.tls.directory) == (
        "acme",
        "https://acme-v02.api.letsencrypt.org/directory",
    )


@pytest.mark.parametrize(
    "test, error",
    [
        (
            "    hosts: [t1.example.internal]\n    tls: acme\n",
            "environments.yaml:14: environments.test.tls.mode: tls acme needs server_name to list"
            " the site's names (got '_'; no _ or wildcards)",
        ),
        (
            "    hosts: [t1.example.internal]\n    server_name: a.example\n    tls: files\n",
            "environments.yaml:15: environments.test.tls.mode: tls files needs tls.cert"
            " (a PEM file on this machine)",
        ),
        (
            "    hosts: [t1.example.internal]\n    server_name: a.example\n"
            "    tls: {mode: files, cert: nowhere.pem, key: nowhere.key}\n",
            "environments.yaml:15: environments.test.tls.cert: {root}/nowhere.pem: no such file",
        ),
        (
            "    hosts: [t1.example.internal]\n    tls: https\n",
            "environments.yaml:14: environments.test.tls: must be one of off, files, acme"
            " (got 'https')",
        ),
    ],
)
def test_bad_tls_settings_name_the_key(write_inventory, tmp_path, test, error):
    with pytest.raises(InventoryError) as e:
        resolve(write_inventory, test)
    assert str(e.value) == error.format(root=tmp_path)


def test_a_local_environment_cannot_serve_tls(write_inventory):
    text = BASE.replace("    deploy_to: ./var/dev\n", "    deploy_to: ./var/dev\n    tls: acme\n")
    with pytest.raises(InventoryError, match="local environment serves plain HTTP"):
        inventory.resolve(inventory.load(write_inventory(text)), "dev")


# ---------------------------------------------------------------- the nginx site


def test_plain_http_site_is_the_catch_all_only_with_server_name_underscore(write_inventory):
    cfg = resolve(write_inventory, "    hosts: [t1.example.internal]\n")
    site = pv.site_file(cfg)[SITE]
    assert "    listen 80 default_server;\n" in site and "ssl" not in site
    named = resolve(
        write_inventory, "    hosts: [t1.example.internal]\n    server_name: a.example\n"
    )
    site = pv.site_file(named)[SITE]
    assert "    listen 80;\n" in site and "default_server" not in site
    assert "    client_max_body_size 20m;\n\n" in site  # app_server_extra renders empty


def test_https_site_redirects_port_80_and_serves_443(write_inventory, ca):
    site = pv.site_file(files_cfg(write_inventory, ca))[SITE]
    port80, app = site.split("server {")[1:]
    assert "listen 80;" in port80 and "return 301 https://$host$request_uri;" in port80
    assert (
        "location /.well-known/acme-challenge/ {\n        root /var/lib/mlctl/acme/app;" in port80
    )
    assert "    listen 443 ssl http2;\n    server_name notes.example;" in app
    assert "ssl_certificate /etc/mlctl/tls/app/fullchain.pem;" in app
    assert "ssl_certificate_key /etc/mlctl/tls/app/privkey.pem;" in app
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in app and "Strict-Transport-Security" not in site
    assert "proxy_pass http://gunicorn-app;" in app and "default_server" not in site


@pytest.mark.parametrize(
    "nginx, listen",
    [
        ("nginx version: nginx/1.22.1", "    listen 443 ssl http2;\n"),
        ("nginx version: nginx/1.26.3", "    listen 443 ssl;\n    http2 on;\n"),
        ("", "    listen 443 ssl http2;\n"),
    ],
)
def test_http2_is_switched_on_as_the_hosts_nginx_understands(write_inventory, ca, nginx, listen):
    assert listen in pv.site_file(files_cfg(write_inventory, ca), nginx=nginx)[SITE]


def test_acme_asks_certbot_again_when_the_site_changes(write_inventory):
    cfg = acme_cfg(write_inventory)
    steps = planner.plan(bare(cert_ready=True), cfg, fixed_secret).steps
    names = next(s for s in steps if s.name == "certificate names")
    assert [a.label for a in names.actions] == ["certbot certonly", "reload nginx"]
    sums = {p: planner.digest(t) for p, t in {**pv.site_file(cfg), **pv.default_site()}.items()}
    again = planner.plan(
        bare(cert_ready=True, sums=sums, site_linked=True, default_on=True, slots=LIVE_BLUE),
        cfg,
        fixed_secret,
    )
    assert "certificate names" not in [s.name for s in again.steps]
    assert not next(s for s in again.steps if s.name == "nginx site").changed


def test_hsts_is_sent_once_opted_in(write_inventory, ca):
    site = pv.site_file(files_cfg(write_inventory, ca, extra=", hsts: 31536000"))[SITE]
    assert 'add_header Strict-Transport-Security "max-age=31536000" always;' in site


def test_acme_before_its_first_certificate_serves_port_80_only(write_inventory):
    cfg = acme_cfg(write_inventory)
    site = pv.site_file(cfg, cert_ready=False)[SITE]
    assert site.startswith("# Managed by mlctl") and "443" not in site
    assert "ssl_certificate /etc/letsencrypt/live/app/fullchain.pem;" in pv.site_file(cfg)[SITE]


# ---------------------------------------------------------------- setup's plan


def test_files_mode_uploads_the_pair_and_the_key_is_written_0600_from_its_first_byte(
    write_inventory, ca
):
    cfg = files_cfg(write_inventory, ca)
    uploads = tlstask.uploads(cfg)
    assert sorted(uploads) == ["/etc/mlctl/tls/app/fullchain.pem", "/etc/mlctl/tls/app/privkey.pem"]
    step = next(
        s
        for s in planner.plan(bare(), cfg, fixed_secret, uploads).steps
        if s.name == "certificate files"
    )
    key = next(a for a in step.actions if a.label.endswith("privkey.pem"))
    assert key.cmd.render() == (
        "set -e; install -d -m 0755 -o root -g root /etc/mlctl/tls/app ;"
        " umask 077 && cat > /etc/mlctl/tls/app/privkey.pem.tmp ;"
        " chown root:root /etc/mlctl/tls/app/privkey.pem.tmp ;"
        " chmod 0600 /etc/mlctl/tls/app/privkey.pem.tmp ;"
        " mv -f /etc/mlctl/tls/app/privkey.pem.tmp /etc/mlctl/tls/app/privkey.pem ;"
    )
    assert b"PRIVATE KEY" in key.stdin and b"PRIVATE KEY" not in key.cmd.render().encode()
    sums = {p: hashlib.sha256(d).hexdigest() for p, d in uploads.items()}
    again = planner.plan(bare(sums=sums), cfg, fixed_secret, uploads).steps
    assert not next(s for s in again if s.name == "certificate files").changed


def test_a_key_of_another_certificate_is_refused_in_one_line(write_inventory, ca):
    _, other = ca.leaf(["notes.example"], "other")
    cfg = files_cfg(write_inventory, ca, key=other)
    with pytest.raises(InventoryError) as e:
        tlstask.uploads(cfg)
    assert str(e.value) == (
        "environments.yaml:15: environments.test.tls.key: the key does not match the certificate"
        " (their public keys differ); nginx was not changed"
    )


def test_key_problem_tells_garbage_from_a_mismatch(ca):
    cert, key = ca.leaf(["a.example"], "a")
    assert tlscmd.key_problem(cert.read_bytes(), key.read_bytes()) == ""
    assert (
        tlscmd.key_problem(b"junk", key.read_bytes())
        == "the certificate file holds no PEM certificate"
    )
    assert "no unencrypted PEM private key" in tlscmd.key_problem(cert.read_bytes(), b"junk")


def test_acme_first_run_serves_the_challenge_before_certbot_then_the_https_site(write_inventory):
    cfg = acme_cfg(write_inventory, extra=", directory: 'https://acme.test/dir'")
    steps = planner.plan(bare(), cfg, fixed_secret).steps
    labels = [
        (s.name, a.label)
        for s in steps
        for a in s.actions
        if s.name in ("certificate", "nginx site")
    ]
    assert [a for n, a in labels if n == "certificate"] == [
        "ACME webroot",
        "hook directory",
        f"write {tlscmd.DEPLOY_HOOK}",
        f"write {SITE}",  # port 80 only
        "enable nginx site",
        "reload nginx",
        "certbot certonly",
        "renewal timer",
    ]
    # then, with 443 once the certificate is there (the site step's other actions aside)
    wanted = [f"write {SITE}", f"write {sites.DEFAULT_AVAIL}", "enable nginx site", "reload nginx"]
    site = [a for n, a in labels if n == "nginx site"]
    assert [a for a in site if a in wanted] == wanted
    assert labels.index(("certificate", "renewal timer")) < labels.index(("nginx site", wanted[0]))
    certbot = next(a for s in steps for a in s.actions if a.label == "certbot certonly")
    assert certbot.cmd.render() == (
        "certbot certonly --webroot -w /var/lib/mlctl/acme/app --cert-name app"
        " -d notes.example -d www.notes.example --server https://acme.test/dir --non-interactive"
        " --agree-tos --keep-until-expiring --expand --no-eff-email --email ops@notes.example"
    )
    assert certbot.refusal.startswith("certbot could not obtain the certificate")


def test_acme_with_its_certificate_changes_nothing_more(write_inventory):
    cfg = acme_cfg(write_inventory)
    sums = {tlscmd.DEPLOY_HOOK: planner.digest(tlscmd.DEPLOY_HOOK_TEXT)}
    step = next(
        s
        for s in planner.plan(bare(cert_ready=True, sums=sums), cfg, fixed_secret).steps
        if s.name == "certificate"
    )
    assert not step.changed and [a.label for a in step.actions] == [
        "ACME webroot",
        "hook directory",
        "renewal timer",
    ]


def test_certbot_trusts_a_test_ca_through_requests_ca_bundle():
    tls = type("T", (), {"directory": "https://pebble:14000/dir", "email": ""})()
    assert tlscmd.certbot_certonly("app", "a.test", tls, "/etc/mlctl/tls/app/ca.pem").render() == (
        "env REQUESTS_CA_BUNDLE=/etc/mlctl/tls/app/ca.pem certbot certonly --webroot"
        " -w /var/lib/mlctl/acme/app --cert-name app -d a.test --server https://pebble:14000/dir"
        " --non-interactive --agree-tos --keep-until-expiring --expand --no-eff-email"
        " --register-unsafely-without-email"
    )


def test_django_is_told_it_is_behind_https_and_told_again_when_tls_goes_off(write_inventory):
    cfg = acme_cfg(write_inventory)
    env = planner.plan(bare(), cfg, fixed_secret).env
    assert env["CSRF_TRUSTED_ORIGINS"] == "https://notes.example,https://www.notes.example"
    assert (
        env["SECURE_PROXY_SSL_HEADER"],
        env["SESSION_COOKIE_SECURE"],
        env["CSRF_COOKIE_SECURE"],
    ) == ("1", "1", "1")
    assert env["SECURE_SSL_REDIRECT"] == "0"
    assert env["DJANGO_SILENCED_CHECKS"] == "security.W004,security.W008"
    off = resolve(write_inventory, "    hosts: [t1.example.internal]\n")
    env_off = planner.plan(bare(env=env), off, fixed_secret).env
    assert not set(tlscmd.DJANGO_TLS_KEYS) & set(env_off)
    assert env_off["SECRET_KEY"] == env["SECRET_KEY"]


# ---------------------------------------------------------------- health over HTTPS


def test_health_url_moves_to_https_when_tls_is_on(write_inventory):
    cfg = acme_cfg(write_inventory)
    plan = healthpaths.requests(cfg.settings, ca="/etc/mlctl/tls/app/ca.pem")
    assert plan["base"] == "https://127.0.0.1" and plan["tls"] == {
        "ca": "/etc/mlctl/tls/app/ca.pem"
    }
    assert plan["requests"][0]["host"] == "notes.example"
    off = resolve(write_inventory, "    hosts: [t1.example.internal]\n")
    assert healthpaths.requests(off.settings)[
        "base"
    ] == "http://127.0.0.1" and "tls" not in healthpaths.requests(off.settings)


@pytest.fixture
def https_server(ca):
    cert, key = ca.leaf(["site.test"], "site")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(
                {"release": "r1", "status": "ok", "host": self.headers["Host"]}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def ask(base: str, host: str, ca: str) -> dict:
    config = {
        "base": base,
        "timeout": 5,
        "once": True,
        "tls": {"ca": ca},
        "requests": [
            {"path": "/healthz", "expect": "200", "host": host, "body": "", "release": ""}
        ],
    }
    p = subprocess.run(
        [sys.executable, "-c", remote.source("health"), json.dumps(config)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    return json.loads(p.stdout)[0]


def test_health_program_verifies_the_chain_and_the_name_it_sends_as_sni(https_server, ca):
    assert ask(https_server, "site.test", str(ca.path))["why"] == "HTTP 200"
    wrong = ask(https_server, "other.test", str(ca.path))
    assert not wrong["ok"] and "Hostname mismatch" in wrong["why"], wrong
    untrusted = ask(https_server, "site.test", "")
    assert not untrusted["ok"] and "unable to get local issuer certificate" in untrusted["why"]


# ---------------------------------------------------------------- check and monitor


NOW = 1_800_000_000.0
DAY = 86400


def settings(mode="acme", cert_days=14) -> dict:
    return {"connection": "ssh", "tls": {"mode": mode}, "thresholds": {"cert_days": cert_days}}


def served(*certs, timer=("enabled", "active")) -> dict:
    out = {"certs": list(certs)}
    if timer:
        out["timer"] = {"unit": "certbot.timer", "enabled": timer[0], "active": timer[1]}
    return {"served_tls": out}


def test_check_says_a_plain_http_site_is_plain_http():
    (c,) = cert_judges.tls_checks({}, settings("off"), NOW)
    assert (c.name, c.status, c.detail) == ("https", "ok", cert_judges.PLAIN_HTTP)


def test_check_judges_each_served_certificate_and_the_renewal_timer():
    facts = served(
        {"name": "a.example", "not_after": NOW + 60 * DAY, "issuer": "R3"},
        {"name": "b.example", "not_after": NOW + 5 * DAY},
        {
            "name": "c.example",
            "error": "Hostname mismatch, certificate is not valid for 'c.example'.",
        },
        timer=("disabled", "inactive"),
    )
    got = [(c.name, c.status, c.detail) for c in cert_judges.tls_checks(facts, settings(), NOW)]
    assert got == [
        ("https", "ok", "a.example: certificate valid until 2027-03-16 (60 days, issuer R3)"),
        ("https", "warn", "b.example: certificate expires in 5 day(s) (2027-01-20) < 14"),
        (
            "https",
            "fail",
            "c.example: certificate refused: Hostname mismatch, certificate is not valid for"
            " 'c.example'.",
        ),
        (
            "https-renewal",
            "fail",
            "certbot.timer: disabled, inactive: the certificate will not be renewed"
            " (systemctl enable --now certbot.timer)",
        ),
    ]


def test_monitor_alerts_cert_days_before_expiry_and_on_a_stopped_timer(monkeypatch):
    monkeypatch.setattr(time, "time", lambda: NOW)
    base = {"thresholds": {"cert_days": 21}, "health": {}}
    facts = served(
        {"name": "a.example", "not_after": NOW + 20 * DAY}, timer=("enabled", "inactive")
    )
    alerts, metrics = [], {}
    monitor._certs("h1", facts, monitor.Thresholds.of(base["thresholds"]), alerts, metrics)
    assert [(a.alert, a.threshold) for a in alerts] == [("cert", 21), ("cert_renewal", 1)]
    assert "expires in 20 day(s)" in alerts[0].detail and metrics[
        "cert_days_left"
    ] == pytest.approx(20)
    fine = served({"name": "a.example", "not_after": NOW + 40 * DAY})
    alerts = []
    monitor._certs("h1", fine, monitor.Thresholds.of(base["thresholds"]), alerts, {})
    assert alerts == []


# ---------------------------------------------------------------- several sites on one host


def test_the_other_sites_are_read_from_the_survey():
    text = (
        "blog\tserver_name blog.example www.blog.example server_name blog.example \n"
        "old\tdefault_server server_name _ \n"
    )
    assert sites.parse_sites(text) == (
        sites.Claim("blog", frozenset({"blog.example", "www.blog.example"}), False),
        sites.Claim("old", frozenset({"_"}), True),
    )


def test_a_name_another_project_serves_is_refused_naming_it():
    others = sites.parse_sites("blog\tserver_name blog.example www.blog.example \n")
    assert sites.name_taken("shop.example", others) == ""
    assert sites.name_taken("shop.example www.blog.example", others) == (
        "server name www.blog.example is already served by project 'blog' on this host"
        " (/etc/nginx/sites-available/blog): give this project its own server_name"
    )
    catch_all = sites.parse_sites("old\tserver_name _ default_server \n")
    assert "the catch-all name _ is already served by project 'old'" in sites.name_taken(
        "_", catch_all
    )


def test_mlctl_default_site_is_on_unless_a_project_is_the_catch_all():
    named = sites.parse_sites("blog\tserver_name blog.example \n")
    assert sites.wants_default("shop.example", named)
    assert not sites.wants_default("_", named)
    assert not sites.wants_default(
        "shop.example", sites.parse_sites("old\tserver_name _ default_server \n")
    )


def test_setup_refuses_a_taken_name_before_planning_any_step(write_inventory):
    cfg = resolve(
        write_inventory, "    hosts: [t1.example.internal]\n    server_name: blog.example\n"
    )
    facts = bare(others=sites.parse_sites("blog\tserver_name blog.example \n"))
    with pytest.raises(
        PreflightFailed, match="^t1: server name blog.example is already served by project 'blog'"
    ):
        planner.plan(facts, cfg, fixed_secret)


def test_a_named_site_turns_on_mlctl_default_site_in_the_same_nginx_test(write_inventory):
    cfg = resolve(
        write_inventory, "    hosts: [t1.example.internal]\n    server_name: shop.example\n"
    )
    step = next(s for s in planner.plan(bare(), cfg, fixed_secret).steps if s.name == "nginx site")
    enable = next(a for a in step.actions if a.label == "enable nginx site")
    assert enable.cmd.render() == (
        "set -e; ln -sfn /etc/nginx/sites-available/app /etc/nginx/sites-enabled/app ;"
        " ln -sfn /etc/nginx/sites-available/mlctl-default /etc/nginx/sites-enabled/mlctl-default ;"
        " rm -f /etc/nginx/sites-enabled/default ; nginx -t -q ;"
    )
    default = next(a for a in step.actions if a.label.endswith("mlctl-default"))
    assert (
        b"listen 443 ssl default_server;" in default.stdin
        and b"ssl_reject_handshake on;" in default.stdin
    )
