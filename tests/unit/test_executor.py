"""The one executor behind Host.run and Host.stream: how a command ends maps to one error, the
journal records it once, and a dry run prints and records the very command a real run runs."""

from __future__ import annotations

import json

import pytest

from mlctl.config import inventory
from mlctl.core.errors import CommandTimeout, ConnectError, RemoteCommandFailed
from mlctl.core.shell import Cmd
from mlctl.transport.executor import LOST, Result, failure, outcome
from mlctl.transport.session import Session
from tests.unit.conftest import BASE


@pytest.fixture
def host(write_inventory, tmp_path):
    """The dev (local) environment's host: commands really run, through the watcher."""
    text = BASE.replace("    deploy_to: ./var/dev\n", f"    deploy_to: {tmp_path}/dev\n")
    cfg = inventory.resolve(inventory.load(write_inventory(text)), "dev", {}, {})
    with Session(cfg, "deploy", log_dir=str(tmp_path / "logs")) as sess:
        sess.connect()
        yield sess.hosts[0]


def records(host) -> list[dict]:
    path = host.session.journal.path
    return [json.loads(line) for line in path.read_text().splitlines()]


def call(host, how: str, cmd: Cmd, **kw):
    if how == "run":
        return host.run("step", cmd, **kw)
    return host.stream("step", cmd, b"data", **{k: v for k, v in kw.items() if k == "root"})


@pytest.mark.parametrize("how", ["run", "stream"])
def test_a_host_side_timeout_is_command_timeout_on_both_paths(host, how, monkeypatch):
    monkeypatch.setitem(host.session.cfg.settings["timeouts"], "command", 1)
    with pytest.raises(CommandTimeout) as e:
        call(host, how, Cmd.of("sleep", "30"))
    assert str(e.value) == (
        "localhost: step 'step' timed out after 1s (timeouts.command) — "
        "raise timeouts.command or check the host"
    )
    rec = records(host)[-1]
    assert (rec["step"], rec["exit_code"], rec["outcome"]) == ("step", 124, "timeout")
    assert ("bytes" in rec) == (how == "stream")


@pytest.mark.parametrize("how", ["run", "stream"])
def test_a_failing_command_is_remote_command_failed_on_both_paths(host, how):
    with pytest.raises(RemoteCommandFailed) as e:
        call(host, how, Cmd.of("sh", "-c", "echo no such thing >&2; exit 3"))
    assert str(e.value) == "localhost: step 'step' failed (exit 3): no such thing"
    assert records(host)[-1]["outcome"] == "failed"


def test_warn_returns_the_failure_and_stream_feeds_stdin(host):
    r = host.run("step", Cmd.of("sh", "-c", "exit 3"), warn=True)
    assert (r.ok, r.code, records(host)[-1]["outcome"]) == (False, 3, "warn")
    r = host.stream("step", Cmd.of("cat"), b"archive bytes")
    assert (r.stdout, records(host)[-1]["bytes"]) == ("archive bytes", 13)


def test_planning_prints_and_records_the_command_a_real_run_records(host, capsys, tmp_path):
    """The same step, planned then run from the same point: the same rendered command."""
    made = tmp_path / "made"
    cmd = Cmd.of("touch", str(made))
    host.session.planning = True
    planned = host.run("make", cmd, timeout=7)
    assert (planned.ok, planned.stdout) == (True, "")
    printed = capsys.readouterr().out
    rec = records(host)[-1]
    assert rec["outcome"] == "planned"
    assert printed.strip() == f"[localhost] make: {rec['command']}"
    assert "<mlctl-watch> 7 " in rec["command"]  # the timeout the real run runs under
    assert not made.exists()  # planned, not run
    host.session.planning, host.commands = False, 0  # the same step number as the planned one
    host.run("make", cmd, timeout=7)
    real = records(host)[-1]
    assert (real["outcome"], real["command"]) == ("ok", rec["command"])
    assert made.exists()


def test_a_lost_channel_is_a_connect_error_even_with_warn():
    lost = Result("", "", LOST, 5)
    assert outcome(lost, warn=True, local=False) == "connection lost"
    error = failure("web1", "build", lost, 60, warn=True, local=False)
    assert isinstance(error, ConnectError)
    assert str(error) == "web1: connection lost during 'build'"
    # a local command's -1 is an ordinary failure
    assert isinstance(failure("h", "s", lost, 60, False, True), RemoteCommandFailed)
    assert failure("h", "s", Result("", "", 0, 1), 60, False, False) is None
    timeout = failure("h", "s", Result("", "", 124, 1), 60, False, False)
    assert isinstance(timeout, CommandTimeout) and "after 60s" in str(timeout)


def test_an_error_while_putting_back_is_named_and_returned(host, capsys):
    from mlctl.core.errors import MlctlError

    def restore(h):
        raise MlctlError(f"{h.name}: step 'restore' failed (exit 1)", "check the dump")

    sess = host.session
    results = sess.each_settled(restore, putting_back="the database")
    assert [type(r) for r in results] == [MlctlError]  # the caller still sees it, unraised
    err = capsys.readouterr().err
    assert (
        "could not put back the database on localhost: localhost: step 'restore' failed "
        "(exit 1) — check the dump"
    ) in " ".join(err.split())
    sess.each_settled(restore)  # without `putting_back`: returned only, as before
    assert "could not put back" not in capsys.readouterr().err
