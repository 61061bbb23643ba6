"""check, diag, bounce and monitor against real hosts, each fault injected on one host only."""

from __future__ import annotations

import json
import shlex
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from .helpers import LIVE_UNIT, D, healthz, mlctl, new_project, ssh

pytestmark = pytest.mark.hosts


@pytest.fixture(scope="module")
def live(farm, tmp_path_factory):
    repo, inv = new_project(farm, tmp_path_factory)
    mlctl(inv, "live", "setup", "--yes")
    mlctl(inv, "live", "deploy", "--yes")
    return {"farm": farm, "inv": inv, "hosts": farm.hosts[1:]}


def check(live) -> tuple[int, dict]:
    p = mlctl(live["inv"], "live", "check", "--json", check=False)
    return p.returncode, json.loads(p.stdout)


def statuses(report: dict, host) -> dict:
    return {c["name"]: (c["status"], c["detail"]) for c in report["hosts"][host.address]}


def test_healthy_hosts_pass_every_check(live):
    code, report = check(live)
    for h in live["hosts"]:
        bad = {k: v for k, v in statuses(report, h).items() if v[0] != "ok"}
        assert not bad, bad
    assert code == 0


FAULTS = [
    (
        "disk",
        f"avail=$(df --output=avail -k {D} | tail -1);"
        " fallocate -l $((avail - 40960))k /var/tmp/fill",
        "rm -f /var/tmp/fill",
        "%",
    ),
    ("nginx", "sudo systemctl stop nginx", "sudo systemctl start nginx", "inactive"),
    (
        "nginx-config",
        "echo 'broken {' | sudo tee /etc/nginx/conf.d/broken.conf",
        "sudo rm -f /etc/nginx/conf.d/broken.conf",
        "",
    ),
    (
        "gunicorn",
        f"sudo systemctl stop {LIVE_UNIT}.service {LIVE_UNIT}.socket",
        f"sudo systemctl start {LIVE_UNIT}.socket",
        "",
    ),
    ("database", "sudo systemctl stop postgresql", "sudo systemctl start postgresql", ""),
    (
        "env-file",
        f"sudo chmod 0644 {D}/shared/.env",
        f"sudo chmod 0640 {D}/shared/.env",
        "world-readable",
    ),
    (
        "permissions",
        f"sudo chmod o+w {D}/current/manage.py",
        f"sudo chmod o-w {D}/current/manage.py",
        "www-data",
    ),
]


@pytest.mark.parametrize("name,breaks,repairs,words", FAULTS, ids=[f[0] for f in FAULTS])
def test_each_fault_fails_its_check_on_that_host_only(live, name, breaks, repairs, words):
    farm, broken, healthy = live["farm"], live["hosts"][0], live["hosts"][1]
    ssh(farm, broken, breaks)
    try:
        code, report = check(live)
    finally:
        ssh(farm, broken, repairs)
    status, detail = statuses(report, broken)[name]
    assert status == "fail", (name, detail)
    assert words.lower() in detail.lower()
    assert code == 2
    assert all(s == "ok" for s, _ in statuses(report, healthy).values()), statuses(report, healthy)


def test_venv_check_is_cached_until_a_package_is_removed_or_restored(live):
    farm, h = live["farm"], live["hosts"][0]
    site = f"{D}/current/.venv/lib/python3*/site-packages"
    check(live)
    cache = ssh(farm, h, f"sudo cat {D}/current/.venv/.mlctl-pip-check.json")
    assert '"code": 0' in cache, cache
    ssh(farm, h, f"sudo sh -c 'mv {site}/asgiref-*.dist-info /var/tmp/'")
    try:
        _, report = check(live)
    finally:
        ssh(farm, h, f"sudo sh -c 'mv /var/tmp/asgiref-*.dist-info {site}/'")
    status, detail = statuses(report, h)["venv"]
    assert status == "fail" and "asgiref" in detail, detail
    code, report = check(live)
    assert statuses(report, h)["venv"][0] == "ok" and code == 0, statuses(report, h)


def test_disk_above_threshold_fails(live):
    farm, broken = live["farm"], live["hosts"][0]
    used = int(ssh(farm, broken, f"df --output=pcent {D} | tail -1").strip(" %"))
    p = mlctl(
        live["inv"],
        "live",
        "check",
        "--json",
        "--set",
        f"thresholds.disk_pct={max(used - 1, 0)}",
        check=False,
    )
    report = json.loads(p.stdout)
    status, detail = statuses(report, broken)["disk"]
    assert status == "fail" and "%" in detail and p.returncode == 2


def test_unapplied_migration_is_reported(live):
    farm, broken = live["farm"], live["hosts"][0]
    mig = "notes/migrations/0002_seed_notes"
    rel = ssh(farm, broken, f"readlink -f {D}/current")
    ssh(
        farm,
        broken,
        'sudo -u postgres psql -d djangoapp -c "delete from django_migrations where '
        "app='notes' and name='0002_seed_notes'\"",
    )
    try:
        code, report = check(live)
    finally:
        ssh(
            farm,
            broken,
            'sudo -u postgres psql -d djangoapp -c "insert into django_migrations '
            "(app, name, applied) values ('notes', '0002_seed_notes', now())\"",
        )
    status, detail = statuses(report, broken)["migrations"]
    assert status == "fail" and "0002_seed_notes" in detail, (detail, rel, mig)
    assert code == 2


def test_diag_json_matches_what_the_hosts_report(live):
    farm = live["farm"]
    p = mlctl(live["inv"], "live", "diag", "--json")
    data = json.loads(p.stdout)["hosts"]
    for h in live["hosts"]:
        d = data[h.address]
        assert d["release"] == ssh(farm, h, f"readlink {D}/current").split("/")[-1]
        assert d["python"] == ssh(
            farm,
            h,
            f"{D}/current/.venv/bin/python -c 'import sys; "
            'print("%d.%d.%d" % sys.version_info[:3])\'',
        )
        assert d["django"] == ssh(
            farm,
            h,
            f"{D}/current/.venv/bin/python -c " "'import django; print(django.get_version())'",
        )
        assert d["venv"] == ssh(farm, h, f"readlink -f {D}/current/.venv")
        assert d["gunicorn"]["state"] == "active" and d["nginx"] == "active"
        assert d["database"]["ok"] is True
        assert 0 < d["disk"]["used_pct"] < 100 and 0 < d["memory"]["used_pct"] < 100
        assert d["last_deploy"]["release"] == d["release"] and d["lock"]["state"] == "free"
        assert d["releases"]["count"] >= 1 and d["commit"]


def test_bounce_refuses_a_broken_nginx_config_and_the_site_keeps_answering(live):
    farm, h = live["farm"], live["hosts"][0]
    ssh(farm, h, "echo 'broken {' | sudo tee /etc/nginx/conf.d/broken.conf")
    try:
        p = mlctl(live["inv"], "live", "bounce", "--yes", check=False)
        assert p.returncode != 0 and "nginx -t" in p.stderr.strip().splitlines()[-1]
        assert healthz(h.address)["status"] == "ok"
    finally:
        ssh(farm, h, "sudo rm -f /etc/nginx/conf.d/broken.conf")
    mlctl(live["inv"], "live", "bounce", "--yes")


def test_monitor_posts_one_webhook_per_alert_and_writes_prometheus(live, tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    posts = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 — http.server's naming
            posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    farm, h = live["farm"], live["hosts"][0]
    prom = tmp_path / "mlctl.prom"
    env = {"MLCTL_STATE_DIR": str(tmp_path / "state")}
    url = f"http://127.0.0.1:{server.server_port}/hook"
    ssh(farm, h, "sudo systemctl stop nginx")
    try:
        first = mlctl(
            live["inv"],
            "live",
            "monitor",
            "--once",
            "--webhook",
            url,
            "--prometheus",
            str(prom),
            env=env,
            check=False,
        )
        again = mlctl(
            live["inv"], "live", "monitor", "--once", "--webhook", url, env=env, check=False
        )
    finally:
        ssh(farm, h, "sudo systemctl start nginx")
        server.shutdown()
    assert first.returncode != 0 and again.returncode != 0
    assert posts and all(p["host"] == h.address and p["text"] for p in posts)
    assert len({p["alert"] for p in posts}) == len(posts)  # one POST per alert, none repeated
    families = {f.name for f in text_string_to_metric_families(prom.read_text())}
    assert any(name.startswith("mlctl_") for name in families)


def test_check_on_a_host_serving_500_exits_2_naming_the_path_and_the_error(live):
    """The root page raises while /healthz answers: check fails naming `/`, shows the app's last
    error, and status fails too; the other host stays all ok."""
    farm, broken, healthy = live["farm"], live["hosts"][0], live["hosts"][1]
    views = f"{D}/current/notes/views.py"
    raises = '\n\ndef index(request):\n    raise ValueError("check sees this")\n'
    restart = f"sudo systemctl restart {LIVE_UNIT}.service"
    ssh(farm, broken, f"sudo cp {views} /var/tmp/views.py")
    ssh(farm, broken, f"printf %s {shlex.quote(raises)} | sudo tee -a {views} >/dev/null")
    ssh(farm, broken, restart)
    try:
        code, report = check(live)
        status = mlctl(live["inv"], "live", "status", check=False)
    finally:
        ssh(farm, broken, f"sudo cp /var/tmp/views.py {views} && {restart}")
    got = statuses(report, broken)
    assert got["site /"] == ("fail", "GET /: HTTP 500 (expected <500)"), got
    assert got["site"] == ("ok", "GET /healthz: HTTP 200"), got["site"]
    assert got["static"][0] == "ok", got["static"]
    assert got["app-log"] == ("warn", "last error in the app's log: ValueError: check sees this")
    assert code == 2
    assert all(s == "ok" for s, _ in statuses(report, healthy).values()), statuses(report, healthy)
    line = [x for x in status.stdout.splitlines() if x.startswith(broken.address)][0]
    assert status.returncode == 2 and line.endswith(
        "health fail (GET /: HTTP 500 (expected <500))"
    ), status.stdout


def test_static_file_missing_from_nginx_fails_the_static_check(live):
    farm, h = live["farm"], live["hosts"][0]
    _, report = check(live)
    static = statuses(report, h)["static"]
    assert static[0] == "ok" and "GET /static/" in static[1], static
    path = static[1].split()[1]  # GET /static/…: HTTP 200
    target = f"{D}/current/staticfiles/{path.removeprefix('/static/').rstrip(':')}"
    ssh(farm, h, f"sudo mv {target} /var/tmp/static-file")
    try:
        code, report = check(live)
    finally:
        ssh(farm, h, f"sudo mv /var/tmp/static-file {target}")
    status, detail = statuses(report, h)["static"]
    assert status == "fail" and detail.endswith("HTTP 404 (expected 200)"), detail
    assert code == 2
