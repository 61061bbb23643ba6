# The dev (pidfile) server's gunicorn: stop it only when the pidfile names THIS environment's
# gunicorn, and say who holds the port when it is not ours.
# argv: ACTION PIDFILE DEPLOY_TO BIND [LOGFILE]; ACTION: "stop" (then the port must be free),
# "check" (the port only) or "halt" (stop only).
# Prints {"log_size": N} (where the app's log stands, so a failure can show what came after).
# Exit 75 with one line on stderr when another process holds the port.
import json
import os
import signal
import sys
import time

action, pidfile, deploy_to, bind = sys.argv[1:5]
logfile = sys.argv[5] if len(sys.argv) > 5 else ""
root = os.path.realpath(deploy_to) + os.sep


def read(path):
    try:
        with open(path, "rb") as fh:
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except PermissionError:
        return True
    except OSError:
        return False


def cmdline(pid):
    return read("/proc/%d/cmdline" % pid).replace("\0", " ").strip()


def ours(pid):
    """A gunicorn started by mlctl for this environment: its command names our pidfile, or it
    runs in one of our releases (a process title set by setproctitle hides the command)."""
    if pidfile in cmdline(pid):
        return True
    try:
        return os.path.realpath("/proc/%d/cwd" % pid).startswith(root)
    except OSError:
        return False


def listener_inodes(port):
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in read(table).splitlines()[1:]:
            f = line.split()
            if len(f) > 9 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f[9])
    return inodes


def holders(inodes):
    """Pids whose open files include one of the listening sockets (those we may look at)."""
    wanted = {"socket:[%s]" % i for i in inodes}
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fds = os.listdir("/proc/%s/fd" % name)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink("/proc/%s/fd/%s" % (name, fd)) in wanted:
                    out.append(int(name))
                    break
            except OSError:
                continue
    return sorted(out)


def stop():
    text = read(pidfile).strip()
    if not text:
        return
    pid = int(text) if text.isdigit() else 0
    if pid and alive(pid) and ours(pid):
        os.kill(pid, signal.SIGTERM)
        for _ in range(150):
            if not alive(pid):
                break
            time.sleep(0.1)
    elif pid and alive(pid):
        print(
            "stale pidfile %s: pid %d is not this environment's gunicorn (%s); not signalled"
            % (pidfile, pid, cmdline(pid)[:120]),
            file=sys.stderr,
        )
    try:
        os.remove(pidfile)
    except OSError:
        pass


def check_port():
    if bind.startswith("unix:") or ":" not in bind:
        return
    port = int(bind.rpartition(":")[2])
    inodes = listener_inodes(port)
    if not inodes:
        return
    pids = holders(inodes)
    if any(ours(p) for p in pids):
        return
    if not pids:
        who = "another process (not visible to this user)"
    else:
        # the oldest holder is the master; workers share its socket
        who = "pid %d (%s)" % (pids[0], cmdline(pids[0])[:160] or "?")
    print(
        "port %d is held by %s, not by this environment's gunicorn" % (port, who), file=sys.stderr
    )
    sys.exit(75)


if action in ("stop", "halt"):
    stop()
if action != "halt":
    check_port()
size = os.path.getsize(logfile) if logfile and os.path.exists(logfile) else 0
print(json.dumps({"log_size": size}))
