"""The real executables (mlctl, fab, inv) in a project directory: tasks, selections, version."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

import mlctl
from mlctl.cli.registry import TASKS
from tests.unit.conftest import BIN, REPO, clean_environ, one_line

TASK_NAMES = sorted(t.name for t in TASKS)
ENVIRONMENTS = ["dev", "test", "live"]
LIVE_HOSTS = ["web1.example.internal", "web2.example.internal"]


@pytest.fixture
def project(tmp_path):
    """A project directory like the repository's root: inventory (fake hosts), fabfile, tasks."""
    for name in ("environments.yaml", "fabfile.py", "tasks.py"):
        shutil.copy(REPO / name, tmp_path / name)
    return tmp_path


def run(
    project, tool: str, *args: str, timeout: float = 60, env: dict | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / tool), *args],
        cwd=project,
        env={**clean_environ(project), **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def listed(output: str) -> list[str]:
    """Task names from `fab --list` / `inv --list`."""
    return sorted(m.group(1) for m in re.finditer(r"^  (\S+)", output, re.M))


def test_mlctl_help_lists_every_task(project):
    r = run(project, "mlctl", "--help")
    assert r.returncode == 0, r.stderr
    for spec in TASKS:
        assert re.search(rf"^\s+{spec.name}\s+\S", r.stdout, re.M), spec.name


def test_mlctl_version(project):
    r = run(project, "mlctl", "--version")
    assert (r.returncode, r.stdout.strip()) == (0, f"mlctl {mlctl.__version__}")


@pytest.mark.parametrize("tool", ["fab", "inv"])
def test_fab_and_inv_list_tasks_and_environments(project, tool):
    r = run(project, tool, "--list")
    assert r.returncode == 0, r.stderr
    assert listed(r.stdout) == sorted(TASK_NAMES + ENVIRONMENTS)


@pytest.mark.parametrize("tool", ["fab", "inv"])
def test_list_still_works_with_a_broken_inventory(project, tool):
    (project / "environments.yaml").write_text("environments: [\n")
    r = run(project, tool, "--list")
    assert r.returncode == 0, r.stderr
    assert listed(r.stdout) == TASK_NAMES


@pytest.mark.parametrize(
    "argv",
    [
        ["mlctl", "live", "config", "--json"],
        ["fab", "live", "config", "--json"],
        ["fab", "-H", "live", "config", "--json"],
        ["fab", "-H", LIVE_HOSTS[1], "config", "--json"],
        ["inv", "live", "config", "--json"],
    ],
    ids=lambda a: " ".join(a),
)
def test_selection_forms_reach_the_same_environment(project, argv):
    r = run(project, *argv)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["environment"] == "live"
    assert data["inventory"] == str(project / "environments.yaml")
    assert data["settings"]["hosts"] == LIVE_HOSTS
    # `targets` shows what the task would act on: one host when -H names a host
    expected = [LIVE_HOSTS[1]] if LIVE_HOSTS[1] in argv else LIVE_HOSTS
    assert data["targets"] == expected


def test_host_argument_narrows_the_selection(project):
    """What `fab -H <host>` selects, checked on the function behind it."""
    from mlctl.config import inventory
    from mlctl.transport.selection import from_host_arg

    inv = inventory.load(project / "environments.yaml")
    sel = from_host_arg(inv, LIVE_HOSTS[1])
    assert (sel.env, sel.hosts) == ("live", [LIVE_HOSTS[1]])
    assert (from_host_arg(inv, "live").env, from_host_arg(inv, "live").hosts) == ("live", None)
    sel = from_host_arg(inv, f"deploy@{LIVE_HOSTS[0]}:22")  # the same host, written in full
    assert (sel.env, sel.hosts) == ("live", [LIVE_HOSTS[0]])


@pytest.mark.parametrize("argv", [["fab", "-H", "nosuch", "config"], ["mlctl", "nosuch", "config"]])
def test_unknown_name_lists_the_known_environments(project, argv):
    r = run(project, *argv)
    assert r.returncode == 3
    line = one_line(r.stderr)
    assert "nosuch" in line and "dev, test, live)" in line
    expected = {
        "fab": "error: 'nosuch' is neither an environment (dev, test, live) nor one of their hosts",
        "mlctl": "error: unknown environment 'nosuch' (known: dev, test, live)",
    }
    assert line == expected[argv[0]]


def test_fab_reports_an_invalid_inventory_in_one_line(project):
    (project / "environments.yaml").write_text(
        (project / "environments.yaml").read_text().replace("keep_releases: 5", "keep_releases: x")
    )
    r = run(project, "fab", "-H", "live", "config")
    assert r.returncode == 3
    assert re.fullmatch(
        r"error: environments\.yaml:\d+: defaults\.keep_releases: expected int, " r"got a string",
        one_line(r.stderr),
    )


def test_inv_check_runs_the_local_checks(project):
    r = run(project, "inv", "check", timeout=120)
    assert r.returncode in (0, 1, 2), r.stderr
    assert "Traceback" not in r.stderr
    assert "localhost" in r.stdout + r.stderr


def test_summary_file_is_written_for_ci_also_on_failure(project, tmp_path):
    ok = tmp_path / "ok.json"
    r = run(project, "mlctl", "live", "config", "--summary", str(ok))
    assert r.returncode == 0, r.stderr
    data = json.loads(ok.read_text())
    assert (data["task"], data["env"], data["exit_code"], data["outcome"]) == (
        "config",
        "live",
        0,
        "ok",
    )
    bad = tmp_path / "bad.json"
    r = run(project, "fab", "live", "deploy", env={"MLCTL_SUMMARY": str(bad)})
    assert r.returncode == 4
    data = json.loads(bad.read_text())
    assert (data["outcome"], data["exit_code"]) == ("failed", 4)
    assert data["error"] == r.stderr.strip().removeprefix("error: ")  # the same one line


# ---------------------------------------------------------------- one runner behind all three

TOOLS = ["mlctl", "fab", "inv"]


def ending(project, tool: str, *args: str, env: dict) -> tuple:
    """How a task ended under `tool`: exit code, its error lines, the CI summary's verdict."""
    summary = project / f"summary-{tool}.json"
    r = run(project, tool, *args, env={**env, "MLCTL_SUMMARY": str(summary)})
    return r.returncode, error_lines(r.stderr), verdict(summary)


def error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("error: ")]


def verdict(summary) -> tuple:
    data = json.loads(summary.read_text())
    return data["task"], data["env"], data["exit_code"], data["outcome"], data["error"]


def test_an_unknown_environment_ends_alike_under_every_front_end(project):
    endings = {t: ending(project, t, "config", env={"MLCTL_ENV": "nosuch"}) for t in TOOLS}
    line = "error: unknown environment 'nosuch' (known: dev, test, live)"
    expected = (3, [line], ("config", "nosuch", 3, "failed", line.removeprefix("error: ")))
    assert endings == {t: expected for t in TOOLS}


def test_a_bad_inventory_ends_alike_under_every_front_end(project):
    inv = project / "environments.yaml"
    inv.write_text(inv.read_text().replace("keep_releases: 5", "keep_releases: x"))
    endings = {t: ending(project, t, "config", env={"MLCTL_ENV": "live"}) for t in TOOLS}
    code, lines, summary = endings["mlctl"]
    assert code == 3 and len(lines) == 1, endings
    assert re.fullmatch(
        r"error: environments\.yaml:\d+: defaults\.keep_releases: expected int, got a string",
        lines[0],
    )
    assert summary == ("config", "live", 3, "failed", lines[0].removeprefix("error: "))
    assert endings == {t: endings["mlctl"] for t in TOOLS}


@pytest.fixture
def silent_host():
    """A TCP port that accepts and never says a word: a connect under way, until interrupted."""
    import socket

    server = socket.create_server(("127.0.0.1", 0))
    yield server
    server.close()


@pytest.mark.parametrize("tool", TOOLS)
def test_ctrl_c_during_a_task_ends_alike_under_every_front_end(project, silent_host, tool):
    import signal
    import time

    port = silent_host.getsockname()[1]
    (project / "environments.yaml").write_text(
        "project: {name: app, settings_module: app.settings, wsgi: app.wsgi:application}\n"
        "defaults: {deploy_to: /srv/app, user: deploy, timeouts: {connect: 3}}\n"
        f"environments:\n  test:\n    hosts: ['127.0.0.1:{port}']\n"
    )
    summary = project / "summary.json"
    env = {**clean_environ(project), "MLCTL_ENV": "test", "MLCTL_SUMMARY": str(summary)}
    p = subprocess.Popen(
        [str(BIN / tool), "check"],
        cwd=project,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    silent_host.settimeout(30)
    conn, _ = silent_host.accept()  # the task is running: it is connecting to this host
    time.sleep(0.3)
    p.send_signal(signal.SIGINT)
    _, stderr = p.communicate(timeout=60)
    conn.close()
    line = "error: interrupted; the lock was released and the current release left serving"
    assert (p.returncode, error_lines(stderr)) == (130, [line]), stderr
    assert verdict(summary) == ("check", "test", 130, "failed", "interrupted")
