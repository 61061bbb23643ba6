"""Operator commands, the maintenance page and deploy notifications on real hosts.

One setup and one deploy of the test environment (h1) serve the whole module; h2 is the
outside client that the maintenance page turns away (the control machine is allowed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tests.unit.test_notify import Receiver

from .helpers import D, commit_file, current, mlctl, new_project, ssh

pytestmark = pytest.mark.hosts

PASSWORD = "opsadmin-pw-8c1f2e"


@pytest.fixture(scope="module")
def ops(farm, tmp_path_factory):
    hook = Receiver()
    gone = Receiver()
    down_url = gone.url
    gone.close()  # nothing listens there: that webhook is down
    test = {
        "database": {"name": "djangoapp_operator"},
        "notify": [{"webhook": hook.url}, {"webhook": down_url, "on": ["deploy"]}],
        "maintenance": {"allow": [f"{farm.bridge_address}/32"]},
    }
    repo, inv = new_project(farm, tmp_path_factory, test=test)
    mlctl(inv, "test", "setup")
    deployed = mlctl(inv, "test", "deploy", "--skip-tests")
    yield {
        "farm": farm,
        "repo": repo,
        "inv": inv,
        "h": farm.hosts[0],
        "outside": farm.hosts[1],
        "hook": hook,
        "deployed": deployed,
        "logs": tmp_path_factory.mktemp("oplogs"),
    }
    hook.close()


def from_outside(ops, path: str) -> tuple[int, str]:
    """(status, body) of a request to h1 from h2, an address maintenance.allow leaves out."""
    url = f"http://{ops['h'].address}{path}"
    out = ssh(
        ops["farm"],
        ops["outside"],
        f"curl -s -o /tmp/body -w '%{{http_code}}\\n' {url}; cat /tmp/body",
    )
    status, _, body = out.partition("\n")
    return int(status), body


def from_here(ops, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://{ops['h'].address}{path}", timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_a_deploy_is_notified_and_a_webhook_that_is_down_only_warns(ops):
    p = ops["deployed"]
    (event,) = [e for e in ops["hook"].bodies if e["action"] == "deploy"][:1]
    rid = current(ops["farm"], ops["h"])
    assert event["event"] == "deploy" and event["outcome"] == "ok"
    assert event["environment"] == "test" and event["release"] == rid
    assert rid.endswith(event["commit"][:12]) and event["who"] and event["duration_s"] > 0
    assert "succeeded" in event["text"] and event["hosts"] == [ops["h"].address]
    warnings = [ln for ln in p.stderr.splitlines() if "notification to 127.0.0.1 failed" in ln]
    assert len(warnings) == 1 and "deploy unaffected" in warnings[0], p.stderr
    assert "/hooks/" not in p.stderr  # the webhook's URL (its token) is never printed


def test_manage_streams_the_output_and_returns_the_exit_code(ops):
    inv = ops["inv"]
    p = mlctl(inv, "test", "manage", "check")
    assert "System check identified no issues" in p.stdout
    p = mlctl(
        inv, "test", "manage", "shell", "-c", "import sys; print('bye'); sys.exit(7)", check=False
    )
    assert p.returncode == 7 and "bye" in p.stdout, p.stderr
    p = mlctl(inv, "test", "manage", "nosuchcommand", check=False)
    assert p.returncode == 1 and "Unknown command: 'nosuchcommand'" in p.stderr


def test_createsuperuser_takes_its_password_on_stdin(ops):
    inv, logs = ops["inv"], ops["logs"]
    env = {"DJANGO_SUPERUSER_PASSWORD": PASSWORD, "MLCTL_LOG_DIR": str(logs)}
    args = [
        "--env",
        "DJANGO_SUPERUSER_USERNAME=opsadmin",
        "--env",
        "DJANGO_SUPERUSER_EMAIL=o@x.invalid",
    ]
    p = mlctl(
        inv,
        "test",
        "manage",
        *args,
        "--env",
        "DJANGO_SUPERUSER_PASSWORD",
        "createsuperuser",
        "--noinput",
        env=env,
    )
    assert "Superuser created successfully." in p.stdout
    code = (
        "from django.contrib.auth.models import User; u = User.objects.get(username='opsadmin');"
        f" print(u.is_superuser, u.check_password('{PASSWORD}'))"
    )
    assert mlctl(inv, "test", "manage", "shell", "-c", code).stdout.split()[-2:] == ["True", "True"]
    journal = (logs / "mlctl.jsonl").read_text()
    assert '"step": "manage"' in journal and PASSWORD not in journal
    ps = ssh(ops["farm"], ops["h"], "ps -eo args")
    assert PASSWORD not in ps


def test_a_protected_environment_guards_manage_but_not_a_read_only_command(ops):
    inv = ops["inv"]
    guarded = ["test", "--set", "protected=true", "manage"]
    p = mlctl(inv, *guarded, "migrate", check=False)  # MLCTL_CONFIRM names live, not test
    assert (
        p.returncode == 4 and "manage on protected environment test needs confirmation" in p.stderr
    )
    p = mlctl(inv, *guarded, "showmigrations", "notes")
    assert "[X] 0001_initial" in p.stdout
    p = mlctl(inv, *guarded, "--yes", "migrate", env={"MLCTL_CONFIRM": "test"})
    assert "No migrations to apply." in p.stdout


def test_ssh_shell_and_dbshell_sessions(ops):
    inv = ops["inv"]
    p = mlctl(inv, "test", "ssh", "--tty", "-c", "pwd; tty; id -un")
    assert f"{D}/current" in p.stdout and "/dev/pts/" in p.stdout and "deploy" in p.stdout
    piped = subprocess.run(
        [sys.executable, "-m", "mlctl.cli", "test", "shell"],
        input="import os\nprint(6 * 7, os.getcwd())\n",
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MLCTL_INVENTORY": str(inv)},
    )
    assert piped.returncode == 0 and "42 " in piped.stdout, piped.stderr
    p = mlctl(inv, "test", "shell", "--tty", "-c", "import getpass; print(getpass.getuser())")
    assert "www-data" in p.stdout
    p = mlctl(inv, "test", "dbshell", "-c", "select 6 * 7 as answer")
    assert "42" in p.stdout


def test_maintenance_page_turns_clients_away_but_not_health_or_allowed_addresses(ops):
    inv = ops["inv"]
    mlctl(inv, "test", "maintenance", "on", "--message", "Back at five o'clock")
    try:
        status, body = from_outside(ops, "/")
        assert status == 503 and "Back at five o&#x27;clock" in body
        assert from_outside(ops, "/static/admin/css/base.css")[0] == 503
        assert from_outside(ops, "/healthz")[0] == 200
        assert from_outside(ops, "/__mlctl_maintenance.html")[0] == 404
        assert from_here(ops, "/") == 200  # the control machine is in maintenance.allow
        p = mlctl(inv, "test", "check", "--json", check=False)
        checks = {c["name"]: c for c in json.loads(p.stdout)["hosts"][ops["h"].address]}
        assert p.returncode == 1 and checks["maintenance"]["status"] == "warn"
        assert checks["site"]["status"] == "ok" and checks["site /"]["status"] == "ok"
        assert "maintenance page on" in mlctl(inv, "test", "status").stdout
    finally:
        mlctl(inv, "test", "maintenance", "off")
    assert from_outside(ops, "/")[0] == 200
    assert "maintenance page on" not in mlctl(inv, "test", "status").stdout


def test_deploy_maintenance_wraps_the_deploy_and_stays_on_when_it_fails(ops):
    farm, inv, repo, h = ops["farm"], ops["inv"], ops["repo"], ops["h"]
    flag = "/etc/nginx/mlctl/djangoapp/maintenance.on"
    commit_file(repo, "notes/ops_marker.txt", "v2\n", "a change to deploy")
    p = mlctl(inv, "test", "deploy", "--skip-tests", "--maintenance")
    said = p.stdout + p.stderr
    assert said.index("maintenance page on") < said.index("maintenance page off"), said
    assert ssh(farm, h, f"test -e {flag} && echo on || echo off") == "off"
    good = current(farm, h)
    views = (repo / "notes" / "views.py").read_text()
    broken = views.replace("status=200 if healthy else 503", "status=500")
    assert broken != views
    commit_file(repo, "notes/views.py", broken, "healthz answers 500")
    p = mlctl(inv, "test", "deploy", "--skip-tests", "--maintenance", check=False)
    try:
        assert p.returncode != 0 and current(farm, h) == good
        assert "the maintenance page stays on" in p.stderr
        assert ssh(farm, h, f"test -e {flag} && echo on || echo off") == "on"
        assert from_outside(ops, "/")[0] == 503
        failure = [e for e in ops["hook"].bodies if e["event"] == "failure"]
        assert failure and failure[-1]["outcome"] == "failed" and failure[-1]["error"]
    finally:
        mlctl(inv, "test", "maintenance", "off")
    assert from_outside(ops, "/")[0] == 200
