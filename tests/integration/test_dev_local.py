"""The README's main job: `mlctl dev deploy` in a fresh clone serves the app on its port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from .helpers import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_clone(target: Path) -> Path:
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True)
    if head.returncode != 0:
        pytest.skip("the repository has no commit yet")
    subprocess.run(["git", "clone", "-q", str(ROOT), str(target)], check=True)
    return target


def stop_dev_server(clone: Path) -> None:
    pidfile = clone / "var" / "dev" / "run" / "gunicorn.pid"
    if pidfile.exists():
        try:
            os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            pass


@pytest.fixture
def clone(tmp_path):
    target = make_clone(tmp_path / "clone")
    yield target
    stop_dev_server(target)


@pytest.fixture
def other_clone(tmp_path):
    target = make_clone(tmp_path / "other")
    yield target
    stop_dev_server(target)


def run(clone: Path, *args: str, port: int) -> subprocess.CompletedProcess:
    sets = [
        "--set",
        f"bind=127.0.0.1:{port}",
        "--set",
        f"health.url=http://127.0.0.1:{port}/healthz",
    ]
    env = {k: v for k, v in os.environ.items() if k != "MLCTL_INVENTORY"}
    return subprocess.run(
        [sys.executable, "-m", "mlctl.cli", *sets, "dev", *args],
        cwd=clone,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_dev_deploy_in_fresh_clone_then_rollback(clone):
    port = free_port()
    first = run(clone, "deploy", port=port)
    assert first.returncode == 0, first.stderr
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
        body = json.loads(r.read())
    current = os.readlink(clone / "var" / "dev" / "current").split("/")[-1]
    assert body == {"release": current, "database": "ok", "status": "ok"}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
        assert r.status == 200 and b"<html" in r.read().lower()
    second = run(clone, "deploy", port=port)
    assert second.returncode == 0, second.stderr
    back = run(clone, "rollback", port=port)
    assert back.returncode == 0, back.stderr
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
        assert json.loads(r.read())["release"] == current


def test_second_dev_environment_on_the_same_port_fails_naming_it_and_the_first_keeps_serving(
    clone, other_clone
):
    port = free_port()
    assert run(clone, "deploy", port=port).returncode == 0
    pid = int((clone / "var" / "dev" / "run" / "gunicorn.pid").read_text())
    first = os.readlink(clone / "var" / "dev" / "current").split("/")[-1]
    p = run(other_clone, "deploy", port=port)
    last = p.stderr.strip().splitlines()[-1]
    assert p.returncode != 0, p.stderr
    assert f"port {port} is held by pid {pid} (" in last, last
    assert last.endswith(
        "not by this environment's gunicorn — stop that process, or give this environment its "
        "own port (bind, health.url)"
    ), last
    assert not (other_clone / "var" / "dev" / "current").exists()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
        assert json.loads(r.read())["release"] == first
    os.kill(pid, 0)  # never signalled


def test_a_stale_dev_pidfile_is_never_signalled(clone):
    """The pidfile names a live process that is not this environment's gunicorn (its pid was
    reused): the deploy leaves it alone and serves."""
    port = free_port()
    other = subprocess.Popen(["sleep", "300"])
    try:
        run_dir = clone / "var" / "dev" / "run"
        run_dir.mkdir(parents=True)
        (run_dir / "gunicorn.pid").write_text(f"{other.pid}\n")
        p = run(clone, "deploy", port=port)
        assert p.returncode == 0, p.stderr
        assert f"pid {other.pid} is not this environment's gunicorn (sleep 300); not signalled" in (
            p.stderr
        )
        assert other.poll() is None
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/no-such-page", timeout=10)
        except urllib.error.HTTPError as e:
            assert e.code == 404
        # Django's own stderr (its request logger) reaches the log, not /dev/null
        log = (clone / "var" / "dev" / "shared" / "logs" / "gunicorn.log").read_text()
        assert "Not Found: /no-such-page" in log, log[-2000:]
    finally:
        other.kill()
        other.wait()
