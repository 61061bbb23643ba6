"""A JSON summary of one task for CI: set MLCTL_SUMMARY=PATH (or pass --summary PATH).

It is written however the task ends (success, failure, Ctrl-C) so a CI job can upload it as an
artifact next to the JSON log it points to.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from mlctl.core import console
from mlctl.transport import journal


def write(task: str, env: str | None, code: int, error: str, started: float) -> None:
    path = os.environ.get("MLCTL_SUMMARY")
    if not path:
        return
    run = journal.last_run
    data = {
        "task": task,
        "env": env,
        "exit_code": code,
        "outcome": "ok" if code == 0 else "failed",
        "error": console.clean(error),
        "user": journal.local_user(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 3),
        "run_id": run.get("run_id"),
        "log": run.get("path"),
        "steps": _steps(run),
    }
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, indent=1) + "\n")
    except OSError as e:
        console.warn(f"summary not written to {path}: {e.strerror}")


def _steps(run: dict) -> list[dict]:
    """This run's records from the JSON log (already masked), without the commands' text."""
    log, run_id = run.get("path"), run.get("run_id")
    if not log or not os.path.exists(log):
        return []
    out = []
    with open(log) as fh:
        for line in fh:
            rec = json.loads(line)
            if rec.get("run_id") == run_id:
                rec.pop("command", None)
                out.append(rec)
    return out
