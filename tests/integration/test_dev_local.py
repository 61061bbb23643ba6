"""The README's main job: `mlctl dev deploy` in a fresh clone serves the app on its port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from .helpers import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def clone(tmp_path):
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True)
    if head.returncode != 0:
        pytest.skip("the repository has no commit yet")
    target = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(target)], check=True)
    yield target
    pidfile = target / "var" / "dev" / "run" / "gunicorn.pid"
    if pidfile.exists():
        try:
            os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            pass


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
