"""Processes besides web, packages and schedules on two Debian 13 hosts, with the example app.

One farm of its own (two hosts in ONE environment, so `hosts: all` and `hosts: 1` mean
something), one setup, deploys shared by the tests in order. The processes are the app's own
`manage.py tick`, a stand-in for a Celery worker and beat committed into the test's copy of the
app: a worker takes jobs (files in its host's shared/media/queue), works on each for the seconds
the job says and writes the result; on TERM it finishes the job in hand first, as a Celery
worker's warm shutdown does. A process's release is read from the working directory of its main
process (/proc/PID/cwd, resolved when it started), so "runs the new release" is the kernel's word.

198.51.100.16/28 (hosts .27, .28) is outside every other farm's hosts (default .11-.13, mlcorp
.32/27, mlrel .64/26, mlinit .128/26, mlbench and mldeb13 .192/26).
"""

from __future__ import annotations

import json
import time

import pytest
import yaml

from tests.hosts.farm import Farm, placed
from tests.hosts.fixtures import booted

from .helpers import D, commit_file, current, healthz, mlctl, new_project, psql, ssh

pytestmark = pytest.mark.hosts

TICK = '''"""A stand-in worker (see tests/integration/test_processes.py)."""

import json
import os
import signal
import socket
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    def add_arguments(self, parser):
        parser.add_argument("--role", default="worker")
        parser.add_argument("--jobs", action="store_true")

    def handle(self, role, jobs, **options):
        stop = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
        base = Path(settings.MEDIA_ROOT)
        queue, done = base / "queue", base / "done"
        queue.mkdir(exist_ok=True)
        done.mkdir(exist_ok=True)
        me = {"release": os.path.basename(os.getcwd()), "pid": os.getpid(),
              "env": bool(os.environ.get("SECRET_KEY")), "state": os.environ.get("STATE_DIRECTORY")}
        (base / f"{role}.json").write_text(json.dumps(me))
        while not stop:
            for job in sorted(queue.glob("*.job")) if jobs else []:
                taken = job.with_suffix(".taken")
                try:
                    job.rename(taken)
                except FileNotFoundError:
                    continue
                time.sleep(float(taken.read_text() or 1))  # a TERM meanwhile waits for this
                (done / (job.stem + ".json")).write_text(json.dumps(me))
                taken.unlink()
            time.sleep(0.2)
'''

PROJECT = "djangoapp"
UNIT = f"mlctl-{PROJECT}-"
SETTINGS = {
    "processes": {
        "worker": {"command": "manage.py tick --jobs", "hosts": "all", "stop_timeout": 30},
        "beat": {"command": "manage.py tick --role beat", "hosts": 1, "stop_timeout": 10},
    },
    "schedule": {"clearsessions": {"command": "manage.py clearsessions", "on": "daily"}},
    "packages": ["redis-server"],
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    prefix, network, _ = placed("mlproc", "198.51.100.16/28", "")
    workdir = tmp_path_factory.mktemp("farm-procs")
    farm = Farm(2, workdir=workdir, prefix=prefix, network=network, image="debian13")
    for hosts in booted(farm):
        addresses = [h.address for h in hosts.hosts]
        repo, inv = new_project(hosts, tmp_path_factory, test={"hosts": addresses, **SETTINGS})
        commit_file(repo, "notes/management/__init__.py", "", "management")
        commit_file(repo, "notes/management/commands/__init__.py", "", "commands")
        commit_file(repo, "notes/management/commands/tick.py", TICK, "a stand-in worker")
        yield {"farm": hosts, "repo": repo, "inv": inv, "h1": hosts.hosts[0], "h2": hosts.hosts[1]}


def unit_state(farm, host, name: str, suffix: str = "service") -> dict:
    """active/enabled state, main pid and the release the process runs (its cwd)."""
    unit = f"{UNIT}{name}.{suffix}"
    props = ssh(farm, host, f"systemctl show -p ActiveState -p UnitFileState -p MainPID {unit}")
    found = dict(line.split("=", 1) for line in props.splitlines() if "=" in line)
    pid = int(found.get("MainPID") or 0)
    release = None
    if pid:
        release = ssh(farm, host, f"readlink /proc/{pid}/cwd").rsplit("/", 1)[-1]
    enabled = found.get("UnitFileState") or "none"
    return {"active": found.get("ActiveState"), "enabled": enabled, "pid": pid, "release": release}


def starts_of(farm, host, name: str) -> int:
    """How many times systemd started the unit on this host since boot (its journal)."""
    out = ssh(
        farm,
        host,
        f"journalctl -u {UNIT}{name}.service -o cat --no-pager | grep -c '^Started' || true",
    )
    return int(out or 0)


def assert_placed(world, release: str) -> None:
    """worker on both hosts and beat on h1 only, all in `release`; beat never ran on h2."""
    farm = world["farm"]
    for host in (world["h1"], world["h2"]):
        worker = unit_state(farm, host, "worker")
        assert worker["active"] == "active" and worker["release"] == release, (host, worker)
    beat = unit_state(farm, world["h1"], "beat")
    assert beat["active"] == "active" and beat["release"] == release, beat
    other = unit_state(farm, world["h2"], "beat")
    assert other["active"] == "inactive" and other["enabled"] in ("disabled", "none"), other
    assert starts_of(farm, world["h2"], "beat") == 0


def test_setup_provisions_units_and_packages(world):
    farm, inv, h1, h2 = world["farm"], world["inv"], world["h1"], world["h2"]
    # redis-server is installed in the image; stopped and disabled on h2, setup starts it again.
    ssh(farm, h2, "systemctl disable --now redis-server.service")
    out = mlctl(inv, "test", "setup").stderr
    assert "processes: changed" in out, out
    for host in (h1, h2):
        assert ssh(farm, host, "systemctl is-active redis-server.service") == "active"
        assert ssh(farm, host, "systemctl is-enabled redis-server.service") == "enabled"
        # no release yet: units are there and enabled where meant, nothing runs
        assert unit_state(farm, host, "worker")["enabled"] == "enabled"
        assert unit_state(farm, host, "worker")["active"] == "inactive"
    assert unit_state(farm, h1, "beat")["enabled"] == "enabled"
    assert unit_state(farm, h2, "beat")["enabled"] == "disabled"
    assert unit_state(farm, h1, "clearsessions", "timer")["enabled"] == "enabled"
    assert unit_state(farm, h2, "clearsessions", "timer")["enabled"] == "disabled"
    again = mlctl(inv, "test", "setup").stderr
    assert "processes: ok" in again, again


def test_deploy_starts_processes_in_the_new_release(world):
    farm, inv = world["farm"], world["inv"]
    mlctl(inv, "test", "deploy", "--skip-tests")
    rid = current(farm, world["h1"])
    assert current(farm, world["h2"]) == rid
    assert_placed(world, rid)
    state = json.loads(ssh(farm, world["h1"], f"cat {D}/shared/media/worker.json"))
    assert state["env"] is True, state  # the shared .env reached the process
    assert state["state"] == f"/var/lib/{UNIT}worker", state
    world["v1"] = rid


def test_check_diag_status_monitor_show_processes(world):
    farm, inv, h2 = world["farm"], world["inv"], world["h2"]
    report = json.loads(mlctl(inv, "test", "check", "--json", check=False).stdout)
    for host, checks in report["hosts"].items():
        by_name = {c["name"]: c for c in checks}
        assert by_name["process-worker"]["status"] == "ok", (host, by_name["process-worker"])
        assert by_name["process-beat"]["status"] == "ok", (host, by_name["process-beat"])
        assert by_name["schedule-clearsessions"]["status"] == "ok", (host, by_name)
    diag = json.loads(mlctl(inv, "test", "diag", "--json").stdout)["hosts"]
    assert diag[world["h1"].address]["processes"]["beat"].startswith("active pid"), diag
    assert diag[h2.address]["processes"]["beat"] == "not here (inactive)", diag
    assert diag[h2.address]["processes"]["clearsessions"] == "not here (inactive)", diag
    assert diag[world["h1"].address]["processes"]["clearsessions"].startswith("last never"), diag

    ssh(farm, h2, f"systemctl stop {UNIT}worker.service")  # a process that should run and isn't
    bad = mlctl(inv, "test", "check", check=False)
    assert bad.returncode == 2, bad.stdout
    assert "worker is inactive" in bad.stdout, bad.stdout
    status = mlctl(inv, "test", "status", check=False)
    assert status.returncode == 2 and "worker inactive" in status.stdout, status.stdout
    monitor = mlctl(inv, "test", "monitor", "--once", check=False)
    assert monitor.returncode == 2 and "worker inactive" in monitor.stdout + monitor.stderr

    mlctl(inv, "test", "bounce", "--process", "worker")
    assert unit_state(farm, h2, "worker")["active"] == "active"
    assert mlctl(inv, "test", "check", check=False).returncode in (0, 1)


def test_a_job_taken_before_a_deploy_finishes(world):
    farm, inv, h1 = world["farm"], world["inv"], world["h1"]
    media = f"{D}/shared/media"
    ssh(farm, h1, f"echo 6 > {media}/queue/long.job && chown www-data: {media}/queue/long.job")
    deadline = time.monotonic() + 20
    while ssh(farm, h1, f"test -e {media}/queue/long.taken && echo yes || true") != "yes":
        assert time.monotonic() < deadline, "the worker never took the job"
        time.sleep(0.2)
    commit_file(world["repo"], "notes/templates/notes/marker.txt", "v2\n", "v2")
    mlctl(inv, "test", "deploy", "--skip-tests")  # restarts the worker while it works on the job
    result = json.loads(ssh(farm, h1, f"cat {media}/done/long.json"))
    assert result["release"] == world["v1"], result  # finished by the worker that took it
    v2 = current(farm, h1)
    assert v2 != world["v1"]
    assert_placed(world, v2)
    world["v2"] = v2


def test_rollback_puts_processes_back_on_the_old_release(world):
    mlctl(world["inv"], "test", "rollback", "--yes")
    assert current(world["farm"], world["h1"]) == world["v1"]
    assert_placed(world, world["v1"])


def test_rolling_deploy_keeps_beat_on_one_host(world):
    farm, inv = world["farm"], world["inv"]
    commit_file(world["repo"], "notes/templates/notes/marker.txt", "v3\n", "v3")
    mlctl(inv, "test", "deploy", "--skip-tests", "--set", "rolling.batch=1")
    v3 = current(farm, world["h1"])
    assert v3 not in (world["v1"], world["v2"])
    assert_placed(world, v3)


def test_failed_deploy_puts_processes_back(world):
    farm, inv, h1 = world["farm"], world["inv"], world["h1"]
    before = current(farm, h1)
    views = (world["repo"] / "notes" / "views.py").read_text()
    commit_file(
        world["repo"],
        "notes/views.py",
        views + "\n\ndef index(request):\n    raise RuntimeError('broken')\n",
        "broken",
    )
    failed = mlctl(inv, "test", "deploy", "--skip-tests", check=False)
    assert failed.returncode != 0, failed.stderr
    assert current(farm, h1) == before
    assert_placed(world, before)
    commit_file(world["repo"], "notes/views.py", views, "fixed")


def test_timer_runs_once_on_demand(world):
    farm, h1 = world["farm"], world["h1"]
    psql(
        farm, h1, "insert into django_session values ('expired-one', 'x', now() - interval '1 day')"
    )
    assert (
        psql(farm, h1, "select count(*) from django_session where session_key = 'expired-one'")
        == "1"
    )
    ssh(farm, h1, f"systemctl start {UNIT}clearsessions.service")  # oneshot: returns when done
    assert (
        psql(farm, h1, "select count(*) from django_session where session_key = 'expired-one'")
        == "0"
    )
    check = json.loads(mlctl(world["inv"], "test", "check", "--json", check=False).stdout)
    line = next(c for c in check["hosts"][h1.address] if c["name"] == "schedule-clearsessions")
    assert line["status"] == "ok" and "never" not in line["detail"], line  # last and next run


def test_a_failed_scheduled_run_warns(world, tmp_path):
    farm, h1 = world["farm"], world["h1"]
    data = yaml.safe_load(world["inv"].read_text())
    data["environments"]["test"]["schedule"]["clearsessions"][
        "command"
    ] = "manage.py no_such_command"
    broken = tmp_path / "environments.yaml"
    broken.write_text(yaml.safe_dump(data, sort_keys=False))
    mlctl(broken, "test", "setup")
    failed = farm.ssh(h1, f"systemctl start {UNIT}clearsessions.service")
    assert failed.returncode != 0
    check = json.loads(mlctl(broken, "test", "check", "--json", check=False).stdout)
    line = next(c for c in check["hosts"][h1.address] if c["name"] == "schedule-clearsessions")
    assert line["status"] == "warn" and "last run failed" in line["detail"], line
    mlctl(world["inv"], "test", "setup")  # the good command back


def test_a_package_that_cannot_be_installed_is_named(world, tmp_path):
    h1 = world["h1"]
    data = yaml.safe_load(world["inv"].read_text())
    data["environments"]["test"]["packages"] = ["redis-server", "mlctl-no-such-package"]
    broken = tmp_path / "environments.yaml"
    broken.write_text(yaml.safe_dump(data, sort_keys=False))
    p = mlctl(broken, "test", "setup", check=False)
    assert p.returncode != 0
    assert "cannot install mlctl-no-such-package (apt-get install failed)" in p.stderr, p.stderr
    assert h1.address in p.stderr, p.stderr
    assert healthz(h1.address)["status"] == "ok"  # still serving
