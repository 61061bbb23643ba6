"""processes:, schedule: and packages: as pure functions: which hosts run what, the units and
commands as exact strings, the settings' validation and setup's step."""

from __future__ import annotations

import textwrap

import pytest

from mlctl.commands import packages as pkg
from mlctl.commands import process_setup as ps
from mlctl.commands import processes as proc
from mlctl.commands import provision as pv
from mlctl.commands import provision_plan as planner
from mlctl.commands.db import load_env
from mlctl.config import inventory
from mlctl.core.errors import InventoryError
from tests.unit.conftest import BASE

HOSTS = ["w1.example.internal", "w2.example.internal", "w3.example.internal"]
ENV_LINE = load_env("./.env").render()
VALUES = {
    "project": "shop",
    "deploy_to": "/srv/shop",
    "app_user": "www-data",
    "settings_module": "config.settings.production",
    "after": " redis-server.service",
}


def systemd_escaped(text: str) -> str:
    """What systemd_word must do to the .env line (written out, not computed the same way)."""
    out = ""
    for ch in text:
        out += {"\\": "\\\\", '"': '\\"', "%": "%%", "$": "$$"}.get(ch, ch)
    return out


# ---------------------------------------------------------------- which hosts run what


@pytest.mark.parametrize(
    ("hosts", "expected"),
    [
        ("all", HOSTS),
        (1, HOSTS[:1]),
        (2, HOSTS[:2]),
        (5, HOSTS),
        (0, []),
        ([HOSTS[2], HOSTS[0]], [HOSTS[0], HOSTS[2]]),  # inventory order, whatever the list's
        (["elsewhere"], []),
    ],
)
def test_placement(hosts, expected):
    assert proc.placement(hosts, HOSTS) == expected


def test_a_single_host_process_is_always_the_first_hosts():
    settings = {
        "hosts": HOSTS,
        "processes": {
            "worker": {"command": "celery worker"},
            "beat": {"command": "celery beat", "hosts": 1},
        },
        "schedule": {"clearsessions": {"command": "manage.py clearsessions"}},
    }
    for host in HOSTS:
        here, elsewhere = proc.layout_of(settings, host)
        names = [p.name for p in here]
        if host == HOSTS[0]:
            assert names == ["beat", "worker", "clearsessions"]
        else:
            assert names == ["worker"]
            assert [p.name for p in elsewhere] == ["beat", "clearsessions"]


# ---------------------------------------------------------------- commands and units


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        ("celery -A config.celery_app worker -l info",
         ["/srv/shop/current/.venv/bin/celery", "-A", "config.celery_app", "worker", "-l", "info"]),
        ("manage.py clearsessions",
         ["/srv/shop/current/.venv/bin/python", "manage.py", "clearsessions"]),
        ("python -m celery beat", ["/srv/shop/current/.venv/bin/python", "-m", "celery", "beat"]),
        ("bin/run-worker 'two words'", ["bin/run-worker", "two words"]),
        ("/usr/bin/env true", ["/usr/bin/env", "true"]),
    ],
)  # fmt: skip
def test_argv_finds_the_program_in_the_release(command, argv):
    assert proc.argv_of(command, "/srv/shop/current") == argv


def test_the_unit_runs_the_command_after_the_env_export():
    got = proc.exec_start("celery -A 'my app' worker", "/srv/shop/current")
    script = f"{ENV_LINE} && exec /srv/shop/current/.venv/bin/celery -A 'my app' worker"
    assert got == '/bin/sh -c "' + systemd_escaped(script) + '"'


def test_systemd_word_escapes():
    assert proc.systemd_word('a "b" \\ $HOME 50%') == '"a \\"b\\" \\\\ $$HOME 50%%"'


def test_process_service_unit():
    p = proc.Process("worker", "celery -A config.celery_app worker", "all", stop_timeout=60)
    (path, text), *_ = proc.unit_files(p, VALUES).items()
    assert path == "/etc/systemd/system/mlctl-shop-worker.service"
    lines = text.splitlines()
    for line in (
        "# mlctl: project=shop entry=worker",
        "After=network.target redis-server.service",
        "ConditionPathExists=/srv/shop/current",
        "User=www-data",
        "Group=www-data",
        "WorkingDirectory=/srv/shop/current",
        "StateDirectory=mlctl-shop-worker",
        "Environment=DJANGO_SETTINGS_MODULE=config.settings.production",
        "ExecStart=" + proc.exec_start("celery -A config.celery_app worker", "/srv/shop/current"),
        "KillSignal=SIGTERM",
        "KillMode=mixed",
        "TimeoutStopSec=60",
        "Restart=on-failure",
        "WantedBy=multi-user.target",
    ):
        assert line in lines, line


def test_schedule_timer_and_service():
    p = proc.Process("clearsessions", "manage.py clearsessions", 1, "schedule", on="Mon 03:00")
    files = proc.unit_files(p, VALUES)
    base = "/etc/systemd/system/mlctl-shop-clearsessions"
    assert sorted(files) == [f"{base}.service", f"{base}.timer"]
    service = files[f"{base}.service"].splitlines()
    assert "Type=oneshot" in service and "[Install]" not in service
    assert "ExecStart=" + proc.exec_start("manage.py clearsessions", "/srv/shop/current") in service
    timer = files[f"{base}.timer"].splitlines()
    for line in ("OnCalendar=Mon 03:00", "Persistent=true", "Unit=mlctl-shop-clearsessions.service",
                 "WantedBy=timers.target"):  # fmt: skip
        assert line in timer, line


def test_unit_commands():
    units = ["mlctl-shop-worker.service", "mlctl-shop-x.timer"]
    assert proc.enable(units, "/srv/shop/current").render() == (
        "set -e; systemctl daemon-reload ; systemctl enable mlctl-shop-worker.service "
        "mlctl-shop-x.timer ; systemctl restart mlctl-shop-x.timer ; if [ -e /srv/shop/current ]; "
        "then systemctl restart mlctl-shop-worker.service ; fi ;"
    )
    assert proc.disable(units[:1]).render() == (
        "systemctl disable --now mlctl-shop-worker.service 2>/dev/null || true"
    )
    assert proc.restart(units[:1]).render() == (
        "systemctl reset-failed mlctl-shop-worker.service 2>/dev/null || true; "
        "systemctl restart mlctl-shop-worker.service"
    )
    assert proc.unit_states(units[:1]).render() == (
        'for u in mlctl-shop-worker.service ; do e=$(systemctl is-enabled "$u" 2>/dev/null); '
        'a=$(systemctl is-active "$u" 2>/dev/null); echo "unit $u ${e:-none} ${a:-none}"; done;'
    )


def test_package_commands():
    assert pkg.survey(["redis-server"]).render() == (
        "for p in redis-server ; do s=$(dpkg-query -W -f='${db:Status-Status}' \"$p\" "
        '2>/dev/null); echo "pkg $p ${s:-missing}"; done;'
    )
    assert pkg.install(["redis-server", "libpq5"]).render() == (
        "env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "
        "redis-server libpq5"
    )
    assert pkg.start_services(["redis-server"]).render() == (
        "for p in redis-server ; do for d in /lib/systemd/system /usr/lib/systemd/system; do "
        'if [ -e "$d/$p.service" ]; then systemctl enable --now "$p.service" || exit 1; '
        "break; fi; done; done"
    )
    assert pkg.refusal(["a", "b"]) == "cannot install a, b (apt-get install failed)"


def test_parse_states():
    text = "pkg redis-server installed\nunit a.service enabled active\nunit b.timer none none\n"
    assert proc.parse_states(text) == {
        "redis-server": ("installed", ""),
        "a.service": ("enabled", "active"),
        "b.timer": ("none", "none"),
    }


def test_owned_files_are_found_by_their_marker_line():
    assert ps.owned_files("shop")[1].render() == "'^# mlctl: project=shop entry='"
    assert (
        "mlctl: project=shop entry=worker"
        in proc.unit_files(proc.Process("worker", "x", "all"), VALUES)[
            "/etc/systemd/system/mlctl-shop-worker.service"
        ]
    )


# ---------------------------------------------------------------- settings


PROCS = """\
processes:
  worker: {command: "celery -A config.celery_app worker", hosts: all}
  beat: {command: "celery -A config.celery_app beat", hosts: 1, stop_timeout: 60}
schedule:
  clearsessions: {command: "manage.py clearsessions", on: daily}
packages: [redis-server]
"""


def live_with(write_inventory, extra: str):
    """The live environment (two hosts) with `extra` settings."""
    anchor = "    allowed_users: [alice]\n"
    text = BASE.replace(anchor, anchor + textwrap.indent(extra, "    "))
    return inventory.resolve(inventory.load(write_inventory(text)), "live")


def test_settings_resolve(write_inventory):
    cfg = live_with(write_inventory, PROCS)
    assert cfg.processes["beat"] == {
        "command": "celery -A config.celery_app beat",
        "hosts": 1,
        "stop_timeout": 60,
    }
    assert cfg.packages == ["redis-server"]
    assert [p.name for p in proc.declared(cfg.settings)] == ["beat", "worker", "clearsessions"]
    beat = proc.declared(cfg.settings)[0]
    assert (beat.stop_timeout, proc.placement(beat.hosts, cfg.hosts)) == (
        60,
        ["w1.example.internal"],
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("processes: {worker: {command: x, host: all}}", "processes.worker.host: unknown key"),
        ("processes: {worker: {command: x, hosts: 3}}", "3: the environment has 2 host(s)"),
        ("processes: {worker: {command: x, hosts: 0}}", "0: the environment has 2 host(s)"),
        ("processes: {worker: {command: x, hosts: [w9]}}", "'w9' is not one of the environment"),
        ("processes: {worker: {command: x, hosts: some}}", "'some': expected all, a count"),
        ("processes: {worker: {hosts: all}}", "processes.worker.command: a command is required"),
        ("processes: {worker: {command: \"a 'b\"}}", "worker.command: a command is required"),
        ("processes: {web: {command: x}}", "'web': use a-z"),
        ('processes: {w: {command: "echo \'a\\nb\'"}}', "processes.w.command: must be one line"),
        ("processes: {Worker: {command: x}}", "'Worker': use a-z"),
        ("processes: {worker: {command: x, stop_timeout: 0}}", "stop_timeout: must be positive"),
        ("schedule: {c: {command: x, on: \"daily; rm\"}}", "schedule.c.on: 'daily; rm': use"),
        ("schedule: {c: {command: x, on: \"50%\"}}", "schedule.c.on: '50%'"),
        ("packages: [Redis_Server]", "'Redis_Server' is not a Debian package name"),
        ("processes: {x: {command: a}}\nschedule: {x: {command: b}}", "x: a process has that name"),
    ],
)  # fmt: skip
def test_bad_settings_are_named(write_inventory, extra, message):
    with pytest.raises(InventoryError) as e:
        live_with(write_inventory, extra + "\n")
    assert message in str(e.value)


# ---------------------------------------------------------------- setup's step


def facts(host: str, processes: str, sums: dict | None = None) -> planner.HostFacts:
    return planner.HostFacts(host=host, address=host, sums=sums or {}, processes=processes)


def written(cfg) -> dict:
    return {path: planner.digest(text) for path, text in ps.wanted_files(cfg).items()}


def test_step_on_a_bare_host(write_inventory):
    cfg = live_with(write_inventory, PROCS)
    step = ps.step(facts("w2.example.internal", "pkg redis-server missing\n"), cfg)
    labels = [a.label for a in step.actions]
    assert step.changed and labels == [
        "install packages",
        "start package services",
        "check calendar clearsessions",
        "write /etc/systemd/system/mlctl-app-beat.service",
        "write /etc/systemd/system/mlctl-app-worker.service",
        "write /etc/systemd/system/mlctl-app-clearsessions.service",
        "write /etc/systemd/system/mlctl-app-clearsessions.timer",
        "enable processes",
        "disable processes not meant here",
    ]
    install = step.actions[0]
    assert install.refusal == "cannot install redis-server (apt-get install failed)"
    assert step.actions[2].refusal == (
        "schedule.clearsessions.on: 'daily' is not a systemd calendar expression"
    )
    assert step.actions[2].cmd.render() == "systemd-analyze calendar daily >/dev/null 2>&1"
    assert step.actions[-2].cmd == proc.enable(["mlctl-app-worker.service"], "/srv/app/current")
    assert step.actions[-1].cmd == proc.disable(
        ["mlctl-app-beat.service", "mlctl-app-clearsessions.timer"]
    )


def test_step_on_a_provisioned_host_is_ok(write_inventory):
    cfg = live_with(write_inventory, PROCS)
    found = "\n".join(
        [
            "pkg redis-server installed",
            "unit redis-server.service enabled active",
            "unit mlctl-app-beat.service enabled active",
            "unit mlctl-app-worker.service enabled active",
            "unit mlctl-app-clearsessions.timer enabled active",
            "current yes",
            *[f"file {p}" for p in ps.wanted_files(cfg)],
        ]
    )
    step = ps.step(facts("w1.example.internal", found, written(cfg)), cfg)
    assert (step.changed, step.actions) == (False, ())


def test_step_restarts_a_stopped_process_and_stops_a_stray_one(write_inventory):
    cfg = live_with(write_inventory, PROCS)
    found = "\n".join(
        [
            "pkg redis-server installed",
            "unit redis-server.service disabled inactive",
            "unit mlctl-app-beat.service enabled active",  # beat is meant for w1 only
            "unit mlctl-app-worker.service enabled failed",
            "unit mlctl-app-clearsessions.timer disabled inactive",
            "current yes",
            "file /etc/systemd/system/mlctl-app-gone.service",
            *[f"file {p}" for p in ps.wanted_files(cfg)],
        ]
    )
    step = ps.step(facts("w2.example.internal", found, written(cfg)), cfg)
    assert [a.label for a in step.actions] == [
        "start package services",
        "remove old units",
        "enable processes",
        "disable processes not meant here",
    ]
    assert step.actions[1].cmd.render() == (
        "set -e; systemctl disable --now mlctl-app-gone.service 2>/dev/null || true ; "
        "rm -f /etc/systemd/system/mlctl-app-gone.service ; systemctl daemon-reload ;"
    )


def test_no_release_yet_needs_no_start(write_inventory):
    cfg = live_with(write_inventory, "processes: {worker: {command: x}}\n")
    found = "unit mlctl-app-worker.service enabled inactive\n" + "".join(
        f"file {p}\n" for p in ps.wanted_files(cfg)
    )
    assert not ps.step(facts("w1.example.internal", found, written(cfg)), cfg).changed


def test_the_survey_reads_the_step_s_facts(write_inventory):
    cfg = live_with(write_inventory, PROCS)
    survey = pv.survey(cfg, "app", "app").render()
    assert "@@mlctl-fact processes" in survey
    assert ps.survey(cfg).render() in survey
    assert "/etc/systemd/system/mlctl-app-worker.service" in survey  # its sum is read too


def test_without_processes_the_step_is_ok(write_inventory):
    cfg = live_with(write_inventory, "")
    assert ps.step(facts("w1.example.internal", ""), cfg) == planner.Step("processes", False, ())


def test_a_stopped_timer_is_started_even_without_a_release(write_inventory):
    cfg = live_with(write_inventory, 'schedule: {c: {command: "manage.py clearsessions"}}\n')
    found = "unit mlctl-app-c.timer enabled inactive\n" + "".join(
        f"file {p}\n" for p in ps.wanted_files(cfg)
    )
    step = ps.step(facts("w1.example.internal", found, written(cfg)), cfg)
    assert [a.cmd.render() for a in step.actions] == [
        "set -e; systemctl daemon-reload ; systemctl enable mlctl-app-c.timer ; "
        "systemctl restart mlctl-app-c.timer ;"
    ]
