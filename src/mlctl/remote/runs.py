"""Wait until no process of one mlctl run is left on this host; print the ones left.

argv: RUN_ID SECONDS. A run's processes are those whose environment has MLCTL_RUN=RUN_ID.<n>
(set by remote/watch.py for every step) and the watchers themselves (RUN_ID.<n> in their argv);
this program's own ancestors (the watcher, sudo and shell that run it) are not counted.
Exit 0 when none is left, 1 with the survivors on stdout when SECONDS ran out.
"""

import json
import os
import sys
import time

run, wait = sys.argv[1] + ".", float(sys.argv[2])
tag = ("MLCTL_RUN=" + run).encode()


def ancestors():
    out, pid = set(), os.getpid()
    while pid > 1:
        out.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return out


def left(mine):
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in mine:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        if any(e.startswith(tag) for e in env) or any(a.startswith(run.encode()) for a in argv):
            found.append({"pid": int(name), "cmd": b" ".join(argv).decode(errors="replace")[:200]})
    return found


mine = ancestors()
deadline = time.monotonic() + wait
while True:
    survivors = left(mine)
    if not survivors:
        sys.exit(0)
    if time.monotonic() >= deadline:
        print(json.dumps(survivors))
        sys.exit(1)
    time.sleep(0.2)
