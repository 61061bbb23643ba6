"""What must hold on every host after every case, whatever the case did.

- `current` points to a complete release: its MANIFEST matches the files, its REVISION is the
  release the world expects (the last good one);
- the site, through nginx, serves that release's id;
- the migration state matches that release: `migrate --check` passes with its code, and the
  database has applied exactly the app migrations the release has;
- the canary table's checksum is unchanged;
- the last good release and its before-migrate snapshot (if it had one) still exist;
- the lock is free, or held by a process alive on this machine;
- the history records every attempt that took the lock ("started") with its outcome ("finished").
"""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import time
import urllib.error
import urllib.request

from mlctl.transport.locking import process_alive

from .harness import CANARY_SUM, D

HOST_PROBE = r"""
import json, os, subprocess, sys
D, mark, snap, canary_sql = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
cur = os.path.join(D, "current")
out = {}

def sh(cmd, user=None):
    argv = ["sh", "-c", cmd]
    if user:
        argv = ["runuser", "-u", user, "--"] + argv
    p = subprocess.run(argv, capture_output=True, text=True, cwd="/")
    return p.returncode, (p.stdout + p.stderr).strip()

def psql(sql):
    q = sql.replace("'", "'\\''")
    return sh("set -a; . %s/shared/.env; set +a; psql -tAX -c '%s'" % (D, q))

out["link"] = os.readlink(cur) if os.path.islink(cur) else None
out["is_dir"] = os.path.isdir(cur)
out["manifest"] = sh("cd %s && sha256sum -c --quiet MANIFEST" % cur)
try:
    out["revision"] = open(os.path.join(cur, "REVISION")).read().strip()
except OSError:
    out["revision"] = None
out["migrate_check"] = sh(
    "cd %s && set -a && . ./.env && set +a && ./.venv/bin/python manage.py migrate --check" % cur,
    user="www-data",
)
mig = os.path.join(cur, "notes", "migrations")
out["files"] = sorted(
    n[:-3] for n in (os.listdir(mig) if os.path.isdir(mig) else []) if n[:4].isdigit()
    and n.endswith(".py")
)
out["applied"] = psql("select name from django_migrations where app = 'notes' order by name")
out["canary"] = psql(canary_sql)
lock = os.path.join(D, ".mlctl", "lock")
out["lock"] = None
if os.path.isdir(lock):
    try:
        out["lock"] = json.loads(open(os.path.join(lock, "holder.json")).read().splitlines()[0])
    except (OSError, ValueError, IndexError):
        out["lock"] = {}
out["snapshot"] = (
    os.path.exists(os.path.join(D, "backups", "db", snap)) if snap else None
)
try:
    lines = open(os.path.join(D, ".mlctl", "history.jsonl")).read().splitlines()
except OSError:
    lines = []
out["history"] = lines[mark:]
print(json.dumps(out))
"""


def probe(world, host) -> dict:
    snap = world.snapshots.get(world.good, "")
    mark = world.history_mark.get(host.address, 0)
    args = " ".join(shlex.quote(str(a)) for a in (D, mark, snap, CANARY_SUM))
    argv = world.farm.ssh_argv(host, f"python3 - {args}")
    p = subprocess.run(argv, input=HOST_PROBE, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"{host}: invariant probe failed: {p.stderr}"
    return json.loads(p.stdout.strip().splitlines()[-1])


def served_release(address: str, wait: float = 15) -> tuple[int | None, str]:
    """What the site answers through nginx (retried briefly: a restart may be finishing)."""
    deadline = time.monotonic() + wait
    last: tuple[int | None, str] = (None, "no answer")
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{address}/healthz", timeout=10) as r:
                return r.status, json.loads(r.read()).get("release", "")
        except urllib.error.HTTPError as e:
            last = (e.code, e.read().decode(errors="replace")[:200])
        except (OSError, ValueError) as e:
            last = (None, str(e))
        time.sleep(0.3)
    return last


def host_problems(world, host, facts: dict) -> list[str]:
    good = world.good
    bad = []
    if facts["link"] != f"releases/{good}":
        bad.append(f"current -> {facts['link']!r}, expected releases/{good}")
    if not facts["is_dir"]:
        bad.append("current does not resolve to a directory")
    if facts["manifest"][0] != 0:
        bad.append(f"MANIFEST does not match the files: {facts['manifest'][1][-300:]}")
    if facts["revision"] != good:
        bad.append(f"REVISION is {facts['revision']!r}")
    status, served = served_release(host.address)
    if (status, served) != (200, good):
        bad.append(f"site answers {status} {served!r}, expected 200 {good!r}")
    if facts["migrate_check"][0] != 0:
        bad.append(f"migrate --check: {facts['migrate_check'][1][-300:]}")
    applied = facts["applied"][1].split()
    if facts["applied"][0] != 0 or applied != facts["files"]:
        bad.append(f"applied notes migrations {applied} != the release's {facts['files']}")
    if facts["canary"] != [0, world.canary[host.address]]:
        bad.append(f"canary checksum changed: {facts['canary']}")
    if facts["snapshot"] is False:
        bad.append(f"snapshot {world.snapshots[good]} of the last good release is gone")
    lock = facts["lock"]
    if lock is not None:
        mine = lock.get("host") == socket.gethostname()
        if not (mine and process_alive(int(lock.get("pid") or 0))):
            bad.append(f"lock left behind: {lock}")
    bad += history_problems(world, facts["history"])
    return bad


def history_problems(world, lines: list[str]) -> list[str]:
    started, finished = {}, {}
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            return [f"history line is not JSON: {line[:200]!r}"]
        if rec.get("event") == "started":
            started[rec.get("run_id")] = rec
        elif rec.get("event") == "finished":
            if not rec.get("outcome"):
                return [f"finished record without an outcome: {line[:200]}"]
            finished[rec.get("run_id")] = rec
    missing = [r for r in started if r not in finished]
    if missing and not world.unfinished_ok:
        return [f"history has no outcome for run(s) {missing}"]
    return []


def check_world(world) -> None:
    """Assert every invariant on every host; one message listing everything that is wrong."""
    facts = world.each(lambda h: probe(world, h))
    problems = []
    for host, f in zip(world.hosts, facts, strict=True):
        problems += [f"{host.name} ({host.address}): {p}" for p in host_problems(world, host, f)]
    assert not problems, f"invariants broken after {world.case}:\n  " + "\n  ".join(problems)
