"""The nginx cutover on a real host, with a client requesting the site all along: a good deploy,
a release whose root page raises, a rollback to the slot still running, the new slot killed
during its gate, and setup moving a host from one gunicorn unit to two slots."""

from __future__ import annotations

import subprocess
import time

import pytest

from mlctl.commands import provision
from mlctl.config import inventory
from tests.hosts.farm import Farm, placed
from tests.hosts.fixtures import booted

from .helpers import D, commit_file, current, git, healthz, mlctl, mlctl_popen, new_project, ssh
from .load import Load
from .test_deploy import INDEX_ERROR, break_index

pytestmark = pytest.mark.hosts

UNIT = "gunicorn-djangoapp"
UPSTREAM = "/etc/nginx/mlctl/djangoapp.upstream.conf"


@pytest.fixture(scope="module")
def cutover_farm(tmp_path_factory):
    """A host of its own: the cases leave its slots, units and site as no other module expects
    (a single-unit host, a slot killed), so the shared farm's hosts stay as they were."""
    prefix, network, _ = placed("mlcut", "198.51.100.96/27", "")
    workdir = tmp_path_factory.mktemp("cutover-farm")
    yield from booted(Farm(1, workdir=workdir, prefix=prefix, network=network))


@pytest.fixture(scope="module")
def world(cutover_farm, tmp_path_factory):
    farm = cutover_farm
    repo, inv = new_project(farm, tmp_path_factory)
    h = farm.hosts[0]
    mlctl(inv, "test", "setup")
    mlctl(inv, "test", "deploy")
    return {"farm": farm, "repo": repo, "inv": inv, "h": h}


def sh(world, command: str) -> str:
    return ssh(world["farm"], world["h"], command)


def live_slot(world) -> str:
    return sh(world, f"sed -n 's/.*{UNIT}-\\([a-z]*\\)\\.sock.*/\\1/p' {UPSTREAM}")


def state(world, slot: str) -> str:
    r = world["farm"].ssh(world["h"], f"systemctl is-active {UNIT}@{slot}.service")
    return r.stdout.strip()


def main_pid(world, slot: str) -> str:
    return sh(world, f"systemctl show -p MainPID --value {UNIT}@{slot}.service")


def other(slot: str) -> str:
    return "green" if slot == "blue" else "blue"


def touch_template(repo, text: str) -> str:
    path = repo / "notes" / "templates" / "notes" / "base.html"
    body = path.read_text().replace("</body>", f"<!-- {text} --></body>", 1)
    return commit_file(repo, "notes/templates/notes/base.html", body, text)


def test_a_good_deploy_moves_nginx_to_the_other_slot_without_a_failed_request(world):
    before, old_slot = current(world["farm"], world["h"]), live_slot(world)
    touch_template(world["repo"], "good deploy")
    with Load(world["h"].address) as load:
        mlctl(world["inv"], "test", "deploy")
    new = current(world["farm"], world["h"])
    assert new != before
    assert not load.failed(), load.summary()
    assert load.releases()[-1] == new and set(load.releases()) <= {before, new}, load.releases()
    assert live_slot(world) == other(old_slot)
    # the slot left keeps running (cutover.keep_old) and is retired by a timer
    assert state(world, old_slot) == "active"
    timers = sh(world, "systemctl list-timers --all --no-legend")
    assert f"mlctl-retire-{UNIT}-{old_slot}.timer" in timers, timers
    assert sh(world, f"readlink {D}/slots/{other(old_slot)}") == f"../releases/{new}"
    world["good"], world["previous"] = new, before


def test_rollback_to_the_release_the_old_slot_still_runs_is_a_switch(world):
    slot, previous = live_slot(world), world["previous"]
    warm_pid = main_pid(world, other(slot))
    assert warm_pid != "0"
    with Load(world["h"].address) as load:
        mlctl(world["inv"], "test", "rollback", "--db", "code-only")
    assert not load.failed(), load.summary()
    assert load.releases()[-1] == previous, load.releases()
    assert live_slot(world) == other(slot)
    assert main_pid(world, other(slot)) == warm_pid  # switched to, not restarted
    assert current(world["farm"], world["h"]) == previous


def test_a_release_whose_root_page_raises_is_never_served(world):
    good, slot = current(world["farm"], world["h"]), live_slot(world)
    views = break_index(world["repo"])
    try:
        with Load(world["h"].address) as load:
            p = mlctl(world["inv"], "test", "deploy", check=False)
    finally:
        commit_file(world["repo"], "notes/views.py", views, "index fixed")
    assert p.returncode != 0 and p.stderr.strip().splitlines()[-1].endswith(INDEX_ERROR), p.stderr
    assert not load.failed(), load.summary()
    assert load.releases() == [good], load.releases()
    assert current(world["farm"], world["h"]) == good and live_slot(world) == slot
    assert state(world, other(slot)) != "active"  # the refused release does not hold memory
    assert healthz(world["h"].address)["release"] == good


SLOW_START = "\nimport time\n\ntime.sleep(8)  # a slow start: the test kills the slot meanwhile\n"


def test_killing_the_new_slot_during_its_gate_leaves_the_old_one_serving(world):
    serving, slot = current(world["farm"], world["h"]), live_slot(world)
    wsgi = (world["repo"] / "djangoapp" / "wsgi.py").read_text()
    commit_file(world["repo"], "djangoapp/wsgi.py", wsgi + SLOW_START, "slow start")
    idle = other(slot)
    try:
        with Load(world["h"].address) as load:
            p = mlctl_popen(world["inv"], "test", "deploy", MLCTL_CONFIRM="live")
            killed = kill_when_starting(world, idle, p)
            out, err = p.communicate(timeout=600)
    finally:
        commit_file(world["repo"], "djangoapp/wsgi.py", wsgi, "fast start")
    assert killed, f"{UNIT}@{idle} never started: {err}"
    assert not load.failed(), load.summary()
    if p.returncode == 0:  # systemd restarted the slot and it passed the gate after all
        assert load.releases()[-1] == current(world["farm"], world["h"]) != serving
    else:
        assert current(world["farm"], world["h"]) == serving and live_slot(world) == slot, err
        assert load.releases() == [serving], load.releases()


def kill_when_starting(world, slot: str, deploy: subprocess.Popen) -> bool:
    """SIGKILL the slot's gunicorn once it is starting (the gate is waiting for it)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and deploy.poll() is None:
        if state(world, slot) in ("activating", "active"):
            sh(world, f"sudo systemctl kill -s KILL {UNIT}@{slot}.service")
            return True
        time.sleep(0.2)
    return False


# ---------------------------------------------------------------- one unit -> two slots

# The units and site as mlctl wrote them when a project had one gunicorn unit.
SINGLE_SOCKET = """[Unit]
Description=gunicorn socket for {project}
[Socket]
ListenStream=/run/{unit}.sock
SocketUser={app_user}
SocketGroup={app_user}
SocketMode=0660
[Install]
WantedBy=sockets.target
"""
SINGLE_SERVICE = """[Unit]
Description=gunicorn for {project}
Requires={unit}.socket
After=network.target
[Service]
Type=notify
NotifyAccess=main
User={app_user}
Group={app_user}
WorkingDirectory={deploy_to}/current
RuntimeDirectory={unit}
Environment=XDG_RUNTIME_DIR=/run/{unit}
Environment=DJANGO_SETTINGS_MODULE={settings_module}
ExecStart={deploy_to}/current/.venv/bin/gunicorn --workers 2 --preload --access-logfile - {wsgi}
KillMode=mixed
TimeoutStopSec=15
Restart=on-failure
[Install]
WantedBy=multi-user.target
"""
SINGLE_SITE = """upstream {unit} {{
    server unix:/run/{unit}.sock fail_timeout=0;
}}
server {{
    listen 80 default_server;
    server_name {server_name};
    location /static/ {{
        alias {deploy_to}/current/staticfiles/;
    }}
    location / {{
        proxy_set_header Host $host;
        proxy_pass http://{unit};
    }}
}}
"""


def put(world, path: str, text: str) -> None:
    argv = world["farm"].ssh_argv(world["h"], f"tee {path} >/dev/null")
    subprocess.run(argv, input=text, text=True, check=True, capture_output=True, timeout=60)


def make_single_unit_host(world) -> None:
    """The host as an earlier mlctl left it: one unit serving `current`, no slots."""
    cfg = inventory.resolve(inventory.load(world["inv"]), "test")
    v = provision.template_values(cfg)
    put(world, f"/etc/systemd/system/{UNIT}.socket", SINGLE_SOCKET.format(**v))
    put(world, f"/etc/systemd/system/{UNIT}.service", SINGLE_SERVICE.format(**v))
    sh(world, f"sudo systemctl daemon-reload && sudo systemctl enable --now --quiet {UNIT}.socket")
    put(world, "/etc/nginx/sites-available/djangoapp", SINGLE_SITE.format(**v))
    sh(world, "sudo nginx -t -q && sudo systemctl reload nginx")
    for slot in ("blue", "green"):
        sh(
            world,
            f"sudo systemctl disable --now --quiet {UNIT}@{slot}.socket {UNIT}@{slot}.service",
        )
    sh(world, f"sudo rm -rf {D}/slots /etc/nginx/mlctl /etc/systemd/system/{UNIT}@.*")
    sh(world, "sudo systemctl daemon-reload")


def test_setup_moves_a_single_unit_host_to_two_slots_with_the_site_up(world):
    serving = current(world["farm"], world["h"])
    make_single_unit_host(world)
    assert healthz(world["h"].address)["release"] == serving
    refused = mlctl(world["inv"], "test", "deploy", check=False)
    last = refused.stderr.strip().splitlines()[-1]
    assert refused.returncode != 0 and "run `mlctl test setup` first" in last, refused.stderr
    with Load(world["h"].address) as load:
        mlctl(world["inv"], "test", "setup")
    assert not load.failed(), load.summary()
    assert load.releases() == [serving], load.releases()
    assert live_slot(world) == "blue" and state(world, "blue") == "active"
    gone = world["farm"].ssh(world["h"], f"ls /etc/systemd/system/{UNIT}.service")
    assert gone.returncode != 0
    assert world["farm"].ssh(world["h"], f"systemctl is-active {UNIT}.socket").stdout.strip() in (
        "inactive",
        "failed",
    )
    again = mlctl(world["inv"], "test", "setup").stderr
    assert "changed" not in again, again
    touch_template(world["repo"], "after the move")
    mlctl(world["inv"], "test", "deploy")
    assert live_slot(world) == "green"
    assert healthz(world["h"].address)["release"].endswith(
        git(world["repo"], "rev-parse", "HEAD")[:12]
    )


def test_cutover_restart_restarts_the_live_slot_in_place(world):
    slot, pid = live_slot(world), main_pid(world, live_slot(world))
    touch_template(world["repo"], "restart in place")
    mlctl(world["inv"], "test", "deploy", "--set", "cutover.mode=restart")
    rid = current(world["farm"], world["h"])
    assert live_slot(world) == slot and main_pid(world, slot) != pid
    assert sh(world, f"readlink {D}/slots/{slot}") == f"../releases/{rid}"
    assert healthz(world["h"].address)["release"] == rid
