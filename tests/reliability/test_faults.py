"""Faults during a deploy: nothing half-done serves; every host ends on the last good release."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time

import pytest

from tests.hosts import network

from .harness import D, kill_group, wait_for_line

pytestmark = [pytest.mark.reliability, pytest.mark.hosts]

VIEWS = "notes/views.py"


def last_line(p) -> str:
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def meta(world, host, commit: str) -> dict:
    out = world.sh(host, f"cat {D}/.mlctl/releases/*-{commit[:12]}.json 2>/dev/null || true")
    return json.loads(out) if out else {}


def not_on_disk(world, commit: str) -> None:
    for h in world.hosts:
        assert not [r for r in world.releases(h) if r.endswith(commit[:12])], h


def broken_health(world, condition: str = "True") -> str:
    """views.py whose /healthz answers 500 when `condition` holds on the server."""
    views = world.read(VIEWS)
    out = views.replace(
        "def healthz(request):\n",
        "def healthz(request):\n"
        "    import socket  # noqa\n\n"
        f"    if {condition}:\n"
        "        raise RuntimeError('health 500 injected by the battery')\n",
        1,
    )
    assert out != views
    return out


def test_health_500_after_switch_rolls_back_and_marks_bad(case):
    with case.changed({VIEWS: broken_health(case)}, "health 500") as commit:
        p = case.fails("test", "deploy", "--set", "timeouts.health=3")
        assert "health check" in last_line(p) and "timeouts.health" in last_line(p), p.stderr
        for h in case.hosts:
            assert meta(case, h, commit)["status"] == "bad"


def test_gunicorn_crashing_on_import_of_new_code_rolls_back(case):
    """The code imports fine in the build's WSGI check but gunicorn dies loading it: with
    `gunicorn.preload` (the default) the restart itself fails, and the error ends with the app's
    own last log line."""
    wsgi = case.read("djangoapp/wsgi.py")
    crash = (
        "import sys  # noqa\n\n"
        "if sys.argv[0].endswith('gunicorn'):\n"
        "    raise ImportError('gunicorn crash injected by the battery')\n\n" + wsgi
    )
    with case.changed({"djangoapp/wsgi.py": crash}, "gunicorn crash") as commit:
        p = case.fails("test", "deploy", "--set", "timeouts.health=4")
        assert "start in slot" in last_line(p), p.stderr
        assert "ImportError: gunicorn crash injected by the battery" in last_line(p), p.stderr
        for h in case.hosts:
            assert meta(case, h, commit)["status"] == "bad"


def test_host2_of_3_failing_its_build_switches_no_host(case):
    h2 = case.hosts[1]
    hook = f'test "$(hostname)" != {h2.name}'
    with case.changed({"BUILD_NOTE": "host 2 fails\n"}, "h2 build fails") as commit:
        p = case.fails("test", "deploy", "--set", f"hooks.after_build={hook}")
        assert h2.address in last_line(p) and "after_build" in last_line(p), p.stderr
        not_on_disk(case, commit)
        for h in case.hosts:
            assert meta(case, h, commit).get("status") == "partial"


def test_host2_failing_health_after_host1_switched_puts_all_back(case):
    h1, h2 = case.hosts[0], case.hosts[1]
    cond = f"socket.gethostname() == {h2.name!r}"
    with case.changed({VIEWS: broken_health(case, cond)}, "h2 health 500") as commit:
        p = case.fails("test", "deploy", "--set", "rolling.batch=1", "--set", "timeouts.health=3")
        assert h2.address in last_line(p) and "health check" in last_line(p), p.stderr
        assert f"{h1.address} serving" in p.stderr  # host 1 had switched and served it
        for h in case.hosts:
            assert meta(case, h, commit)["status"] == "bad"


def test_sigkill_mid_build_next_run_reports_stale_lock_and_removes_partial(case):
    """Also: the history's "started" record is written before the first change (survives it)."""
    with case.changed({"KILL_NOTE": "sigkill\n"}, "sigkill mid-build") as commit:
        proc = case.popen("test", "deploy")
        try:
            wait_for_line(proc, "reused")  # the upload and build step comes next
            # Kill once the release exists on the host: a partial release is left behind.
            case.sh(
                case.hosts[0],
                f"for i in $(seq 1000); do ls -d {D}/releases/*-{commit[:12]} && break;"
                " sleep 0.01; done",
            )
            killed = proc.pid
            kill_group(proc)
        finally:
            proc.kill()
            proc.communicate(timeout=60)
        case.unfinished_ok = True  # the killed run can never write its outcome
        partial = [r for r in case.releases(case.hosts[0]) if r.endswith(commit[:12])]
        assert partial, "the build had not started"
        for h in case.hosts:
            started = [json.loads(x) for x in case.history_lines(h) if '"started"' in x]
            assert started[-1]["pid"] == killed and started[-1]["action"] == "deploy"
        p = case.ok("test", "deploy")
        assert "stale lock" in p.stderr and f"process {killed}" in p.stderr, p.stderr
        assert f"removing partial release {partial[0]}" in p.stderr, p.stderr
        assert partial[0] not in case.releases(case.hosts[0])
        case.good = case.current(case.hosts[0])


def test_ctrl_c_during_pip_install_leaves_current_and_unlocks(case):
    req = case.read("requirements.txt")
    with case.changed({"requirements.txt": req + "six==1.16.0\n"}, "new requirement") as commit:
        proc = case.popen("test", "deploy")
        try:
            wait_for_line(proc, "building venv")
            pip = case.hosts[0]
            for _ in range(600):
                if case.farm.ssh(pip, "pgrep -f 'pip[ ]install' >/dev/null").returncode == 0:
                    break
                time.sleep(0.1)
            else:
                raise AssertionError("pip install never started on h1")
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=180)
        finally:
            proc.kill()
        assert proc.returncode == 130, err
        assert "interrupted" in err.strip().splitlines()[-1]
        not_on_disk(case, commit)


def test_remote_command_that_never_returns_is_killed_by_command_timeout(case):
    with case.changed({"HANG_NOTE": "hang\n"}, "hanging hook") as commit:
        start = time.monotonic()
        p = case.fails(
            "test", "deploy", "--set", "hooks.after_build=sleep 600", "--set", "timeouts.command=8"
        )
        assert time.monotonic() - start < 120
        assert "timed out after 8s" in last_line(p) and "timeouts.command" in last_line(p)
        not_on_disk(case, commit)
        time.sleep(6)  # timeout -k 5: TERM at 8 s, KILL 5 s later at the latest
        for h in case.hosts:
            assert case.farm.ssh(h, "pgrep -f 'sleep 600'").returncode == 1, h


def test_five_failed_deploys_then_cleanup_keeps_last_good_release_and_snapshot(case):
    h1 = case.hosts[0]
    good, snap = case.good, case.snapshots.get(case.good)
    views, bad = case.read(VIEWS), []
    for i in range(5):
        broken = broken_health(case).replace("battery')", f"battery {i}')")
        case.commit({VIEWS: broken}, f"failure {i}")
        case.fails("test", "deploy", "--host", h1.address, "--set", "timeouts.health=2")
        bad += [r for r in case.releases(h1) if r.endswith(case.head()[:12])]
    assert len(bad) == 5
    case.commit({VIEWS: views}, "fixed")
    case.deploy_ok()
    left = case.releases(h1)
    assert good in left and not set(bad) & set(left), left
    if snap:
        assert case.sh(h1, f"test -s {D}/backups/db/{snap} && echo ok") == "ok"


def test_redeploying_the_same_commit_changes_nothing(case):
    before = case.good
    p = case.ok("test", "deploy")
    assert "reused" in p.stderr and "building venv" not in p.stderr
    assert "no migration pending" in p.stderr and "snapshot" not in p.stderr.replace(
        "snapshot skipped", ""
    )
    case.good = case.current(case.hosts[0])
    assert case.good.split("-")[1] == before.split("-")[1]


HALF = """from django.db import migrations, models


def explode(apps, schema_editor):
    raise RuntimeError("migration failed halfway")


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("notes", "0002_seed_notes")]
    operations = [
        migrations.CreateModel("Half", [("id", models.AutoField(primary_key=True))]),
        migrations.RunSQL("insert into rel_canary values (100000, 'written halfway')"),
        migrations.RunPython(explode, migrations.RunPython.noop),
    ]
"""


def test_non_atomic_migration_failing_halfway_restores_verified_snapshot(case):
    with case.changed({"notes/migrations/0003_half.py": HALF}, "half migration"):
        p = case.fails("test", "deploy")
        assert "migration failed" in last_line(p) and "restored" in last_line(p), p.stderr
        for h in case.hosts:
            sql = "select count(*) from information_schema.tables where table_name='notes_half'"
            assert case.psql(h, sql) == "0"


NOOP_MIGRATION = """from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("notes", "0002_seed_notes")]
    operations = [migrations.RunSQL("select 1", migrations.RunSQL.noop)]
"""


@contextlib.contextmanager
def full_disk(world, host, path: str):
    """A small tmpfs over `path` on the host, filled to the last byte; unmounted afterwards."""
    world.sh(host, f"mkdir -p {path} && mount -t tmpfs -o size=1m,mode=0700 rel-full {path}")
    try:
        world.sh(host, f"dd if=/dev/zero of={path}/.fill bs=64k 2>/dev/null; df {path} | tail -1")
        yield
    finally:
        world.sh(host, f"umount {path}")


def test_disk_full_before_the_snapshot_migrates_nothing(case):
    h1 = case.hosts[0]
    files = {"notes/migrations/0003_noop.py": NOOP_MIGRATION}
    with case.changed(files, "pending migration") as commit, full_disk(case, h1, f"{D}/backups/db"):
        p = case.fails("test", "deploy")
        assert h1.address in last_line(p) and "snapshot" in last_line(p), p.stderr
        not_on_disk(case, commit)


def test_disk_full_mid_build_switches_no_host(case):
    h2 = case.hosts[1]
    req = case.read("requirements.txt")
    files = {"requirements.txt": req + "six==1.16.0\n"}
    with case.changed(files, "new requirement") as commit, full_disk(case, h2, f"{D}/wheelhouse"):
        p = case.fails("test", "deploy")
        assert h2.address in last_line(p) and "upload wheelhouse" in last_line(p), p.stderr
        not_on_disk(case, commit)


def cut_when(world, host, condition: str) -> subprocess.Popen:
    """On the host: wait until `condition` holds, then kill mlctl's ssh sessions (user deploy).

    A session's process is "sshd: deploy..." up to OpenSSH 9 (Debian 12) and "sshd-session:
    deploy..." from OpenSSH 9.8 on (Debian 13).
    """
    script = (
        f"for i in $(seq 6000); do {condition} && break; sleep 0.01; done; "
        "for p in $(pgrep -f '^sshd(-session)?: deploy'); do kill -KILL $p; done; echo cut"
    )
    return subprocess.Popen(
        world.farm.ssh_argv(host, script),
        stdout=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def test_connection_cut_during_the_switch_reconnects_and_puts_all_back(case):
    h2 = case.hosts[1]
    old = case.current(h2)
    with case.changed({"CUT_NOTE": "switch\n"}, "cut during switch") as commit:
        cutter = cut_when(case, h2, f'[ "$(readlink {D}/current)" != releases/{old} ]')
        try:
            p = case.fails("test", "deploy", "--set", "timeouts.connect=5")
        finally:
            out, _ = cutter.communicate(timeout=120)
        assert "cut" in out
        assert h2.address in p.stderr and "Traceback" not in p.stderr, p.stderr
        for h in case.hosts:
            assert meta(case, h, commit).get("status") in ("bad", "partial"), h


SLOW_MIGRATION = """from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("notes", "0002_seed_notes")]
    operations = [
        migrations.RunSQL("select pg_sleep(5)", migrations.RunSQL.noop),
        migrations.RunSQL("create table rel_slow (id int)", "drop table rel_slow"),
    ]
"""


def test_connection_cut_during_migrate_stops_for_the_operator_without_restoring(case):
    h2 = case.hosts[1]
    files = {"notes/migrations/0003_slow.py": SLOW_MIGRATION}
    with case.changed(files, "slow migration") as commit:
        cutter = cut_when(case, h2, "pgrep -f 'manage[.]py migrate' >/dev/null")
        try:
            p = case.fails("test", "deploy", "--set", "timeouts.connect=5")
        finally:
            out, _ = cutter.communicate(timeout=120)
        assert "cut" in out
        assert p.returncode == 12, p.stderr
        assert h2.address in last_line(p) and "NOT restored" in last_line(p), p.stderr
        # The operator: wait for the migration to end, then restore the named snapshot.
        for _ in range(300):
            if case.farm.ssh(h2, "pgrep -f 'manage[.]py migrate'").returncode == 1:
                break
            time.sleep(0.1)
        snap = [r for r in case.releases(h2) if r.endswith(commit[:12])][0] + "-before-migrate.dump"
        assert snap in last_line(p)
        case.ok("test", "restore", snap, "--host", h2.address)
        case.sh(h2, f"rm -rf {D}/releases/*-{commit[:12]}")
        for h in case.hosts:
            history = [json.loads(x) for x in case.history_lines(h)][-1]
            assert history["outcome"] == "needs-operator", history


def test_unreachable_host_fails_after_the_connect_timeout(case):
    """h3's link is down (machine side): the run stops at connect, naming timeouts.connect."""
    h3 = case.hosts[2]
    link = network.link_name(h3.prefix, h3.name)
    subprocess.run(["ip", "link", "set", link, "down"], check=True)
    try:
        start = time.monotonic()
        p = case.fails("test", "deploy", "--set", "timeouts.connect=2")
        assert time.monotonic() - start < 60
    finally:
        subprocess.run(["ip", "link", "set", link, "up"], check=True)
    assert p.returncode == 5 and h3.address in last_line(p), p.stderr
    assert "timeouts.connect = 2s" in last_line(p), p.stderr


def test_rollback_with_hosts_out_of_step_picks_a_release_every_host_has(case):
    """A deploy to one host only (--host) leaves the hosts out of step. `--to` a release one
    host lacks is refused; a plain rollback goes to the newest release good on EVERY host, so no
    host's `current` ever points at a release it does not have."""
    h1 = case.hosts[0]
    case.commit({"STEP_NOTE": "all hosts\n"}, "all hosts")
    base = case.deploy_ok()  # so that an earlier release is good on every host
    with case.changed({"STEP_NOTE": "one host\n"}, "one host only"):
        case.ok("test", "deploy", "--host", h1.address)
        only_h1 = case.current(h1)  # h1's previous good release after the next deploy
        case.commit({"STEP_NOTE": "one host again\n"}, "one host only, again")
        case.ok("test", "deploy", "--host", h1.address)
        p = case.fails("test", "rollback", "--to", only_h1, "--db", "code-only")
        assert f"release {only_h1} is not on this host" in last_line(p), p.stderr
        case.ok("test", "rollback", "--db", "code-only")
        served = {case.current(h) for h in case.hosts}
        assert len(served) == 1 and served.pop() < base
        for h in case.hosts:
            assert case.current(h) in case.releases(h)
            assert case.sh(h, f"test -d {D}/current && echo ok") == "ok"
    case.deploy_ok()  # every host on one new good release again


def test_rollback_failing_on_one_host_leaves_that_host_on_its_release(case):
    """The target fails its health check on h2 only: h2 is switched back and serves what it served
    before, the others serve the target, and the error names h2."""
    h2 = case.hosts[1]
    case.commit({"STEP_NOTE": "before\n"}, "rollback target")
    target = case.deploy_ok()
    leaving = case.deploy_ok()
    rev = f"{D}/releases/{target}/REVISION"
    case.sh(h2, f"sudo sh -c 'echo not-{target} > {rev}'")
    try:
        p = case.fails("test", "rollback", "--db", "code-only", "--set", "timeouts.health=3")
    finally:
        case.sh(h2, f"sudo sh -c 'echo {target} > {rev}'")
    assert h2.address in last_line(p) and "health check" in last_line(p), p.stderr
    assert f"{h2.address}: rollback failed here; serving {leaving} again" in p.stderr
    assert case.current(h2) == leaving
    assert {case.current(h) for h in case.hosts if h is not h2} == {target}
    case.deploy_ok()  # every host on one new good release again
