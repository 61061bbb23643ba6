"""Celery worker and beat of the cookiecutter-django corpus project on two Debian 13 hosts, with
Redis from `packages:`, as its owner would run them with mlctl.

`mlctl init` proposes the worker and beat (commented out: their broker must answer first) and
`packages: [redis-server]`; the owner's edit is to uncomment them (the settings' REDIS_URL
defaults to a Redis on localhost, which the package provides on each host). The project gets one
task of the test's (it sleeps, then answers) so that a task can be running while a deploy
restarts the worker. Deploys pass `--skip-tests` (see test_corpus.py).

203.0.113.64/27 (hosts .75, .76) is free while this module runs: 203.0.113.0/24 is the crash
test's farm, booted and gone within test_hosts.py.
"""

from __future__ import annotations

import json
import re
import shlex
import time

import pytest

from mlctl.commands.db import load_env
from tests.hosts.farm import Farm, placed
from tests.hosts.fixtures import booted

from .helpers import ssh
from .test_corpus import PROJECTS, Timings, adopt, commit, fill_inventory, get, mlctl, release

pytestmark = pytest.mark.hosts

NAME = "cookie_shop"
D = f"/srv/{NAME}"
UNIT = f"mlctl-{NAME}-"
TASK = '''

@shared_task()
def sleep_then_answer(seconds, answer):
    """The processes test's task: busy for `seconds`, then its answer and when it ran."""
    import time

    start = time.time()
    time.sleep(seconds)
    return {"answer": answer, "start": start, "end": time.time()}
'''


def uncomment_processes(text: str) -> str:
    """The owner's edit: init's commented `processes:` and `packages:` lines switched on."""
    lines = text.splitlines(keepends=True)
    out, inside = [], False
    for line in lines:
        if line.startswith("  # processes:") or line.startswith("  # packages:"):
            inside = line.startswith("  # processes:")
            out.append("  " + line[4:])
        elif inside and line.startswith("  #   "):
            out.append("    " + line[6:])
        else:
            inside = False
            out.append(line)
    return "".join(out)


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    prefix, network, _ = placed("mlcel", "203.0.113.64/27", "")
    workdir = tmp_path_factory.mktemp("farm-celery")
    farm = Farm(2, workdir=workdir, prefix=prefix, network=network, image="debian13")
    for hosts in booted(farm):
        parent = tmp_path_factory.mktemp("celery")
        timings = Timings(f"{NAME}-processes")
        project = adopt(NAME, parent, timings)
        inventory = project / "environments.yaml"
        text = inventory.read_text()
        assert "  # processes:\n" in text and "  # packages: [redis-server]\n" in text, text
        inventory.write_text(uncomment_processes(text))
        fill_inventory(inventory, hosts, PROJECTS[NAME]["values"])
        tasks = project / NAME / "users" / "tasks.py"
        tasks.write_text(tasks.read_text() + TASK)
        commit(project, "Deploy with mlctl, with the worker and beat")
        yield {"farm": hosts, "project": project, "timings": timings, "h1": hosts.hosts[0],
               "h2": hosts.hosts[1]}  # fmt: skip


def state(farm, host, name: str) -> dict:
    props = ssh(
        farm,
        host,
        "systemctl show --timestamp=unix -p ActiveState -p UnitFileState -p MainPID "
        f"-p ExecMainStartTimestamp {UNIT}{name}.service",
    )
    found = dict(line.split("=", 1) for line in props.splitlines() if "=" in line)
    pid = int(found.get("MainPID") or 0)
    cwd = ssh(farm, host, f"readlink /proc/{pid}/cwd") if pid else ""
    started = found.get("ExecMainStartTimestamp", "")
    return {
        "active": found.get("ActiveState"),
        "enabled": found.get("UnitFileState"),
        "release": cwd.rsplit("/", 1)[-1] or None,
        "started": int(started[1:]) if started.startswith("@") else None,
    }


def starts_on(farm, host, name: str) -> int:
    out = ssh(farm, host, f"journalctl -u {UNIT}{name}.service -o cat | grep -c '^Started' || true")
    return int(out or 0)


def assert_placed(shop, rid: str) -> None:
    """worker on both hosts and beat on h1 only, in `rid`; beat never started on h2."""
    farm = shop["farm"]
    for host in (shop["h1"], shop["h2"]):
        assert release(farm, host, NAME) == rid, host
        worker = state(farm, host, "worker")
        assert (worker["active"], worker["release"]) == ("active", rid), (host, worker)
    beat = state(farm, shop["h1"], "beat")
    assert (beat["active"], beat["release"]) == ("active", rid), beat
    assert state(farm, shop["h2"], "beat")["active"] == "inactive"
    assert starts_on(farm, shop["h2"], "beat") == 0


def in_release(code: str) -> str:
    """Python run as the app user in the current release with its .env, as the units run it."""
    env = load_env("./.env").render()
    inner = (
        f"cd {D}/current && {env} && exec .venv/bin/python manage.py shell -c {shlex.quote(code)}"
    )
    return f"runuser -u www-data -- sh -c {shlex.quote(inner)}"


def celery_ready(farm, host) -> None:
    """The worker answers a ping (it has connected to its broker and is consuming)."""
    ping = ("from config.celery_app import app; "
            "print(len(app.control.inspect(timeout=2).ping() or {}))")  # fmt: skip
    deadline = time.monotonic() + 60
    while ssh(farm, host, in_release(ping)).splitlines()[-1] == "0":
        assert time.monotonic() < deadline, "the worker never answered a ping"
        time.sleep(1)


def test_worker_and_beat_through_deploy_rollback_and_a_rolling_deploy(shop):
    farm, project, timings = shop["farm"], shop["project"], shop["timings"]
    h1 = shop["h1"]
    setup = timings.run("setup", mlctl, project, "test", "setup").stderr
    assert "processes: changed" in setup, setup
    timings.run("deploy", mlctl, project, "test", "deploy", "--skip-tests")
    v1 = release(farm, h1, NAME)
    assert_placed(shop, v1)
    assert get(f"http://{h1.address}/")[0] == 200
    check = json.loads(mlctl(project, "test", "check", "--json", check=False).stdout)
    for host, checks in check["hosts"].items():
        names = {c["name"]: c["status"] for c in checks}
        assert names["process-worker"] == "ok" and names["process-beat"] == "ok", (host, checks)

    # A task running while a deploy restarts the worker: its stop waits for the task.
    celery_ready(farm, h1)
    queue = ("from cookie_shop.users.tasks import sleep_then_answer as t; "
             "print(t.delay(15, 'done').id)")  # fmt: skip
    task_id = ssh(farm, h1, in_release(queue)).splitlines()[-1].strip()
    assert re.fullmatch(r"[0-9a-f-]{36}", task_id), task_id
    time.sleep(2)  # taken by the worker
    (project / NAME / "templates" / "pages" / "about.html").write_text(
        "{% extends 'base.html' %}\n"
    )
    commit(project, "a second release")
    timings.run("deploy change", mlctl, project, "test", "deploy", "--skip-tests")
    v2 = release(farm, h1, NAME)
    assert v2 != v1
    result_code = (f"from celery.result import AsyncResult; import json; "
                   f"print(json.dumps(AsyncResult({task_id!r}).get(timeout=60)))")  # fmt: skip
    result = json.loads(ssh(farm, h1, in_release(result_code)).splitlines()[-1])
    assert result["answer"] == "done", result
    new_worker = state(farm, h1, "worker")
    # The old worker finished the task before it exited; the new one started after that.
    assert new_worker["started"] >= int(result["end"]), (new_worker, result)
    assert_placed(shop, v2)

    timings.run("rollback", mlctl, project, "test", "rollback", "--yes")
    assert_placed(shop, v1)

    (project / NAME / "templates" / "pages" / "about.html").write_text(
        "{% extends 'base.html' %}\n<!-- v3 -->\n"
    )
    commit(project, "a third release")
    timings.run("rolling deploy", mlctl, project, "test", "deploy", "--skip-tests",
                "--set", "rolling.batch=1")  # fmt: skip
    v3 = release(farm, h1, NAME)
    assert v3 not in (v1, v2)
    assert_placed(shop, v3)


def test_the_clearsessions_timer_runs_once_on_demand(shop):
    farm, h1, h2 = shop["farm"], shop["h1"], shop["h2"]
    assert ssh(farm, h1, f"systemctl is-active {UNIT}clearsessions.timer") == "active"
    assert farm.ssh(h2, f"systemctl is-active {UNIT}clearsessions.timer").returncode != 0
    seed = ("from django.contrib.sessions.models import Session; "
            "from django.utils import timezone; import datetime; "
            "Session.objects.create(session_key='expired-1', session_data='x', "
            "expire_date=timezone.now() - datetime.timedelta(days=1)); "
            "print(Session.objects.filter(session_key='expired-1').count())")  # fmt: skip
    assert ssh(farm, h1, in_release(seed)).splitlines()[-1] == "1"
    ssh(farm, h1, f"systemctl start {UNIT}clearsessions.service")  # oneshot: returns when done
    count = ("from django.contrib.sessions.models import Session; "
             "print(Session.objects.filter(session_key='expired-1').count())")  # fmt: skip
    assert ssh(farm, h1, in_release(count)).splitlines()[-1] == "0"
    diag = json.loads(mlctl(shop["project"], "test", "diag", "--json").stdout)["hosts"]
    assert " ok, next " in diag[h1.address]["processes"]["clearsessions"], diag
