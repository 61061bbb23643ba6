"""The processes' facts judged (check, diag, status, monitor) and what init proposes: pure."""

from __future__ import annotations

import time

from mlctl.project import processes_found as found
from mlctl.tasks import diag, monitor, process_checks
from mlctl.tasks.judges import FAIL, OK, WARN, Check

H1, H2 = "w1.example.internal", "w2.example.internal"
SETTINGS = {
    "hosts": [H1, H2],
    "processes": {"worker": {"command": "w"}, "beat": {"command": "b", "hosts": 1}},
    "schedule": {"clearsessions": {"command": "manage.py clearsessions"}},
}
RID = "20261201120000-abcdef1"


def worker(active="active", release=RID, **extra) -> dict:
    return {"kind": "process", "unit": "mlctl-app-worker.service", "active": active,
            "sub": "running" if active == "active" else "dead", "enabled": "enabled",
            "pid": 42 if active == "active" else None, "release": release, **extra}  # fmt: skip


def timer(active="active", result="success", last=1764590400, **extra) -> dict:
    return {"kind": "schedule", "unit": "mlctl-app-clearsessions.service", "active": "inactive",
            "timer": {"active": active, "enabled": "enabled"}, "result": result, "status": "0",
            "last": last, "ended": last, "next": 1764676800, **extra}  # fmt: skip


def host_facts(host: str, **entries) -> dict:
    facts = {"release": {"current": RID, "exists": True}, "processes": {"entries": entries}}
    return process_checks.placed(facts, SETTINGS, host)


def test_placed_names_the_entries_meant_for_the_host():
    assert host_facts(H1)["processes"]["meant"] == ["beat", "worker", "clearsessions"]
    assert host_facts(H2)["processes"]["meant"] == ["worker"]


def test_checks_of_a_healthy_host():
    facts = host_facts(
        H1, worker=worker(), beat=worker(unit="mlctl-app-beat.service"), clearsessions=timer()
    )
    checks = process_checks.checks(facts)
    assert [(c.name, c.status) for c in checks] == [
        ("process-beat", OK),
        ("schedule-clearsessions", OK),
        ("process-worker", OK),
    ]
    assert checks[2].detail == f"worker: active (running), pid 42 in {RID}"
    assert checks[1].detail.startswith("last ") and " ok, next " in checks[1].detail


def test_a_process_that_should_run_and_does_not_fails():
    facts = host_facts(H2, worker=worker("failed"), beat=worker("inactive", None))
    by_name = {c.name: c for c in process_checks.checks(facts)}
    assert by_name["process-worker"] == Check(
        "process-worker",
        FAIL,
        "worker is failed (dead), enabled: enabled; see journalctl -u mlctl-app-worker.service",
    )
    assert by_name["process-beat"].status == OK  # not meant for H2, and not running
    assert process_checks.troubles(facts) == ["worker failed"]


def test_a_single_host_process_running_elsewhere_fails():
    facts = host_facts(H2, worker=worker(), beat=worker())
    by_name = {c.name: c for c in process_checks.checks(facts)}
    assert by_name["process-beat"].status == FAIL
    assert "not meant for this host" in by_name["process-beat"].detail
    assert process_checks.troubles(facts) == ["beat runs here, not meant for this host"]


def test_an_old_release_and_no_release():
    old = host_facts(H2, worker=worker(release="20261130120000-1234567"))
    assert process_checks.checks(old)[0].status == WARN
    none = process_checks.placed(
        {"release": {"current": None}, "processes": {"entries": {"worker": worker("inactive")}}},
        SETTINGS,
        H2,
    )
    assert process_checks.checks(none)[0] == Check("process-worker", WARN, "worker: no release yet")
    assert process_checks.troubles(none) == []


def test_a_failed_last_run_warns_and_a_stopped_timer_too():
    failed = host_facts(H1, clearsessions=timer(result="exit-code", status="1"))
    check = process_checks.checks(failed)[0]
    assert check.status == WARN and check.detail.startswith(
        "clearsessions: last run failed (exit-code, exit 1) at "
    )
    stopped = host_facts(H1, clearsessions=timer(active="inactive"))
    assert process_checks.checks(stopped)[0].detail == "clearsessions: timer inactive (run setup)"
    never = host_facts(H1, clearsessions=timer(last=None, result=""))
    assert process_checks.checks(never)[0].detail.startswith("last never, next ")


def test_diag_status_and_monitor_show_them():
    facts = host_facts(H2, worker=worker("inactive", None), beat=worker("inactive", None))
    assert process_checks.diag_field(facts) == {"beat": "not here (inactive)", "worker": "inactive"}
    facts["site"] = {"ok": True, "status": 200, "results": []}
    text, healthy = diag.status_line(H2, facts, 200, now=0)
    assert not healthy and text.endswith("health ok; worker inactive")
    up = host_facts(H1, worker=worker(), beat=worker(), clearsessions=timer())
    up["site"] = facts["site"]
    text, healthy = diag.status_line(H1, up, 200, now=0)
    assert healthy and text.endswith("health ok; up: beat, worker")
    alerts, metrics = monitor.evaluate(H2, facts, {"thresholds": {}, "health": {}})
    assert [(a.alert, a.detail) for a in alerts if a.alert == "process"] == [
        ("process", "worker inactive")
    ]
    assert metrics["processes_down"] == 1


def test_unit_times_read_as_epochs(monkeypatch):
    from mlctl.remote import probe_app

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        assert probe_app.epoch("@1764590400") == 1764590400
        assert probe_app.epoch("Wed 2026-12-02 00:00:00 UTC") == 1796169600
        assert probe_app.epoch("") is None and probe_app.epoch("n/a") is None
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_without_processes_nothing_is_shown():
    assert process_checks.checks({"release": {"current": RID}}) == []
    assert process_checks.diag_field({}) is None
    assert process_checks.troubles({}) == []


# ---------------------------------------------------------------- what init proposes


def test_procfile_lines_besides_web_and_release():
    text = "web: gunicorn app.wsgi\nrelease: manage.py migrate\nworker: celery -A app worker\n"
    text += "Clock_2: manage.py clock\n# a comment\n"
    assert found.procfile_processes(text) == {
        "worker": {"command": "celery -A app worker", "hosts": "all"},
        "clock_2": {"command": "manage.py clock", "hosts": "all"},
    }


def test_a_celery_app_module_is_found(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "celery_app.py").write_text(
        "from celery import Celery\napp = Celery('shop')\n"
    )
    (tmp_path / "config" / "tasks.py").write_text("from celery import shared_task\n")
    assert found.celery_module(tmp_path) == "config.celery_app"
    got = found.find(tmp_path, "CELERY_BROKER_URL = 'redis://localhost'", "shop")
    assert got.source == "config.celery_app (a Celery app)" and got.redis and not got.sessions
    assert found.block(got) == (
        "  # Processes besides web, found in config.celery_app (a Celery app). Uncomment them"
        " once\n  # their broker answers on the servers (packages: [redis-server] runs one on"
        " each host):\n"
        "  # processes:\n"
        '  #   worker: {command: "celery -A config.celery_app worker -l info", hosts: all,'
        " stop_timeout: 60}\n"
        '  #   beat: {command: "celery -A config.celery_app beat -l info -s'
        ' /var/lib/mlctl-shop-beat/celerybeat-schedule", hosts: 1}\n'
        "  # packages: [redis-server]\n"
    )


def test_a_procfile_wins_and_sessions_get_their_timer(tmp_path):
    (tmp_path / "Procfile").write_text("web: gunicorn x\nworker: manage.py qcluster\n")
    got = found.find(tmp_path, "INSTALLED_APPS = ['django.contrib.sessions']", "shop")
    assert got.processes == {"worker": {"command": "manage.py qcluster", "hosts": "all"}}
    assert found.block(got).endswith(
        "  schedule:  # expired database sessions deleted daily, on the first host\n"
        '    clearsessions: {command: "manage.py clearsessions", on: daily}\n'
    )
    assert found.block(found.Found({}, "", False, False)) == ""


# ---------------------------------------------------------------- follow_web


class FakeHost:
    """Records the steps a task runs on it (name, rendered command)."""

    def __init__(self, name, cfg, ok=True):
        self.name, self.ran, self.ok = name, [], ok
        self.session = type("S", (), {"cfg": cfg, "planning": False})()

    def run(self, step, cmd, warn=False):
        self.ran.append((step, cmd.render()))
        return type("R", (), {"ok": self.ok, "code": 0 if self.ok else 5, "stderr": "boom"})()


def cfg_of(settings, service="systemd"):
    attrs = {"settings": {**settings, "service": service}, "service": service, "name": "live"}
    attrs.update(processes=settings["processes"], project={"name": "app"})
    return type("C", (), attrs)()


def test_follow_web_restarts_what_belongs_and_stops_the_rest():
    from mlctl.tasks import processes

    assert processes.units_of(cfg_of(SETTINGS), H1) == (
        ["mlctl-app-beat.service", "mlctl-app-worker.service"],
        [],
    )
    h2 = FakeHost(H2, cfg_of(SETTINGS))
    processes.follow_web(h2)
    assert h2.ran == [
        ("stop processes not meant here",
         "systemctl disable --now mlctl-app-beat.service 2>/dev/null || true"),
        ("restart processes",
         "systemctl reset-failed mlctl-app-worker.service 2>/dev/null || true; "
         "systemctl restart mlctl-app-worker.service"),
    ]  # fmt: skip
    dev = FakeHost(H1, cfg_of(SETTINGS, service="pidfile"))
    processes.follow_web(dev)
    assert dev.ran == []  # a local (pidfile) environment runs no processes


def test_a_process_that_does_not_restart_is_reported_not_raised(capsys):
    from mlctl.tasks import processes

    h1 = FakeHost(H1, cfg_of(SETTINGS), ok=False)
    processes.follow_web(h1)
    assert "processes did not restart: boom (see `check`)" in capsys.readouterr().err
