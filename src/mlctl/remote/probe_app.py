# The probe program's facts about the app: its release, history and lock, its venv's `pip check`,
# the Django probe, gunicorn, the site's health requests, the app's log and the app user's view of
# the files (see remote/probe.py).
import concurrent.futures
import http.client
import json
import os
import socket
import sys
import time
import urllib.parse

if __package__:  # imported by mlctl; on a host these modules are sent in front
    from mlctl.remote.hostfiles import listdir, read, tail_lines
    from mlctl.remote.probe_base import (
        CFG,
        PROGRAMS,
        as_app,
        current_id,
        in_release,
        last_words,
        meta_of,
        path,
        run,
    )
    from mlctl.remote.probe_system import unit_state


def release():
    cur = path("current")
    rid = current_id()
    venv = os.path.join(cur, ".venv")
    return {
        "current": rid,
        "exists": bool(rid) and os.path.isdir(cur),
        "meta": meta_of(rid),
        "revision": (read(os.path.join(cur, "REVISION"), "") or "").strip(),
        "venv": os.path.realpath(venv) if os.path.exists(venv) else None,
        "releases": listdir(path("releases")),
    }


def last_finished(text):
    """The newest "finished" record of history.jsonl's text, or None."""
    for line in reversed(text.splitlines()):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("event") == "finished":
            keys = ("ts", "action", "release", "user", "outcome", "run_id")
            return {k: rec.get(k) for k in keys}
    return None


def history():
    lines = tail_lines(path(".mlctl", "history.jsonl"), 65536) or []
    return {"last": last_finished("\n".join(lines))}


def lock():
    holder = read(path(".mlctl", "lock", "holder.json"))
    try:
        holder = json.loads(holder) if holder else None
    except ValueError:
        holder = {"unreadable": True}
    if isinstance(holder, dict):  # ages by this host's clock, as the lease is judged
        now = time.time()
        for key, name in (("age", None), ("heartbeat_age", "heartbeat")):
            try:
                spot = path(".mlctl", "lock", name) if name else path(".mlctl", "lock")
                holder[key] = max(0, int(now - os.stat(spot).st_mtime))
            except OSError:
                pass
    return {"exists": os.path.isdir(path(".mlctl", "lock")), "holder": holder}


def site_packages_stamp(venv):
    # Installing or removing a distribution adds or deletes a *.dist-info directory, which
    # changes its site-packages directory's mtime: the stamp a cached `pip check` is valid for.
    stamp = []
    for lib in ("lib", "lib64"):
        base = os.path.join(venv, lib)
        for name in listdir(base):
            sp = os.path.join(base, name, "site-packages")
            if os.path.isdir(sp):
                stamp.append([sp, os.stat(sp).st_mtime_ns])
    return stamp


def kept_verdict(cache, stamp):
    try:
        kept = json.loads(read(cache, "") or "null")
        if kept and kept.get("stamp") == stamp:
            return {"code": kept["code"], "output": kept["output"], "cached": True}
    except (ValueError, AttributeError, KeyError):
        pass
    return None


def keep_verdict(cache, stamp, out):
    try:
        with open(cache + ".tmp", "w") as fh:
            json.dump({"stamp": stamp, **out}, fh)
        os.replace(cache + ".tmp", cache)
    except OSError:
        pass  # not ours to write (a read-only venv): check again next time


def pip_check():
    # `pip check` costs a whole pip start-up (~0.4 s of CPU); a venv only changes when packages
    # are installed or removed, so its verdict is kept in the venv until the stamp changes.
    venv = os.path.realpath(path("current", ".venv"))
    cache = os.path.join(venv, ".mlctl-pip-check.json")
    stamp = site_packages_stamp(venv)
    kept = kept_verdict(cache, stamp)
    if kept:
        return kept
    argv = ["./.venv/bin/python", "-m", "pip", "check", "--disable-pip-version-check"]
    r = run(in_release(argv), timeout=120)
    out = {"code": r["code"], "output": (r["out"] + r["err"]).strip()[-2000:]}
    if stamp and r["code"] in (0, 1):
        keep_verdict(cache, stamp, out)
    return out


def django_probe():
    what = {"check": "check,db,migrations", "diag": "db"}[CFG["mode"]]
    code = PROGRAMS["django_probe"]
    r = run(in_release(["./.venv/bin/python", "-c", code, CFG["settings_module"], what]), 120)
    lines = r["out"].strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (ValueError, IndexError):
        return {"error": "exit %s: %s" % (r["code"], last_words(r) or "no output")}


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, sock_path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.sock_path = sock_path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.sock_path)
        self.sock = s


def http_status(conn):
    url_path = urllib.parse.urlsplit(CFG["health"]["url"]).path or "/healthz"
    try:
        conn.request("GET", url_path, headers={"Host": CFG["health"]["host_header"] or "localhost"})
        return {"status": conn.getresponse().status}
    except Exception as e:  # noqa: BLE001 — no answer is the answer
        return {"status": None, "error": "%s: %s" % (type(e).__name__, e)}
    finally:
        conn.close()


def pid_alive(pid):
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
        return True
    except PermissionError:
        return True
    except OSError:
        return False


def pidfile_gunicorn(timeout):
    pid = (read(CFG["pidfile"], "") or "").strip()
    out = {"kind": "pidfile", "pid": int(pid) if pid.isdigit() else None, "alive": pid_alive(pid)}
    host, _, port = CFG["bind"].rpartition(":")
    if CFG["mode"] == "check":
        host = host.strip("[]") or "127.0.0.1"
        out["http"] = http_status(http.client.HTTPConnection(host, int(port), timeout=timeout))
    return out


SLOTS = ("blue", "green")  # config/layout.py's SLOTS


def live_slot():
    """The app slot nginx's included upstream names (None: the host has no two slots yet)."""
    text = read(CFG["upstream_file"], "") or ""
    return next((s for s in SLOTS if "/%s-%s.sock" % (CFG["unit"], s) in text), None)


def live_unit():
    return "%s@%s" % (CFG["unit"], live_slot() or SLOTS[0])


def gunicorn():
    timeout = min(float(CFG["health"]["timeout"]), 10.0)
    if CFG["service"] == "pidfile":
        return pidfile_gunicorn(timeout)
    slot = live_slot()
    unit = live_unit()
    # Read the states before the HTTP probe: a request on the socket would start the service.
    out = {
        "kind": "systemd",
        "slot": slot,
        "unit": unit,
        "service": unit_state(unit + ".service"),
        "socket": unit_state(unit + ".socket"),
    }
    if slot:  # the slot left by the last cutover, while it is kept warm
        other = SLOTS[1] if slot == SLOTS[0] else SLOTS[0]
        state = unit_state("%s@%s.service" % (CFG["unit"], other))
        link = path("slots", other)
        release = os.path.basename(os.readlink(link)) if os.path.islink(link) else None
        out["other"] = {"slot": other, "active": state.get("active"), "release": release}
    if CFG["mode"] == "check":
        sock = "/run/%s-%s.sock" % (CFG["unit"], slot or SLOTS[0])
        out["http"] = http_status(UnixHTTPConnection(sock, timeout))
    return out


def site_requests():
    plan = CFG["health_plan"]
    reqs = list(plan["requests"])
    static = meta_of(current_id()).get("static") if CFG["health_static"] else None
    if static:
        host = reqs[0]["host"]
        reqs.append({"path": static, "expect": "200", "host": host, "body": "", "release": ""})
        reqs[-1]["static"] = True
    return reqs


def site():
    # Every health request (remote/health.py, the deploy gate's own code, asked once): the
    # health URL, the pages of health.paths and the current release's collected static file.
    reqs = site_requests()
    config = {"base": CFG["health_plan"]["base"], "requests": reqs, "once": True}
    config["timeout"] = CFG["health"]["timeout"]
    r = run([sys.executable, "-c", PROGRAMS["health"], json.dumps(config)], timeout=90)
    try:
        results = json.loads(r["out"].strip().splitlines()[-1])
    except (ValueError, IndexError):
        why = last_words(r) or "exit %s" % r["code"]
        return {"status": None, "error": why, "results": [], "ok": False}
    for res, req in zip(results, reqs, strict=False):
        res["static"] = bool(req.get("static"))
    first = results[0]
    return {
        "status": first["status"],
        "error": "" if first["status"] else first["why"],
        "results": results,
        "ok": all(x["ok"] for x in results),
    }


def app_log():
    # The app's own last lines (its tracebacks): the journal of its unit, or the dev log file.
    if CFG["service"] == "pidfile":
        return {"text": "\n".join((tail_lines(CFG["dev_log"], 1 << 18) or [])[-300:])}
    unit = "_SYSTEMD_UNIT=%s.service" % live_unit()
    r = run(["journalctl", unit, "-o", "cat", "-n", "300", "--no-pager"])
    return {"text": r["out"][-60000:]}


def permissions():
    code = os.path.realpath(path("current"))
    manage = os.path.join(code, "manage.py")
    tests = {
        "read_code": ["-r", manage],
        "enter_code": ["-x", code],
        "read_env": ["-r", path("shared", ".env")],
        "write_media": ["-w", path("shared", "media")],
        "write_code": ["-w", code],
        "write_code_file": ["-w", manage],
    }
    with concurrent.futures.ThreadPoolExecutor(len(tests)) as pool:
        futures = {k: pool.submit(run, as_app(["test"] + v)) for k, v in tests.items()}
    out = {k: f.result()["code"] == 0 for k, f in futures.items()}
    out["release_dir"] = os.path.relpath(code, CFG["deploy_to"])
    return out
