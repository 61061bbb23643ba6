"""Shared helpers for the unit tests: a throwaway inventory and the real `mlctl` as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv's bin: mlctl, fab, inv

# Line numbers matter: the inventory tests assert `environments.yaml:LINE: ...` against this text.
BASE = textwrap.dedent("""\
    project:
      name: app
      settings_module: app.settings
      wsgi: app.wsgi:application
    defaults:
      deploy_to: /srv/app
      user: deploy
    environments:
      dev:
        connection: local
        deploy_to: ./var/dev
      test:
        hosts: [t1.example.internal]
      live:
        hosts:
          - w1.example.internal
          - w2.example.internal
        protected: true
        allowed_users: [alice]
    """)


def clean_environ(tmp: Path, **extra: str) -> dict:
    """The process environment without the caller's MLCTL_* settings, state kept under `tmp`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLCTL_")}
    env.update(MLCTL_STATE_DIR=str(tmp / "state"), COLUMNS="200", NO_COLOR="1")
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """In-process tests see no MLCTL_* variable of the person running them."""
    for name in list(os.environ):
        if name.startswith("MLCTL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MLCTL_STATE_DIR", str(tmp_path / "state"))


@pytest.fixture
def write_inventory(tmp_path):
    def write(text: str = BASE, name: str = "environments.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture
def mlctl(tmp_path):
    """Run the real CLI (`python -m mlctl.cli ...`) in `tmp_path`; stdin is never a terminal."""

    def run(
        *args: str, env: dict | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "mlctl.cli", *args],
            cwd=tmp_path,
            env=clean_environ(tmp_path, **(env or {})),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


def one_line(stderr: str) -> str:
    """The single non-empty stderr line of a failed run (asserting there is exactly one)."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, stderr
    return lines[0]
