"""Structured log: one JSON line per action and per remote step, secrets masked.

Written under the user's state directory (MLCTL_STATE_DIR or --log-dir moves it); deploy and
rollback also mirror their records to DEPLOY_TO/.mlctl/history.jsonl on each host.
"""

from __future__ import annotations

import getpass
import json
import os
import threading
import time
import uuid
from pathlib import Path

from mlctl.core.shell import mask


def state_dir() -> Path:
    explicit = os.environ.get("MLCTL_STATE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "mlctl"


def local_user() -> str:
    return os.environ.get("MLCTL_USER_NAME") or getpass.getuser()


# The most recent run of this process, for the CI summary (summary.py).
last_run: dict = {}


def timestamp() -> str:
    """Local time with milliseconds and the UTC offset (steps of one run are ms apart)."""
    now = time.time()
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now))
    return f"{base}.{int(now % 1 * 1000):03d}" + time.strftime("%z", time.localtime(now))


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


class Journal:
    """Appends JSON records to `<log_dir>/mlctl.jsonl`; thread-safe, masks every secret."""

    def __init__(self, env: str, action: str, secrets=(), log_dir: str | None = None):
        self.run_id = new_run_id()
        self.env, self.action = env, action
        self.user = local_user()
        self.secrets = [s for s in secrets if s]
        self.dir = Path(log_dir or os.environ.get("MLCTL_LOG_DIR") or state_dir() / "logs")
        self.path = self.dir / "mlctl.jsonl"
        self._lock = threading.Lock()
        last_run.update(run_id=self.run_id, path=str(self.path))

    def add_secrets(self, values) -> None:
        self.secrets += [v for v in values if v and v not in self.secrets]

    def record(self, host: str = "", step: str = "", **fields) -> dict:
        rec = {
            "ts": timestamp(),
            "run_id": self.run_id,
            "env": self.env,
            "host": host,
            "user": self.user,
            "action": self.action,
            "step": step,
        }
        rec.update(fields)
        line = mask(json.dumps(rec, default=str), self.secrets)
        with self._lock:
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
                with self.path.open("a") as fh:
                    fh.write(line + "\n")
            except OSError:
                pass  # logging must never break a deploy; the console still shows the outcome
        return json.loads(line)
