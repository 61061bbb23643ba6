"""Run one mlctl step on a host and end it with its connection (see docs/reliability.md).

argv: TIMEOUT TAG COMMAND... COMMAND runs in a session (so a process group) of its own, with
MLCTL_RUN=TAG in its environment. The whole group is stopped (TERM, KILL 5 s later) as soon as
the channel is gone (stdout or stderr has no reader left: sshd closed the channel or died), when
this process gets SIGHUP, SIGTERM or SIGINT, or after TIMEOUT seconds (exit 124, as timeout(1)).
Without a pty sshd signals nothing when a channel closes, so the closed pipe is the one sign.
"""

import os
import select
import signal
import sys
import time

limit, tag, argv = float(sys.argv[1]), sys.argv[2], sys.argv[3:]
os.environ["MLCTL_RUN"] = tag
wake_r, wake_w = os.pipe()
os.set_blocking(wake_w, False)
signal.set_wakeup_fd(wake_w)  # a signal (SIGCHLD too) wakes the poll below at once
got = []
for s in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
    signal.signal(s, lambda n, f: got.append(n))
signal.signal(signal.SIGCHLD, lambda n, f: None)
pid = os.fork()
if pid == 0:
    os.setsid()
    os.close(wake_r)
    os.close(wake_w)
    for s in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE, signal.SIGCHLD):
        signal.signal(s, signal.SIG_DFL)
    try:
        os.execvp(argv[0], argv)
    except OSError as e:
        os.write(2, f"mlctl watch: {argv[0]}: {e.strerror}\n".encode())
        os._exit(127)
status = []


def ended():
    if not status:
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(st)
            status.append(code if code >= 0 else 128 - code)
    return bool(status)


def stop(code):
    # TERM the group, wait up to 5 s for it, then KILL what is left of it.
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except OSError:
            pass
        end = time.monotonic() + 5
        while sig == signal.SIGTERM and not ended() and time.monotonic() < end:
            time.sleep(0.05)
    ended()
    sys.exit(code)


poll = select.poll()
poll.register(wake_r, select.POLLIN)
for fd in (1, 2):
    poll.register(fd, 0)  # reports only POLLERR/POLLHUP: the reader of our output is gone
deadline = time.monotonic() + limit if limit > 0 else None
while not ended():
    if got:
        stop(128 + got[0])
    left = None if deadline is None else max(0, deadline - time.monotonic())
    if left == 0:
        os.write(2, f"mlctl: timed out after {limit:g}s\n".encode())
        stop(124)
    for fd, ev in poll.poll(None if left is None else int(left * 1000) + 1):
        if fd == wake_r:
            os.read(wake_r, 512)
        elif ev & select.POLLNVAL:
            poll.unregister(fd)
        else:
            stop(129)  # the channel is gone: nobody reads this exit status
sys.exit(status[0])
