# The probe program's common ground (see remote/probe.py): its configuration, paths under
# DEPLOY_TO, running a command and timing one probe.
import json
import os
import subprocess
import time

if __package__:  # imported by mlctl; on a host remote/hostfiles.py is sent in front
    from mlctl.remote.hostfiles import read

CFG = {}  # the program's one argument (commands/probes.probe_config), filled by main()
# Texts of the programs this one runs, put in by commands/probes.program():
# "load_env" (a shell line exporting ./.env), "health" and "django_probe" (Python programs).
PROGRAMS = {}


def path(*parts):
    return os.path.join(CFG["deploy_to"], *parts)


def run(argv, timeout=60, cwd=None):
    try:
        p = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
        )
        return {"code": p.returncode, "out": p.stdout[-4000:], "err": p.stderr[-4000:]}
    except FileNotFoundError:
        return {"code": 127, "out": "", "err": "%s: command not found" % argv[0]}
    except subprocess.TimeoutExpired:
        return {"code": 124, "out": "", "err": "timed out after %ss" % timeout}


def last_words(r):
    """The last non-blank line a command printed (stderr first), or ""."""
    lines = [x for x in (r["err"] + r["out"]).strip().splitlines() if x.strip()]
    return lines[-1] if lines else ""


def as_app(argv):
    # On servers this program runs as root; the app's own code runs as the app user.
    if CFG["local"] or os.geteuid() != 0:
        return argv
    return ["sudo", "-n", "-u", CFG["app_user"]] + argv


def in_release(argv):
    # The release's .env is exported like `manage.py` sees it, line by line as data (the text of
    # commands/db.load_env): sourcing it would run a value's `$(...)` as root.
    load = PROGRAMS["load_env"]
    shell = 'cd "$1" && if [ -f ./.env ]; then ' + load + '; fi && shift && exec "$@"'
    return as_app(["sh", "-c", shell, "sh", path("current")] + argv)


def timed(fn):
    start = time.monotonic()
    try:
        out = fn()
    except Exception as e:  # noqa: BLE001 — a probe that breaks is a fact too
        out = {"failed": True, "error": "%s: %s" % (type(e).__name__, e)}
    out["ms"] = int((time.monotonic() - start) * 1000)
    return out


def current_id():
    cur = path("current")
    return os.path.basename(os.readlink(cur)) if os.path.islink(cur) else None


def meta_of(rid):
    """The release's metadata mlctl recorded at its deploy ({} when none or unreadable)."""
    if not rid:
        return {}
    try:
        return json.loads(read(path(".mlctl", "releases", rid + ".json"), "{}") or "{}")
    except ValueError:
        return {}
