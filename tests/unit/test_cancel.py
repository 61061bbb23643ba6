"""The pure parts of cancelled runs: lease staleness decisions, the lock's and the builds' exact
commands, the signal → exit code mapping, --lock-wait as a setting, lock_lease validation."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from mlctl.cli.registry import BY_NAME
from mlctl.commands import lock as lockcmd
from mlctl.commands import release as relcmd
from mlctl.config.layout import Layout
from mlctl.core import cancel
from mlctl.core.errors import InventoryError
from mlctl.tasks import prune
from mlctl.transport import locking

LAY = Layout("/srv/app")


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_heartbeat_older_than_the_lease_is_stale_whichever_machine_took_it():
    other = {"host": "ci-runner-7", "pid": 1, "time": time.time(), "age": 100}
    assert locking.stale_reason({**other, "heartbeat_age": 5}, 3600, 60) == ""
    assert locking.stale_reason({**other, "heartbeat_age": 61}, 3600, 60) == (
        "no heartbeat for 61s, more than timeouts.lock_lease (60s)"
    )
    # same machine, pid alive but no heartbeat (a reused pid, a stuck run): the lease decides
    me = {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}
    assert locking.stale_reason({**me, "heartbeat_age": 61}, 3600, 60).startswith("no heartbeat")
    assert locking.stale_reason({**me, "heartbeat_age": 1}, 3600, 60) == ""
    # same machine, process gone: stale at once, even with a fresh heartbeat
    gone = {**me, "pid": dead_pid(), "heartbeat_age": 0}
    assert "is gone" in locking.stale_reason(gone, 3600, 60)


def test_a_lock_without_heartbeat_keeps_the_old_rules():
    """Taken by a version without leases: only the pid check and timeouts.lock_stale apply."""
    other = {"host": "elsewhere", "pid": 1, "time": time.time()}
    assert locking.stale_reason({**other, "age": 500}, 3600, 60) == ""
    assert locking.stale_reason({**other, "age": 3601}, 3600, 60) == "older than 3600s"
    assert locking.stale_reason({}, 3600, 60) == "no holder recorded"


def test_ages_are_measured_on_the_hosts_clock():
    rec = '{"host": "ci", "pid": 9, "user": "ci", "action": "deploy", "time": 0, "release": "R"}'
    holder = locking.parse_holder(f"{rec}\nclock 1000 900 990 900\n")
    assert (holder["age"], holder["heartbeat_age"]) == (100, 10)
    assert "for 100s, heartbeat 10s ago" in locking.describe_holder(holder)
    assert "ci@ci pid 9 (deploy R" in locking.describe_holder(holder)
    old = locking.parse_holder(f"{rec}\nclock 1000 900  900\n")  # no heartbeat file
    assert old["age"] == 100 and "heartbeat_age" not in old
    assert locking.parse_holder("clock 1000   \n") == {}  # no lock at all


def test_a_lock_released_or_being_taken_is_retried_not_taken_over():
    assert locking.lock_dir_age("clock 1000   \n") is None  # released meanwhile
    assert locking.lock_dir_age("clock 1000   998\n") == 2  # just made, no holder yet
    assert locking.lock_dir_age('{"pid": 1}\nclock 1000 900 990 900\n') == 100


def test_lock_commands():
    assert lockcmd.read(LAY).render() == (
        "cat /srv/app/.mlctl/lock/holder.json 2>/dev/null; "
        'printf "clock %s %s %s %s\\n" "$(date +%s)" '
        '"$( stat -c %Y /srv/app/.mlctl/lock/holder.json 2>/dev/null)" '
        '"$( stat -c %Y /srv/app/.mlctl/lock/heartbeat 2>/dev/null)" '
        '"$( stat -c %Y /srv/app/.mlctl/lock 2>/dev/null)"'
    )
    assert lockcmd.heartbeat(LAY, "r1").render() == (
        'grep -qF \'"run_id": "r1"\' /srv/app/.mlctl/lock/holder.json 2>/dev/null && '
        "touch -c /srv/app/.mlctl/lock/heartbeat || true"
    )
    assert "touch /srv/app/.mlctl/lock/heartbeat &&" in lockcmd.acquire(LAY).render()


def test_lock_read_and_heartbeat_on_a_real_directory(tmp_path):
    lay = Layout(str(tmp_path))
    sh = lambda c: subprocess.run(["sh", "-c", c.render()], capture_output=True, text=True)  # noqa
    holder = '{"run_id": "r1", "host": "x", "pid": 1}'
    (tmp_path / ".mlctl" / "lock").mkdir(parents=True)
    (tmp_path / ".mlctl" / "lock" / "holder.json").write_text(holder + "\n")
    beat = tmp_path / ".mlctl" / "lock" / "heartbeat"
    os.utime(tmp_path / ".mlctl" / "lock" / "holder.json", (time.time() - 30,) * 2)
    assert sh(lockcmd.heartbeat(lay, "other-run")).returncode == 0 and not beat.exists()
    beat.touch()
    os.utime(beat, (time.time() - 20,) * 2)
    assert sh(lockcmd.heartbeat(lay, "r1")).returncode == 0
    parsed = locking.parse_holder(sh(lockcmd.read(lay)).stdout)
    assert parsed["run_id"] == "r1" and parsed["heartbeat_age"] <= 1 and parsed["age"] >= 29
    assert locking.lock_dir_age(sh(lockcmd.read(lay)).stdout) is not None
    subprocess.run(["rm", "-rf", str(tmp_path / ".mlctl" / "lock")])
    assert locking.lock_dir_age(sh(lockcmd.read(lay)).stdout) is None


def test_signals_map_to_exit_codes_and_messages():
    assert cancel.exit_code(KeyboardInterrupt()) == 130
    assert cancel.exit_code(cancel.Interrupted(signal.SIGTERM)) == 143
    assert cancel.exit_code(cancel.Interrupted(signal.SIGHUP)) == 129
    assert cancel.describe(cancel.Interrupted(signal.SIGTERM)) == "terminated by SIGTERM"
    assert cancel.describe(KeyboardInterrupt()) == "interrupted"


def test_a_signal_while_held_is_raised_when_the_block_ends():
    cancel.install()
    try:
        with pytest.raises(cancel.Interrupted) as e:
            with cancel.held():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.1)
                held_through = True
        assert held_through and e.value.signum == signal.SIGTERM
    finally:
        for s in cancel.SIGNALS:
            signal.signal(s, signal.default_int_handler if s == signal.SIGINT else signal.SIG_DFL)


def test_a_signal_during_cleanup_does_not_cut_it_short():
    cancel.install()
    try:
        with cancel.held(reraise=False):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)
            finished = True
        assert finished  # and nothing raised: the run ends with its own error
    finally:
        for s in cancel.SIGNALS:
            signal.signal(s, signal.default_int_handler if s == signal.SIGINT else signal.SIG_DFL)


def test_a_second_signal_ends_the_process_at_once(tmp_path):
    """The first one raises (and the cleanup starts); the second exits 128 + its number
    without waiting for the cleanup, after the last words (the CI summary)."""
    code = (
        "import os, signal, sys, time\n"
        "from mlctl.core import cancel\n"
        f"cancel.install(lambda c: open({str(tmp_path / 'words')!r}, 'w').write(str(c)))\n"
        "try:\n"
        "    os.kill(os.getpid(), signal.SIGTERM); time.sleep(5)\n"
        "except cancel.Interrupted:\n"
        "    os.kill(os.getpid(), signal.SIGHUP); time.sleep(5)\n"
        "sys.exit(3)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert p.returncode == 129, p.stderr
    assert "SIGHUP again: stopping now" in p.stderr
    assert (tmp_path / "words").read_text() == "129"


def test_lock_wait_option_is_a_setting():
    for task in ("deploy", "rollback"):
        kwargs, settings = BY_NAME[task].split({"lock_wait": 30.0, "yes": True})
        assert settings == {"timeouts.lock_wait": "30.0"} and "lock_wait" not in kwargs
        assert BY_NAME[task].split({"lock_wait": None})[1] == {}


def test_lock_lease_is_validated(tmp_path):
    from mlctl.config import inventory

    inv_file = tmp_path / "environments.yaml"
    inv_file.write_text(
        "project: {name: a, settings_module: a.settings, wsgi: 'a.wsgi:application'}\n"
        "environments: {test: {hosts: [h1]}}\n"
    )
    inv = inventory.load(inv_file)
    assert inventory.resolve(inv, "test", {})["timeouts"]["lock_lease"] == 60.0
    with pytest.raises(InventoryError, match="--set timeouts.lock_lease: must be at least 2"):
        inventory.resolve(inv, "test", {}, {"timeouts.lock_lease": "1"})
    with pytest.raises(InventoryError, match="timeouts.lock_wait: must not be negative"):
        inventory.resolve(inv, "test", {}, {"timeouts.lock_wait": "-1"})


def test_venv_build_commands():
    build = relcmd.build_venv("/usr/bin/python3", "/srv/app/venvs/H", None, "/r/req.txt", "R")
    assert build.render() == (
        "set -e; mkdir -p /srv/app/venvs ; ( cd /srv/app/venvs && for d in *; do "
        '[ -L "$d" ] || [ ! -d "$d" ] || [ -e "$d/.complete" ] || flock -n "$d" rm -rf "$d" '
        "|| true; done ) || true ; mkdir /srv/app/venvs/H.R ; exec 9< /srv/app/venvs/H.R ; "
        "flock 9 ; /usr/bin/python3 -m venv /srv/app/venvs/H.R ; "
        "/srv/app/venvs/H.R/bin/python -m pip install --disable-pip-version-check -q "
        "-r /r/req.txt ; touch /srv/app/venvs/H.R/.complete ; "
        "ln -sfn H.R /srv/app/venvs/H.new-R ; mv -Tf /srv/app/venvs/H.new-R /srv/app/venvs/H ;"
    )
    served = relcmd.build_venv(
        "/usr/bin/python3", "/srv/app/venvs/H", "/w", "/w/req.txt", "R", "/w/mlctl-server.txt"
    ).render()
    pip = "/srv/app/venvs/H.R/bin/python -m pip install --disable-pip-version-check -q "
    assert (
        f"{pip}--no-index --find-links /w -r /w/req.txt ; "
        f"{pip}--no-index --find-links /w -r /w/mlctl-server.txt ; "
        "touch /srv/app/venvs/H.R/.complete ;"
    ) in served
    wh = relcmd.receive_wheelhouse("/srv/app/wheelhouse/H", "R").render()
    assert "tar -xf - -C /srv/app/wheelhouse/H.tmp-R" in wh
    assert wh.endswith(
        "if test -f /srv/app/wheelhouse/H/.complete ; then rm -rf /srv/app/wheelhouse/H.tmp-R ; "
        "else rm -rf /srv/app/wheelhouse/H && "
        "mv -T /srv/app/wheelhouse/H.tmp-R /srv/app/wheelhouse/H ; fi ;"
    )


def sh(cmd: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", cmd], cwd=cwd, capture_output=True, text=True)


def test_half_built_venvs_go_unless_a_running_build_holds_them(tmp_path):
    venvs = tmp_path / "venvs"
    for d in ("half", "done", "held"):
        (venvs / d).mkdir(parents=True)
    (venvs / "done" / ".complete").touch()
    (venvs / "link").symlink_to("done")
    holder = subprocess.Popen(["flock", str(venvs / "held"), "sleep", "20"])
    try:
        time.sleep(0.3)
        assert sh(relcmd.clean_partial_venvs(str(venvs)).render(), tmp_path).returncode == 0
        assert sorted(os.listdir(venvs)) == ["done", "held", "link"]
    finally:
        holder.kill()
        holder.wait()


def test_prune_keeps_linked_venvs_and_removes_the_rest(tmp_path):
    root = tmp_path
    (root / "releases" / "r1").mkdir(parents=True)
    (root / "venvs").mkdir()
    for d in ("A.r1", "B.r0", "old", "half.r2"):
        (root / "venvs" / d).mkdir()
        if d != "half.r2":
            (root / "venvs" / d / ".complete").touch()
    (root / "venvs" / "A").symlink_to("A.r1")
    (root / "venvs" / "B").symlink_to("B.r0")  # no release uses B any more
    (root / "releases" / "r1" / ".venv").symlink_to(root / "venvs" / "A")
    (root / "releases" / "r0").mkdir()
    (root / "releases" / "r0" / ".venv").symlink_to(root / "venvs" / "old")  # an old-style venv
    (root / "wheelhouse" / "B").mkdir(parents=True)
    (root / "wheelhouse" / "A.tmp-r9").mkdir()
    assert sh(prune.unused_venvs(Layout(str(root))).render(), root).returncode == 0
    assert sorted(os.listdir(root / "venvs")) == ["A", "A.r1", "old"]
    assert os.listdir(root / "wheelhouse") == []


def test_under_fab_a_signal_ends_with_its_exit_code_and_the_error_in_the_summary(
    tmp_path, monkeypatch
):
    import json

    from invoke.exceptions import Exit

    from mlctl.cli import invoke as tasks
    from mlctl.cli.registry import TaskSpec
    from mlctl.transport.selection import Selection

    def cancelled(sel, **options):
        raise cancel.Interrupted(signal.SIGTERM)

    monkeypatch.setattr(TaskSpec, "function", lambda self: cancelled)
    monkeypatch.setattr(tasks, "selection_for", lambda c: Selection(env="test"))
    monkeypatch.setenv("MLCTL_SUMMARY", str(tmp_path / "summary.json"))
    try:
        with pytest.raises(Exit) as e:
            tasks._run(BY_NAME["deploy"], None, {"lock_wait": None})
    finally:
        for s in cancel.SIGNALS:
            signal.signal(s, signal.default_int_handler if s == signal.SIGINT else signal.SIG_DFL)
    assert e.value.code == 143
    data = json.loads((tmp_path / "summary.json").read_text())
    assert data["exit_code"] == 143 and data["error"] == "terminated by SIGTERM"
