"""HTTPS on a real host: `tls: files` with a certificate made by the test, a key that does not
match refused before nginx changes, then `tls: acme` against Debian's pebble (certificate
obtained, chain verified against pebble's root, a forced renewal reloading nginx while a client
keeps asking), and `check` judging the served certificate."""

from __future__ import annotations

import json
import threading

import pytest

from .helpers import D, mlctl, new_project, ssh, write_inventory
from .tlskit import TestCA, http_get, https_get, own_host, pebble

pytestmark = pytest.mark.hosts

FILES_NAME = "files.test"
ACME_NAME = "acme.test"
SITE = "/etc/nginx/sites-available/djangoapp"


@pytest.fixture(scope="module")
def tlsfarm():
    yield from own_host()


@pytest.fixture(scope="module")
def files_site(tlsfarm, tmp_path_factory):
    certs = tmp_path_factory.mktemp("certs")
    ca = TestCA(certs)
    cert, key = ca.leaf([FILES_NAME], "files")
    tls = {"mode": "files", "cert": str(cert), "key": str(key), "ca_file": str(ca.path)}
    repo, inv = new_project(tlsfarm, tmp_path_factory, test={"server_name": FILES_NAME, "tls": tls})
    mlctl(inv, "test", "setup")
    mlctl(inv, "test", "deploy", "--skip-tests")
    return {"farm": tlsfarm, "repo": repo, "inv": inv, "ca": ca, "tls": tls, "dir": certs}


def check_json(inv) -> tuple[int, dict]:
    p = mlctl(inv, "test", "check", "--json", check=False)
    return p.returncode, json.loads(p.stdout)


def named(report: dict, host, name: str) -> list[tuple[str, str]]:
    return [(c["status"], c["detail"]) for c in report["hosts"][host.address] if c["name"] == name]


def test_files_serves_https_with_the_chain_verified_and_http_redirects(files_site):
    h = files_site["farm"].hosts[0]
    status, headers, body, peer = https_get(
        h.address, FILES_NAME, "/healthz", files_site["ca"].path
    )
    assert status == 200 and json.loads(body)["status"] == "ok"
    assert ("DNS", FILES_NAME) in peer["subjectAltName"]
    assert "Strict-Transport-Security" not in headers  # HSTS is off until opted in
    status, headers = http_get(h.address, FILES_NAME, "/notes/?page=2")
    assert status == 301 and headers["Location"] == f"https://{FILES_NAME}/notes/?page=2"
    key = ssh(files_site["farm"], h, "stat -c %U:%a /etc/mlctl/tls/djangoapp/privkey.pem")
    assert key == "root:600"


def test_django_knows_it_is_behind_https(files_site):
    farm, h = files_site["farm"], files_site["farm"].hosts[0]
    env = ssh(farm, h, f"cat {D}/shared/.env")
    assert f"CSRF_TRUSTED_ORIGINS=https://{FILES_NAME}" in env
    assert "SESSION_COOKIE_SECURE=1" in env and "SECURE_PROXY_SSL_HEADER=1" in env
    status, headers, _, _ = https_get(h.address, FILES_NAME, "/admin/login/", files_site["ca"].path)
    assert status == 200 and "Secure" in headers["Set-Cookie"]  # the CSRF cookie
    # Over HTTPS Django sees https (X-Forwarded-Proto): its redirects stay on https.
    status, headers, _, _ = https_get(h.address, FILES_NAME, "/admin/", files_site["ca"].path)
    assert status == 302 and headers["Location"].startswith("/admin/login/")


def test_check_verifies_the_served_certificate_over_https(files_site):
    h = files_site["farm"].hosts[0]
    code, report = check_json(files_site["inv"])
    (https,) = named(report, h, "https")
    assert https[0] == "ok" and f"{FILES_NAME}: certificate valid until" in https[1], https
    assert named(report, h, "site")[0][0] == "ok"
    assert code == 0, report
    # Without the test CA the same certificate is not trusted: check says so.
    tls = {**files_site["tls"], "ca_file": ""}
    inv = write_inventory(
        files_site["farm"], files_site["repo"], files_site["dir"] / "noca.yaml",
        test={"server_name": FILES_NAME, "tls": tls},
    )  # fmt: skip
    code, report = check_json(inv)
    (https,) = named(report, h, "https")
    assert https[0] == "fail" and "unable to get local issuer certificate" in https[1], https
    assert code == 2


def test_a_key_that_does_not_match_is_refused_before_nginx_changes(files_site):
    farm, h = files_site["farm"], files_site["farm"].hosts[0]
    other_cert, other_key = files_site["ca"].leaf([FILES_NAME], "other")
    before = ssh(farm, h, f"sha256sum {SITE} /etc/mlctl/tls/djangoapp/*")
    tls = {**files_site["tls"], "key": str(other_key)}
    inv = write_inventory(
        farm, files_site["repo"], files_site["dir"] / "bad.yaml",
        test={"server_name": FILES_NAME, "tls": tls},
    )  # fmt: skip
    p = mlctl(inv, "test", "setup", check=False)
    assert p.returncode == 3, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if "does not match" in ln]
    assert len(lines) == 1 and "tls.key" in lines[0] and "nginx was not changed" in lines[0]
    assert "PRIVATE KEY" not in p.stdout + p.stderr
    assert ssh(farm, h, f"sha256sum {SITE} /etc/mlctl/tls/djangoapp/*") == before
    status, _, _, _ = https_get(h.address, FILES_NAME, "/healthz", files_site["ca"].path)
    assert status == 200


# ---------------------------------------------------------------- acme (pebble)


@pytest.fixture(scope="module")
def acme_site(files_site, tmp_path_factory):
    farm = files_site["farm"]
    h = farm.hosts[0]
    work = tmp_path_factory.mktemp("pebble")
    with pebble(work, farm.bridge_address, h.address, files_site["ca"]) as (directory, trust):
        tls = {"mode": "acme", "directory": directory, "ca_file": str(trust)}
        inv = write_inventory(
            farm,
            files_site["repo"],
            work / "acme.yaml",
            test={"server_name": ACME_NAME, "tls": tls},
        )
        mlctl(inv, "test", "setup")
        mlctl(inv, "test", "deploy", "--skip-tests")
        yield {
            "farm": farm,
            "inv": inv,
            "trust": trust,
            "root": work / "pebble-root.pem",
            "directory": directory,
            "repo": files_site["repo"],
            "work": work,
        }


def test_acme_obtains_a_certificate_from_pebble(acme_site):
    farm, h = acme_site["farm"], acme_site["farm"].hosts[0]
    status, _, body, peer = https_get(h.address, ACME_NAME, "/healthz", acme_site["root"])
    assert status == 200 and json.loads(body)["status"] == "ok"
    assert ("DNS", ACME_NAME) in peer["subjectAltName"]
    assert "Pebble" in str(peer["issuer"])
    status, headers = http_get(h.address, ACME_NAME, "/")
    assert status == 301 and headers["Location"] == f"https://{ACME_NAME}/"
    assert ssh(farm, h, "systemctl is-active certbot.timer") == "active"
    # The files site's name is gone with its site: only acme.test is served now.
    code, report = check_json(acme_site["inv"])
    (https,) = named(report, h, "https")
    assert https[0] == "ok" and ACME_NAME in https[1], https
    assert named(report, h, "https-renewal")[0][0] == "ok"
    assert code == 0, report


def test_monitor_measures_the_served_certificate(acme_site):
    prom = acme_site["work"] / "monitor.prom"
    p = mlctl(acme_site["inv"], "test", "monitor", "--once", "--prometheus", str(prom), check=False)
    text = prom.read_text()
    days = [ln for ln in text.splitlines() if ln.startswith("mlctl_cert_days_left{")]
    assert len(days) == 1 and float(days[0].split()[-1]) > 14, text
    assert 'alert="cert"} 0' in text and 'alert="cert_renewal"} 0' in text, p.stderr


def test_setup_again_changes_nothing(acme_site):
    p = mlctl(acme_site["inv"], "test", "setup")
    assert "changed" not in p.stdout, p.stdout


def test_forced_renewal_reloads_nginx_without_a_failed_request(acme_site):
    farm, h = acme_site["farm"], acme_site["farm"].hosts[0]
    serial = https_get(h.address, ACME_NAME, "/healthz", acme_site["root"])[3]["serialNumber"]
    failures, answers, stop = [], [], threading.Event()

    def client():
        while not stop.is_set():
            try:
                answers.append(https_get(h.address, ACME_NAME, "/healthz", acme_site["root"])[0])
            except Exception as e:  # noqa: BLE001 — any failed request fails the test
                failures.append(repr(e))

    t = threading.Thread(target=client)
    t.start()
    try:
        ssh(
            farm,
            h,
            "REQUESTS_CA_BUNDLE=/etc/mlctl/tls/djangoapp/ca.pem"
            " certbot renew --force-renewal --no-random-sleep-on-renew -q",
        )
    finally:
        stop.set()
        t.join()
    assert not failures, failures[:3]
    assert len(answers) >= 5 and set(answers) == {200}, answers  # asked all along
    renewed = https_get(h.address, ACME_NAME, "/healthz", acme_site["root"])[3]["serialNumber"]
    assert renewed != serial  # the deploy hook reloaded nginx: the new certificate is served


def test_a_name_added_to_server_name_gets_its_certificate_on_the_next_setup(acme_site):
    farm, h = acme_site["farm"], acme_site["farm"].hosts[0]
    tls = {"mode": "acme", "directory": acme_site["directory"], "ca_file": str(acme_site["trust"])}
    inv = write_inventory(
        farm, acme_site["repo"], acme_site["work"] / "names.yaml",
        test={"server_name": f"{ACME_NAME} www.{ACME_NAME}", "tls": tls},
    )  # fmt: skip
    p = mlctl(inv, "test", "setup")
    assert "certificate names: changed" in p.stderr, p.stderr
    mlctl(inv, "test", "bounce")  # the app reads the .env's new ALLOWED_HOSTS when it restarts
    for name in (ACME_NAME, f"www.{ACME_NAME}"):
        status, _, _, peer = https_get(h.address, name, "/healthz", acme_site["root"])
        assert status == 200 and ("DNS", f"www.{ACME_NAME}") in peer["subjectAltName"]
