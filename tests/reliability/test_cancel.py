"""Cancelled runs: a CI job stopped (SIGTERM), a run killed (SIGKILL) on another machine, a cut
connection. After each: no process of the run is left on any host 10 s later, the next deploy
succeeds without `unlock --force`, and the site answered every request meanwhile."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time

import pytest

from mlctl import remote

from .harness import D, kill_group, wait_for_line
from .test_concurrency import Client
from .test_faults import cut_when, last_line, not_on_disk

pytestmark = [pytest.mark.reliability, pytest.mark.hosts]

SLOW_MIGRATION = """from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("notes", "0002_seed_notes")]
    operations = [
        migrations.RunSQL("create table rel_cancel (id int)", "drop table rel_cancel"),
        migrations.RunSQL("select pg_sleep(30)", migrations.RunSQL.noop),
    ]
"""


@contextlib.contextmanager
def serving(world):
    """Every host's site requested in a loop for the whole block: not one request may fail."""
    clients = [Client(h.address) for h in world.hosts]
    for c in clients:
        c.start()
    try:
        yield
    finally:
        for c in clients:
            c.stop.set()
        for c in clients:
            c.join(60)
    for h, c in zip(world.hosts, clients, strict=True):
        assert c.ok > 0, h
        assert not c.errors, f"{h}: {len(c.errors)} failed requests, e.g. {c.errors[:5]}"


def survivors(world, host, run_id: str) -> str:
    """The run's processes on the host (mlctl's own finder, run as root), '' when none."""
    p = subprocess.run(
        world.farm.ssh_argv(host, f"python3 - {run_id} 0"),
        input=remote.source("runs"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return "" if p.returncode == 0 else f"{host}: {p.stdout.strip()}"


def none_left_after(world, run_id: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while True:
        left = [s for s in world.each(lambda h: survivors(world, h, run_id)) if s]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not left, f"processes of run {run_id} still running: {left}"


def started_run(world, host) -> dict:
    return [json.loads(x) for x in world.history_lines(host) if '"started"' in x][-1]


def wait_on_host(world, host, condition: str, what: str) -> None:
    loop = f"for i in $(seq 1200); do {condition} && exit 0; sleep 0.05; done; exit 1"
    assert world.farm.ssh(host, loop, timeout=120).returncode == 0, f"{host}: never saw {what}"


def terminate(proc: subprocess.Popen, sig=signal.SIGTERM) -> tuple[int, str]:
    try:
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=240)
    finally:
        proc.kill()
    return proc.returncode, err


def no_half_built_venvs(world) -> None:
    for h in world.hosts:
        half = world.sh(
            h, f'for d in {D}/venvs/*; do [ -e "$d/.complete" ] || echo "$d"; done', check=False
        )
        assert not half, f"{h}: half-built venvs left: {half}"


def redeploy_head(world) -> None:
    """After a case's commit was reverted: every host on the repository's HEAD again."""
    world.deploy_ok()


def test_sigterm_during_the_venv_build(case, tmp_path):
    summary = tmp_path / "summary.json"
    req = case.read("requirements.txt")
    with serving(case), case.changed({"requirements.txt": req + "six==1.15.0\n"}, "six") as commit:
        proc = case.popen("test", "deploy", "--summary", str(summary))
        wait_for_line(proc, "building venv")
        wait_on_host(case, case.hosts[0], "pgrep -f 'pip[ ]install' >/dev/null", "pip install")
        code, err = terminate(proc)
        assert code == 143, err
        assert "terminated by SIGTERM" in err.strip().splitlines()[-1], err
        data = json.loads(summary.read_text())
        assert data["exit_code"] == 143 and "SIGTERM" in data["error"], data
        none_left_after(case, data["run_id"])
        not_on_disk(case, commit)
        for h in case.hosts:
            assert started_run(case, h)["run_id"] == data["run_id"]
        p = case.ok("test", "deploy")  # builds that venv again, over what the killed run left
        assert "stale" not in p.stderr, p.stderr  # the lock was released, not left to time out
        case.good = case.current(case.hosts[0])
        no_half_built_venvs(case)
    redeploy_head(case)


def test_sigterm_during_migrate_waits_for_it_to_end_then_undoes_it(case, tmp_path):
    summary = tmp_path / "summary.json"
    h1 = case.hosts[0]
    files = {"notes/migrations/0003_cancel.py": SLOW_MIGRATION}
    with serving(case), case.changed(files, "slow migration to cancel"):
        proc = case.popen("test", "deploy", "--summary", str(summary))
        wait_on_host(case, h1, "pgrep -f 'manage[.]py migrate' >/dev/null", "migrate")
        time.sleep(1)  # the table is created, the migration sleeps in the database
        code, err = terminate(proc)
        assert code == 143, err
        run_id = json.loads(summary.read_text())["run_id"]
        none_left_after(case, run_id)
        assert "NOT restored" not in err, err  # the migration ended: the undo was safe
        for h in case.hosts:
            sql = "select count(*) from information_schema.tables where table_name='rel_cancel'"
            assert case.psql(h, sql) == "0", h
    redeploy_head(case)


def test_sigterm_during_the_switch_puts_every_host_back(case, tmp_path):
    summary = tmp_path / "summary.json"
    h1 = case.hosts[0]
    old = case.current(h1)
    with serving(case), case.changed({"CANCEL_NOTE": "switch\n"}, "cancel the switch") as commit:
        proc = case.popen("test", "deploy", "--summary", str(summary))
        wait_on_host(case, h1, f'[ "$(readlink {D}/current)" != releases/{old} ]', "the switch")
        code, err = terminate(proc)
        assert code == 143, err
        assert "rolling every host back" in err, err
        none_left_after(case, json.loads(summary.read_text())["run_id"])
        for h in case.hosts:
            assert case.current(h) == old, h
            meta = case.sh(h, f"cat {D}/.mlctl/releases/*-{commit[:12]}.json")
            assert json.loads(meta)["status"] == "bad", h
    redeploy_head(case)


def test_sigkill_of_a_run_on_another_machine_ends_its_lease(case):
    """The killed run took the lock on another machine (its own UTS namespace, another
    hostname): its pid cannot be checked here. Its heartbeat stops; after timeouts.lock_lease the
    next run (waiting with --lock-wait) takes the lock over, and removes the partial release."""
    lease, wait = 6, 30
    with serving(case), case.changed({"KILL_NOTE": "elsewhere\n"}, "killed elsewhere") as commit:
        argv = ["unshare", "--uts", "sh", "-c", 'hostname ci-runner-elsewhere && exec "$@"', "sh"]
        argv += case.argv("test", "deploy", "--set", f"timeouts.lock_lease={lease}")
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=case.env(),
            stdin=subprocess.DEVNULL,
            cwd=case.tmp,
        )
        try:
            wait_for_line(proc, "build ")
            wait_on_host(case, case.hosts[0], f"ls -d {D}/releases/*-{commit[:12]}", "the build")
            kill_group(proc)
        finally:
            proc.kill()
            proc.communicate(timeout=60)
        case.unfinished_ok = True  # the killed run can never write its outcome
        holder = started_run(case, case.hosts[0])
        assert holder["host"] == "ci-runner-elsewhere" and holder["pid"] == proc.pid
        none_left_after(case, holder["run_id"])
        start = time.monotonic()
        p = case.ok(
            "test", "deploy", "--lock-wait", str(wait), "--set", f"timeouts.lock_lease={lease}"
        )
        assert time.monotonic() - start < lease + wait + 120  # the deploy itself included
        assert "taking over stale lock of root@ci-runner-elsewhere" in p.stderr, p.stderr
        assert "no heartbeat for" in p.stderr and "timeouts.lock_lease" in p.stderr, p.stderr
        assert "removing partial release" in p.stderr, p.stderr
        case.good = case.current(case.hosts[0])
    redeploy_head(case)


def test_lock_status_shows_holder_machine_age_and_heartbeat(case):
    """While a deploy holds the lock, `lock` names the holder, its machine, the lock's age and
    how long ago its heartbeat was refreshed; a live holder is waited for with --lock-wait."""
    with case.changed({"REQ_NOTE": "lock\n"}, "hold the lock"):
        hook = "sleep 8"
        proc = case.popen("test", "deploy", "--set", f"hooks.after_build={hook}")
        try:
            wait_for_line(proc, "build ")
            time.sleep(3)
            shown = case.ok("test", "lock").stdout
            assert "held by" in shown and "heartbeat" in shown and ", for " in shown, shown
            waited = case.ok("test", "deploy", "--lock-wait", "240")
            assert "stale" not in waited.stderr, waited.stderr
        finally:
            _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        case.good = case.current(case.hosts[0])
    redeploy_head(case)


def test_cut_connection_during_the_build_leaves_no_process_behind(case):
    h2 = case.hosts[1]
    req = case.read("requirements.txt")
    files = {"requirements.txt": req + "six==1.14.0\n"}
    with serving(case), case.changed(files, "six for the cut") as commit:
        cutter = cut_when(case, h2, "pgrep -f 'pip[ ]install' >/dev/null")
        try:
            p = case.fails("test", "deploy", "--set", "timeouts.connect=5")
        finally:
            out, _ = cutter.communicate(timeout=120)
        assert "cut" in out
        assert h2.address in last_line(p) and "Traceback" not in p.stderr, p.stderr
        none_left_after(case, started_run(case, h2)["run_id"])
        not_on_disk(case, commit)
        p = case.ok("test", "deploy")  # the venv h2 half-built is cleaned, then built again
        case.good = case.current(case.hosts[0])
        no_half_built_venvs(case)
    redeploy_head(case)
