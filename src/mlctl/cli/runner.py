"""Running one task, whichever front end asked (`mlctl`, `fab`, `inv`): the same signal handling,
the same one-line error, the same exit code and the same CI summary.

The front ends only build the Selection and the task's options their own way (argparse, or an
Invoke Context and its -H host) and hand them to `run_task`.
"""

from __future__ import annotations

import time

from mlctl.cli import summary
from mlctl.cli.registry import TaskSpec
from mlctl.core import cancel, console
from mlctl.core.errors import MlctlError


def run_task(spec: TaskSpec, select, options: dict, env: str | None = None, debug=False) -> int:
    """Run `spec` on the Selection `select()` returns; return the exit code.

    `select` is called inside the error handling, so a bad inventory or an unknown environment
    ends like any task's failure. `env` names the environment in the summary until the Selection
    is known.
    """
    started, state = time.time(), {"env": env, "code": 1, "error": ""}

    def last_words(code: int) -> None:
        summary.write(spec.name, state["env"], code, "stopped by a second signal", started)

    cancel.install(last_words)
    try:
        sel = select()
        state["env"] = sel.env
        if spec.needs_env:
            sel.config()  # a bad inventory or unknown environment fails before the task loads
        state["code"] = int(spec.function()(sel, **options) or 0)
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 — each ends in one line
        state["code"], state["error"] = ending(spec, e, debug)
    finally:
        summary.write(spec.name, state["env"], state["code"], state["error"], started)
    return state["code"]


def ending(spec: TaskSpec, error: BaseException, debug: bool) -> tuple[int, str]:
    """Say how the task ended in one line; (exit code, the error for the summary)."""
    if isinstance(error, MlctlError):
        _traceback(debug)
        console.fail(str(error))
        return error.exit_code, str(error)
    if isinstance(error, KeyboardInterrupt):  # Ctrl-C, SIGTERM, SIGHUP
        why = cancel.describe(error)
        console.fail(f"{why}; {cancel.AFTERMATH}")
        return cancel.exit_code(error), why
    _traceback(debug)  # an unexpected error: still one line; -v shows where it came from
    hint = "" if debug else " — run again with -v for the traceback"
    what = f"{type(error).__name__}: {error}"
    console.fail(f"{spec.name} failed unexpectedly: {what}{hint}")
    return 1, what


def _traceback(debug: bool) -> None:
    if debug:
        import traceback

        console.info(console.clean(traceback.format_exc()))
