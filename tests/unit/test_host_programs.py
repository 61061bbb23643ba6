"""Pure parts of the host-side programs (src/mlctl/remote/), run here against temp files."""

from __future__ import annotations

import calendar
import json
import os
import time
from types import SimpleNamespace

from mlctl.remote import logtime, migplan, probe, probe_app, probe_base, probe_system


def test_one_log_time_parser_reads_every_format():
    utc = calendar.timegm((2025, 1, 2, 10, 0, 0))
    assert logtime.line_time("2025-01-02T10:00:00Z x") == utc
    assert logtime.line_time("2025-01-02 11:00:00,123+01:00 x") == utc
    assert logtime.line_time("[2025-01-02 05:00:00 -0500] [7] [INFO] x") == utc
    assert logtime.access_time('h - - [02/Jan/2025:11:00:00 +0100] "GET / HTTP/1.1" 404 1') == (
        utc,
        404,
    )
    assert logtime.access_time("h - - [02/Foo/2025:11:00:00 +0100]") == (None, None)
    assert logtime.access_time("h - - [02/Jan/2025:11:00:00 +0100] -") == (utc, None)
    local = time.mktime((2025, 1, 2, 10, 0, 0, 0, 0, -1))
    assert logtime.error_time("2025/01/02 10:00:00 [crit] 1#1: x") == (local, "crit")
    assert logtime.line_time("2025/01/02 10:00:00 [crit] 1#1: x") == local
    assert logtime.line_time('  File "x.py", line 3') is None
    assert logtime.offset("-05:30") == -(5 * 3600 + 30 * 60)


class Migration(SimpleNamespace):
    pass


def fake_executor(plans: dict, applied: set, leaves: list):
    graph = SimpleNamespace(leaf_nodes=lambda: leaves)
    loader = SimpleNamespace(graph=graph, applied_migrations=applied)
    return SimpleNamespace(loader=loader, migration_plan=lambda targets: plans[tuple(targets)])


def test_pending_names_the_plan_to_the_leaves():
    m1 = Migration(app_label="notes", name="0002_x", operations=[])
    leaves = [("notes", "0002_x")]
    ex = fake_executor({tuple(leaves): [(m1, False)]}, set(), leaves)
    assert migplan.pending(ex) == ["notes.0002_x"]


def test_backwards_plan_targets_names_and_irreversible_steps():
    rev, irrev = SimpleNamespace(reversible=True), SimpleNamespace(reversible=False)
    m3 = Migration(app_label="notes", name="0003_y", operations=[rev, irrev])
    m1 = Migration(app_label="extra", name="0001_initial", operations=[rev])
    applied = {("notes", "0003_y"), ("extra", "0001_initial"), ("auth", "0012_z")}
    leaves = [("notes", "0003_y"), ("extra", "0001_initial"), ("auth", "0012_z")]
    targets = (("auth", "0012_z"), ("extra", None), ("notes", "0002_x"))
    ex = fake_executor({targets: [(m3, True), (m1, True)]}, applied, leaves)
    wanted = {"notes": "0002_x", "auth": "0012_z"}  # the old release knows no "extra"
    assert migplan.backwards_plan(ex, wanted) == {
        "targets": [["extra", "zero"], ["notes", "0002_x"]],
        "unapply": ["notes.0003_y", "extra.0001_initial"],
        "irreversible": ["notes.0003_y"],
    }


def test_meminfo_and_history_and_pid_checks(tmp_path):
    info = probe_system.meminfo("MemTotal:  2048 kB\nMemAvailable: 1024 kB\nHugePages_Total: 0\n")
    assert info == {"MemTotal": 2097152, "MemAvailable": 1048576, "HugePages_Total": 0}
    lines = [
        json.dumps({"event": "finished", "action": "deploy", "release": "r1", "extra": 1}),
        json.dumps({"event": "started", "action": "rollback"}),
        "{cut",
    ]
    assert probe_app.last_finished("\n".join(lines))["release"] == "r1"
    assert probe_app.last_finished("garbage") is None
    assert probe_app.pid_alive(str(os.getpid())) and not probe_app.pid_alive("x12")


def test_release_and_meta_read_the_deploy_tree(tmp_path):
    (tmp_path / "releases" / "r2").mkdir(parents=True)
    (tmp_path / ".mlctl" / "releases").mkdir(parents=True)
    (tmp_path / ".mlctl" / "releases" / "r2.json").write_text('{"static": "/s/a.css"}')
    (tmp_path / "current").symlink_to(tmp_path / "releases" / "r2")
    probe_base.CFG.update(deploy_to=str(tmp_path))
    try:
        out = probe_app.release()
        assert (out["current"], out["exists"], out["releases"]) == ("r2", True, ["r2"])
        assert out["meta"] == {"static": "/s/a.css"} and out["venv"] is None
        assert probe_base.meta_of("r9") == {} and probe_base.meta_of(None) == {}
    finally:
        probe_base.CFG.clear()


def test_plan_chooses_probes_by_mode_place_and_release():
    names = lambda fns: [f.__name__ for f in fns]  # noqa: E731
    check = names(probe.plan("check", True, True, "/etc/cert.pem"))
    assert {"pip_check", "django_probe", "permissions", "nginx_logs", "tls"} <= set(check)
    local = names(probe.plan("check", False, False, ""))
    assert not {"pip_check", "nginx", "permissions", "tls", "maintenance"} & set(local)
    assert names(probe.plan("status", True, True, "")) == ["release", "site", "maintenance"]
    assert "failed_units" in names(probe.plan("monitor", True, True, ""))
    assert "failed_units" not in names(probe.plan("monitor", False, True, ""))
    assert names(probe.BASE["check"]) == names(probe.plan("check", False, False, ""))[:6]
