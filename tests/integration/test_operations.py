"""Rollback database policies, rolling batches, locks, status and logs on real hosts."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from datetime import datetime, timedelta

import pytest

from .helpers import (
    D,
    add_pinned_field,
    commit_file,
    current,
    healthz,
    mlctl,
    mlctl_popen,
    new_project,
    psql,
    ssh,
)

pytestmark = pytest.mark.hosts


@pytest.fixture(scope="module")
def ops(farm, tmp_path_factory):
    logs = tmp_path_factory.mktemp("logs")
    own_db = {"database": {"name": "djangoapp_ops"}}  # other modules' schema history stays theirs
    repo, inv = new_project(
        farm,
        tmp_path_factory,
        test=own_db,
        live={"rolling": {"batch": 1}, **own_db},
    )
    mlctl(inv, "test", "setup")
    mlctl(inv, "live", "setup", "--yes")
    return {
        "farm": farm,
        "repo": repo,
        "inv": inv,
        "test": farm.hosts[0],
        "live": farm.hosts[1:],
        "logs": logs,
    }


def columns(farm, host) -> list[str]:
    return psql(
        farm,
        host,
        "select column_name from information_schema.columns " "where table_name='notes_note'",
    ).split()


def deploy_v1_then_v2(ops) -> tuple[str, str]:
    farm, inv, repo, h = ops["farm"], ops["inv"], ops["repo"], ops["test"]
    if "pinned" in (repo / "notes" / "models.py").read_text():
        # Back to v1's schema: a fresh repo state without the field.
        subprocess.run(
            ["git", "-C", str(repo), "revert", "--no-edit", "HEAD"], check=True, capture_output=True
        )
    mlctl(inv, "test", "deploy", "--skip-tests")
    v1 = current(farm, h)
    add_pinned_field(ops["repo"])
    mlctl(inv, "test", "deploy", "--skip-tests")
    return v1, current(farm, h)


def test_rollback_restore_brings_back_the_snapshot_and_loses_later_writes(ops):
    farm, inv, h = ops["farm"], ops["inv"], ops["test"]
    v1, v2 = deploy_v1_then_v2(ops)
    psql(
        farm,
        h,
        "insert into notes_note (title, slug, body, created, pinned) "
        "values ('after', 'row-after', 'written on v2', now(), true)",
    )
    p = mlctl(inv, "test", "rollback", "--db", "restore")
    assert "writes since that deploy are lost" in p.stderr
    assert current(farm, h) == v1 and healthz(h.address)["release"] == v1
    assert "pinned" not in columns(farm, h)
    assert psql(farm, h, "select count(*) from notes_note where slug='row-after'") == "0"


def test_rollback_code_only_keeps_the_newer_schema(ops):
    farm, inv, h = ops["farm"], ops["inv"], ops["test"]
    v1, v2 = deploy_v1_then_v2(ops)
    mlctl(inv, "test", "rollback", "--db", "code-only", "--to", v1)
    assert current(farm, h) == v1 and healthz(h.address)["release"] == v1
    assert "pinned" in columns(farm, h)
    mlctl(inv, "test", "rollback", "--db", "code-only", "--to", v2)  # back, schema already there
    assert healthz(h.address)["release"] == v2


def test_auto_rollback_stops_on_an_irreversible_migration_and_offers_the_choices(ops):
    farm, inv, repo, h = ops["farm"], ops["inv"], ops["repo"], ops["test"]
    mlctl(inv, "test", "deploy", "--skip-tests")
    before = current(farm, h)
    irreversible = """from django.db import migrations


def forwards(apps, schema_editor):
    pass


class Migration(migrations.Migration):
    dependencies = [("notes", "0003_note_pinned")]
    operations = [migrations.RunPython(forwards)]
"""
    commit_file(repo, "notes/migrations/0004_one_way.py", irreversible, "one-way migration")
    mlctl(inv, "test", "deploy", "--skip-tests")
    newer = current(farm, h)
    p = mlctl(inv, "test", "rollback", "--to", before, check=False)
    last = p.stderr.strip().splitlines()[-1]
    assert p.returncode == 12 and "irreversible" in last and "--db restore" in last, p.stderr
    assert "--db code-only" in last
    assert current(farm, h) == newer and healthz(h.address)["release"] == newer


def test_rolling_batches_switch_one_live_host_at_a_time(ops):
    farm, inv = ops["farm"], ops["inv"]
    logdir = ops["logs"] / "rolling"
    mlctl(inv, "live", "deploy", "--yes", env={"MLCTL_LOG_DIR": str(logdir)})
    records = [json.loads(line) for line in (logdir / "mlctl.jsonl").read_text().splitlines()]
    # Per host a start in the idle slot, then the cutover to it; the second host's start must
    # begin after the first host's cutover has ended.
    starts = {r["host"]: r for r in records if r["step"].startswith("start in slot ")}
    cutovers = {r["host"]: r for r in records if r["step"].startswith("cutover to slot ")}
    one, two = ops["live"][:2]
    first, second = cutovers[one.address], starts[two.address]
    first_end = datetime.fromisoformat(first["ts"])
    second_start = datetime.fromisoformat(second["ts"]) - timedelta(
        milliseconds=second["duration_ms"]
    )
    assert first_end <= second_start + timedelta(milliseconds=20), (first, second)
    for h in ops["live"]:
        assert healthz(h.address)["release"] == current(farm, h)


def test_lock_status_and_unlock_respect_a_live_holder(ops):
    farm, inv, h = ops["farm"], ops["inv"], ops["test"]
    holder = json.dumps(
        {
            "event": "started",
            "action": "deploy",
            "run_id": "other-run",
            "user": "alice",
            "pid": 1,
            "host": "elsewhere",
            "time": time.time(),
            "release": "",
        }
    )
    ssh(farm, h, f"mkdir -p {D}/.mlctl/lock && echo '{holder}' > {D}/.mlctl/lock/holder.json")
    try:
        shown = mlctl(inv, "test", "lock").stdout
        assert "held by alice@elsewhere pid 1" in shown
        deploy = mlctl(inv, "test", "deploy", "--skip-tests", check=False)
        assert deploy.returncode == 8 and "alice@elsewhere" in deploy.stderr
        refused = mlctl(inv, "test", "unlock", check=False)
        assert refused.returncode != 0 and "--force" in refused.stderr
        assert ssh(farm, h, f"test -d {D}/.mlctl/lock && echo held") == "held"
        mlctl(inv, "test", "unlock", "--force", "--yes")
        assert ssh(farm, h, f"test -d {D}/.mlctl/lock && echo held || echo free") == "free"
    finally:
        ssh(farm, h, f"rm -rf {D}/.mlctl/lock")


def test_status_prints_one_line_per_host(ops):
    farm, inv = ops["farm"], ops["inv"]
    mlctl(inv, "live", "deploy", "--yes")
    lines = mlctl(inv, "live", "status").stdout.strip().splitlines()
    assert len(lines) == len(ops["live"])
    for h, line in zip(ops["live"], lines, strict=True):
        assert h.address in line and current(farm, h) in line


def test_logs_merge_hosts_and_follow_ends_cleanly_on_ctrl_c(ops):
    inv = ops["inv"]
    for h in ops["live"]:
        healthz(h.address)
    out = mlctl(inv, "live", "logs", "--service", "nginx-access", "-n", "5").stdout
    for h in ops["live"]:
        assert any(line.startswith(h.address) and "/healthz" in line for line in out.splitlines())
    app = mlctl(inv, "live", "logs", "-n", "5").stdout
    assert app.strip(), "the app journal is empty"
    proc = mlctl_popen(inv, "live", "logs", "--service", "nginx-access", "-f")
    time.sleep(3)
    healthz(ops["live"][0].address)
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "/healthz" in out
    for h in ops["live"]:
        left = ssh(ops["farm"], h, "pgrep -fa 'tail -F' || true")
        assert "access.log" not in left, left


def test_diag_watch_refreshes_until_ctrl_c(ops):
    # A forced terminal makes rich draw every frame into the pipe: Ctrl-C comes after the second
    # frame, however long a round takes on a busy machine. The screen is made large enough that
    # rich never crops a frame's last line (the "updated" stamp).
    screen = {"FORCE_COLOR": "1", "COLUMNS": "200", "LINES": "500"}
    proc = mlctl_popen(ops["inv"], "live", "diag", "--watch", "--interval", "1", **screen)
    frames, errors, seen = [], [], threading.Event()

    def read():
        for line in proc.stdout:
            frames.append(line)
            if sum(chunk.count("updated ") for chunk in frames) >= 2:
                seen.set()

    # Both pipes are drained while it runs: a full stderr pipe would stop the frames.
    readers = [
        threading.Thread(target=read, daemon=True),
        threading.Thread(target=lambda: errors.extend(proc.stderr), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        drawn = seen.wait(120)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    for reader in readers:
        reader.join(10)
    assert drawn, f"diag --watch drew fewer than two frames in 120 s: {''.join(errors)[-2000:]}"
    assert proc.returncode == 0, "".join(errors)
    out = "".join(frames)
    for h in ops["live"]:
        assert h.address in out


def test_hooks_run_at_their_stage_and_a_failing_after_switch_hook_rolls_back(ops):
    farm, inv, repo, h = ops["farm"], ops["inv"], ops["repo"], ops["test"]
    commit_file(repo, "notes/static/notes/hooked.css", "p { margin: 0 }\n", "hooked")
    mlctl(
        inv, "test", "deploy", "--skip-tests",
        "--set", "hooks.before_build=test ! -e .venv && touch before-build",
        "--set", "hooks.after_build=test -e .venv/bin/python && touch after-build",
        "--set", f"hooks.after_switch=touch {D}/shared/logs/after-switch",
    )  # fmt: skip
    rid = current(farm, h)
    assert ssh(farm, h, f"ls {D}/releases/{rid}/before-build {D}/releases/{rid}/after-build "
                        f"{D}/shared/logs/after-switch | wc -l") == "3"  # fmt: skip
    commit_file(repo, "notes/static/notes/hooked.css", "p { margin: 1px }\n", "hooked again")
    p = mlctl(inv, "test", "deploy", "--skip-tests", "--set", "hooks.after_switch=false",
              check=False)  # fmt: skip
    assert p.returncode != 0 and "hook after_switch[0]" in p.stderr.strip().splitlines()[-1]
    assert current(farm, h) == rid and healthz(h.address)["release"] == rid
