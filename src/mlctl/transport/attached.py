"""Commands attached to this terminal: output streamed as it comes, stdin forwarded, a pty for
the interactive sessions (`shell`, `dbshell`, `ssh`, and `manage` from a terminal).

The steps of a deploy go through executor.Host.execute (output captured, errors mapped). An
operator's command is different: its output is the point, and its exit code is the answer, so
it is returned instead of raised. It is still rendered by the one wrapper (sudo, the watcher)
and recorded in the journal like any step.
"""

from __future__ import annotations

import contextlib
import io
import signal
import sys
import threading
import time

from mlctl.core import cancel
from mlctl.core.errors import ConnectError
from mlctl.core.shell import Cmd, Watch, mask, wrap
from mlctl.transport.executor import LOST, Host


class MaskedStream:
    """A text stream that masks the run's secrets before they reach the terminal.

    Whole lines are masked; without a pty the end of an unfinished line waits for its newline
    (or the end), so a secret cut across two chunks is still masked. With a pty (a prompt must
    show at once) each chunk is written as it comes, masked."""

    def __init__(self, out, secrets, immediate: bool):
        self.out, self.secrets, self.immediate, self.held = out, secrets, immediate, ""

    def write(self, text: str) -> int:
        text = self.held + text
        head, nl, tail = text.rpartition("\n")
        self.held = "" if self.immediate else tail
        shown = head + nl + (tail if self.immediate else "")
        if shown:
            self.out.write(mask(shown, self.secrets))
            self.out.flush()
        return len(text)

    def flush(self) -> None:
        if self.held:
            self.out.write(mask(self.held, self.secrets))
            self.held = ""
        self.out.flush()


def _input(data: bytes | None):
    return sys.stdin if data is None else io.StringIO(data.decode())


@contextlib.contextmanager
def _ending_signals(pty: bool, runner):
    """SIGTERM and SIGHUP end the command; Ctrl-C too, unless a pty forwards it to the session
    (a REPL or psql stops its statement, as over ssh). Invoke forwards every KeyboardInterrupt
    and waits on, so the handler stops the command itself (closing its channel, or killing it
    locally); the run then ends as cancel.Interrupted would."""
    wanted = (signal.SIGTERM, signal.SIGHUP) + (() if pty else (signal.SIGINT,))
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    ended: list[int] = []

    def end(signum, frame):
        ended.append(signum)
        with contextlib.suppress(Exception):
            runner.kill()

    before = {s: signal.signal(s, end) for s in wanted}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
    if ended:
        raise cancel.Interrupted(ended[0])


def run_attached(
    host: Host, step: str, cmd: Cmd, user: str | None = None, pty=False, data: bytes | None = None
) -> int:
    """Run `cmd` on `host` attached to this terminal; its exit code. `user`: sudo to it (not
    locally); `data`: sent as its stdin (else this process's stdin is forwarded)."""
    sess = host.session
    host.commands += 1
    # A pty ends its session with SIGHUP when the connection goes; without one the watcher
    # stops the command's process group. No time limit: the operator decides.
    watch = None if pty else Watch(sess.cfg.python, f"{sess.journal.run_id}.{host.commands}")
    wrapped = wrap(cmd, user=None if host.local else user, watch=watch)
    shown = wrapped.display(sess.secrets)
    start = time.monotonic()
    out = MaskedStream(sys.stdout, sess.secrets, immediate=pty)
    err = MaskedStream(sys.stderr, sess.secrets, immediate=pty)
    stdin = _input(data)
    try:
        promise = host.c.run(
            wrapped.render(), pty=pty, warn=True, asynchronous=True,
            in_stream=stdin, out_stream=out, err_stream=err,
        )  # fmt: skip
        with _ending_signals(pty, promise.runner):
            r = promise.join()
    except (OSError, EOFError) as e:
        raise ConnectError(f"{host.name}: connection lost during '{step}': {e}") from None
    finally:
        out.flush()
        err.flush()
    code = r.exited
    ms = int((time.monotonic() - start) * 1000)
    lost = code == LOST and not host.local
    sess.journal.record(
        host.name, step, command=shown, exit_code=None if lost else code, duration_ms=ms,
        outcome="connection lost" if lost else ("ok" if code == 0 else "failed"),
    )  # fmt: skip
    if lost:
        raise ConnectError(f"{host.name}: connection lost during '{step}'")
    return code
