"""What `check`, `diag`, `status`, `monitor` and `logs` run on a host: pure command builders.

Every fact about a host is gathered by ONE remote command: `PROBE_SCRIPT`, a fixed Python program
run by the host's python3 (as root on servers, so it can read unit states, `nginx -t`, .env modes
and switch to the app user for the Django probe), configured by one JSON argument. It prints one
JSON document; mlctl judges the facts locally (checks.py, diag.py, monitor.py), where the rules are
unit-tested without a server.
"""

from __future__ import annotations

import json

from .. import healthpaths, remote
from ..layout import Layout, unit_name
from ..shell import Cmd
from .db import ENV_PUBLIC, load_env

MODES = ("check", "diag", "status", "monitor")

# Runs inside the current release as the app user, with the shared .env exported and the release's
# own venv: one Django process answers version, `check --deploy`, database and migrations.
# argv: SETTINGS_MODULE WHAT (comma list of: check, db, migrations)
DJANGO_PROBE = r"""
import io, json, os, sys
sys.path.insert(0, ".")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", sys.argv[1])
wanted = sys.argv[2].split(",")
out = {"python": "%d.%d.%d" % sys.version_info[:3]}


def last_line(e):
    lines = [x for x in str(e).strip().splitlines() if x.strip()]
    return "%s: %s" % (type(e).__name__, lines[-1] if lines else "")


try:
    import django
    out["version"] = django.get_version()
    django.setup()
except Exception as e:
    out["error"] = last_line(e)
    print(json.dumps(out))
    sys.exit(0)
if "check" in wanted:
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError
    buf = io.StringIO()
    try:
        call_command("check", deploy=True, fail_level="WARNING", stdout=buf, stderr=buf)
        out["check"] = {"ok": True, "output": buf.getvalue()[-2000:]}
    except SystemCheckError as e:
        out["check"] = {"ok": False, "output": str(e)[-2000:]}
    except Exception as e:
        out["check"] = {"ok": False, "output": last_line(e)}
if "db" in wanted or "migrations" in wanted:
    from django.db import connection
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
        out["db"] = {"ok": True, "vendor": connection.vendor}
    except Exception as e:
        out["db"] = {"ok": False, "error": last_line(e)}
if "migrations" in wanted and out["db"]["ok"]:
    from django.db.migrations.executor import MigrationExecutor
    try:
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        out["pending"] = ["%s.%s" % (m.app_label, m.name) for m, _ in plan]
    except Exception as e:
        out["pending_error"] = last_line(e)
print(json.dumps(out))
"""

# Read by `python3 -` from stdin (see program()); argv: CONFIG_JSON.
# Prints {"section": {...facts, "ms": duration}, ...}.
PROBE_SCRIPT = r"""
import calendar, concurrent.futures, http.client, json, os, re, socket, ssl, subprocess, sys, time
import urllib.error, urllib.parse, urllib.request

CFG = {}
MONTHS = {m: i + 1 for i, m in enumerate(
    "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split())}
ACCESS = re.compile(r'\[(\d{2})/(\w{3})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})\] '
                    r'"(?:[^"\\]|\\.)*" (\d{3}) ')
ERROR = re.compile(r"^(\d{4})/(\d{2})/(\d{2}) (\d{2}):(\d{2}):(\d{2}) \[(\w+)\]")
SEVERE = ("error", "crit", "alert", "emerg")
AGENT = "mlctl-health"  # the User-Agent of mlctl's own health requests (remote/health.py)


def path(*parts):
    return os.path.join(CFG["deploy_to"], *parts)


def read(p, default=None):
    try:
        with open(p) as fh:
            return fh.read()
    except OSError:
        return default


def run(argv, timeout=60, cwd=None):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                           stdin=subprocess.DEVNULL)
        return {"code": p.returncode, "out": p.stdout[-4000:], "err": p.stderr[-4000:]}
    except FileNotFoundError:
        return {"code": 127, "out": "", "err": "%s: command not found" % argv[0]}
    except subprocess.TimeoutExpired:
        return {"code": 124, "out": "", "err": "timed out after %ss" % timeout}


def as_app(argv):
    # On servers this script runs as root; the app's own code runs as the app user.
    if CFG["local"] or os.geteuid() != 0:
        return argv
    return ["sudo", "-n", "-u", CFG["app_user"]] + argv


def in_release(argv):
    # The release's .env is exported like `manage.py` sees it, line by line as data (LOAD_ENV is
    # commands/db.load_env, put in by program()): sourcing it would run a value's `$(...)` as root.
    shell = 'cd "$1" && if [ -f ./.env ]; then ' + LOAD_ENV + '; fi && shift && exec "$@"'
    return as_app(["sh", "-c", shell, "sh", path("current")] + argv)


def timed(fn):
    start = time.monotonic()
    try:
        out = fn()
    except Exception as e:
        out = {"failed": True, "error": "%s: %s" % (type(e).__name__, e)}
    out["ms"] = int((time.monotonic() - start) * 1000)
    return out


def disk():
    where = CFG["deploy_to"] if os.path.isdir(CFG["deploy_to"]) else "/"
    st = os.statvfs(where)
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    avail = st.f_bavail * st.f_frsize
    inodes = None
    if st.f_files:
        inodes = round(100.0 * (st.f_files - st.f_ffree) / st.f_files, 1)
    pct = round(100.0 * used / (used + avail), 1) if used + avail else 0
    return {"path": where, "used_pct": pct,
            "free_bytes": avail, "total_bytes": st.f_blocks * st.f_frsize, "inode_pct": inodes}


def memory():
    info = {}
    for line in (read("/proc/meminfo", "") or "").splitlines():
        key, _, rest = line.partition(":")
        info[key] = int(rest.split()[0]) * 1024 if rest.split() else 0
    total, avail = info.get("MemTotal", 0), info.get("MemAvailable", 0)
    return {"used_pct": round(100.0 * (total - avail) / total, 1) if total else None,
            "total_bytes": total, "available_bytes": avail}


def load():
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load1 = os.getloadavg()[0]
    return {"load1": load1, "cpus": cpus, "per_cpu": round(load1 / max(1, cpus), 2)}


def host_python():
    return {"version": "%d.%d.%d" % sys.version_info[:3], "executable": sys.executable}


def release():
    cur = path("current")
    rid = os.path.basename(os.readlink(cur)) if os.path.islink(cur) else None
    meta = {}
    if rid:
        try:
            meta = json.loads(read(path(".mlctl", "releases", rid + ".json"), "{}") or "{}")
        except ValueError:
            meta = {}
    venv = os.path.join(cur, ".venv")
    listed = sorted(os.listdir(path("releases"))) if os.path.isdir(path("releases")) else []
    return {"current": rid, "exists": bool(rid) and os.path.isdir(cur), "meta": meta,
            "revision": (read(os.path.join(cur, "REVISION"), "") or "").strip(),
            "venv": os.path.realpath(venv) if os.path.exists(venv) else None,
            "releases": listed}


def history():
    text = ""
    try:
        with open(path(".mlctl", "history.jsonl"), "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 65536))
            text = fh.read().decode(errors="replace")
    except OSError:
        pass
    for line in reversed(text.splitlines()):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("event") == "finished":
            return {"last": {k: rec.get(k) for k in
                             ("ts", "action", "release", "user", "outcome", "run_id")}}
    return {"last": None}


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
        for name in sorted(os.listdir(base)) if os.path.isdir(base) else []:
            sp = os.path.join(base, name, "site-packages")
            if os.path.isdir(sp):
                stamp.append([sp, os.stat(sp).st_mtime_ns])
    return stamp


def pip_check():
    # `pip check` costs a whole pip start-up (~0.4 s of CPU); a venv only changes when packages
    # are installed or removed, so its verdict is kept in the venv until the stamp changes.
    venv = os.path.realpath(path("current", ".venv"))
    cache = os.path.join(venv, ".mlctl-pip-check.json")
    stamp = site_packages_stamp(venv)
    try:
        kept = json.loads(read(cache, "") or "null")
        if kept and kept.get("stamp") == stamp:
            return {"code": kept["code"], "output": kept["output"], "cached": True}
    except (ValueError, AttributeError, KeyError):
        pass
    r = run(in_release(["./.venv/bin/python", "-m", "pip", "check",
                        "--disable-pip-version-check"]), timeout=120)
    out = {"code": r["code"], "output": (r["out"] + r["err"]).strip()[-2000:]}
    if stamp and r["code"] in (0, 1):
        try:
            with open(cache + ".tmp", "w") as fh:
                json.dump({"stamp": stamp, **out}, fh)
            os.replace(cache + ".tmp", cache)
        except OSError:
            pass  # not ours to write (a read-only venv): check again next time
    return out


def django_probe():
    what = {"check": "check,db,migrations", "diag": "db"}[CFG["mode"]]
    r = run(in_release(["./.venv/bin/python", "-c", DJANGO_PROBE, CFG["settings_module"], what]),
            timeout=120)
    lines = r["out"].strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (ValueError, IndexError):
        err = [x for x in (r["err"] + r["out"]).strip().splitlines() if x.strip()]
        return {"error": "exit %s: %s" % (r["code"], err[-1] if err else "no output")}


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, sock_path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.sock_path = sock_path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.sock_path)
        self.sock = s


def http_status(conn, url_path, host_header):
    try:
        conn.request("GET", url_path, headers={"Host": host_header or "localhost"})
        return {"status": conn.getresponse().status}
    except Exception as e:
        return {"status": None, "error": "%s: %s" % (type(e).__name__, e)}
    finally:
        conn.close()


def health_path():
    return urllib.parse.urlsplit(CFG["health"]["url"]).path or "/healthz"


def unit_state(unit):
    r = run(["systemctl", "show", unit, "-p", "ActiveState", "-p", "SubState", "-p", "MainPID"])
    props = dict(x.split("=", 1) for x in r["out"].splitlines() if "=" in x)
    return {"active": props.get("ActiveState") or "unknown", "sub": props.get("SubState"),
            "pid": int(props.get("MainPID") or 0) or None}


def gunicorn():
    timeout = min(float(CFG["health"]["timeout"]), 10.0)
    if CFG["service"] == "pidfile":
        pid = (read(CFG["pidfile"], "") or "").strip()
        alive = False
        if pid.isdigit():
            try:
                os.kill(int(pid), 0)
                alive = True
            except PermissionError:
                alive = True
            except OSError:
                alive = False
        out = {"kind": "pidfile", "pid": int(pid) if pid.isdigit() else None, "alive": alive}
        host, _, port = CFG["bind"].rpartition(":")
        if CFG["mode"] == "check":
            conn = http.client.HTTPConnection(host.strip("[]") or "127.0.0.1", int(port),
                                              timeout=timeout)
            out["http"] = http_status(conn, health_path(), CFG["health"]["host_header"])
        return out
    # Read the states before the HTTP probe: a request on the socket would start the service.
    out = {"kind": "systemd", "service": unit_state(CFG["unit"] + ".service"),
           "socket": unit_state(CFG["unit"] + ".socket")}
    if CFG["mode"] == "check":
        conn = UnixHTTPConnection(CFG["socket_path"], timeout)
        out["http"] = http_status(conn, health_path(), CFG["health"]["host_header"])
    return out


def nginx():
    state = run(["systemctl", "is-active", "nginx"])["out"].strip() or "unknown"
    out = {"active": state}
    if CFG["mode"] == "check":
        t = run(["nginx", "-t"])
        lines = [x for x in (t["err"] + t["out"]).strip().splitlines() if x.strip()]
        out["test"] = {"code": t["code"], "output": lines[-1] if lines else ""}
    return out


def current_meta():
    cur = path("current")
    rid = os.path.basename(os.readlink(cur)) if os.path.islink(cur) else None
    try:
        return json.loads(read(path(".mlctl", "releases", "%s.json" % rid), "{}") or "{}")
    except ValueError:
        return {}


def site():
    # Every health request (remote/health.py, the deploy gate's own code, asked once): the
    # health URL, the pages of health.paths and the current release's collected static file.
    plan = CFG["health_plan"]
    reqs = list(plan["requests"])
    static = current_meta().get("static") if CFG["health_static"] else None
    if static:
        reqs.append({"path": static, "expect": "200", "host": reqs[0]["host"], "body": "",
                     "release": "", "static": True})
    config = {"base": plan["base"], "requests": reqs, "once": True,
              "timeout": CFG["health"]["timeout"]}
    r = run([sys.executable, "-c", HEALTH, json.dumps(config)], timeout=90)
    try:
        results = json.loads(r["out"].strip().splitlines()[-1])
    except (ValueError, IndexError):
        err = [x for x in (r["err"] + r["out"]).strip().splitlines() if x.strip()]
        return {"status": None, "error": err[-1] if err else "exit %s" % r["code"], "results": [],
                "ok": False}
    for res, req in zip(results, reqs):
        res["static"] = bool(req.get("static"))
    first = results[0]
    return {"status": first["status"], "error": "" if first["status"] else first["why"],
            "results": results, "ok": all(x["ok"] for x in results)}


def app_log():
    # The app's own last lines (its tracebacks): the journal of its unit, or the dev log file.
    if CFG["service"] == "pidfile":
        return {"text": "\n".join((tail_lines(CFG["dev_log"], 1 << 18) or [])[-300:])}
    r = run(["journalctl", "_SYSTEMD_UNIT=%s.service" % CFG["unit"], "-o", "cat", "-n", "300",
             "--no-pager"])
    return {"text": r["out"][-60000:]}


def permissions():
    code = os.path.realpath(path("current"))
    tests = {"read_code": ["-r", os.path.join(code, "manage.py")], "enter_code": ["-x", code],
             "read_env": ["-r", path("shared", ".env")],
             "write_media": ["-w", path("shared", "media")],
             "write_code": ["-w", code], "write_code_file": ["-w", os.path.join(code, "manage.py")]}
    with concurrent.futures.ThreadPoolExecutor(len(tests)) as pool:
        futures = {k: pool.submit(run, as_app(["test"] + v)) for k, v in tests.items()}
    out = {k: f.result()["code"] == 0 for k, f in futures.items()}
    out["release_dir"] = os.path.relpath(code, CFG["deploy_to"])
    return out


def env_file():
    try:
        st = os.stat(path("shared", ".env"))
    except OSError:
        return {"exists": False}
    return {"exists": True, "mode": "%04o" % (st.st_mode & 0o7777), "uid": st.st_uid,
            "gid": st.st_gid}


def tls():
    cert = CFG["tls_cert"]
    if not os.path.isfile(cert):
        return {"path": cert, "error": "not found"}
    try:
        not_after = ssl._ssl._test_decode_cert(cert)["notAfter"]
    except Exception:
        r = run(["openssl", "x509", "-enddate", "-noout", "-in", cert])
        if r["code"] != 0:
            return {"path": cert, "error": (r["err"].strip().splitlines() or ["unreadable"])[-1]}
        not_after = r["out"].strip().partition("=")[2]
    return {"path": cert, "not_after": ssl.cert_time_to_seconds(not_after)}


def failed_units():
    r = run(["systemctl", "--failed", "--plain", "--no-legend"])
    return {"units": [x.split()[0] for x in r["out"].splitlines() if x.split()],
            "code": r["code"]}


def tail_lines(p, limit=4 << 20):
    try:
        with open(p, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            data = fh.read().decode(errors="replace")
    except OSError:
        return None
    lines = data.splitlines()
    return lines[1:] if size > limit else lines


def access_time(line):
    m = ACCESS.search(line)
    if not m or m.group(2) not in MONTHS:
        return None, None
    d, mon, y, hh, mm, ss, sign, oh, om, status = m.groups()
    offset = (int(oh) * 3600 + int(om) * 60) * (1 if sign == "+" else -1)
    t = calendar.timegm((int(y), MONTHS[mon], int(d), int(hh), int(mm), int(ss))) - offset
    return t, int(status)


def error_time(line):
    m = ERROR.match(line)
    if not m:
        return None, None
    parts = [int(x) for x in m.groups()[:6]]
    # nginx writes the error log in the host's local time.
    return time.mktime((*parts, 0, 0, -1)), m.group(7)


def nginx_logs():
    since = time.time() - float(CFG["window"])
    out = {"window": CFG["window"], "requests": 0, "errors_5xx": 0, "error_lines": 0,
           "last_error": None}
    access = tail_lines(CFG["access_log"])
    out["access_log"] = access is not None
    for line in access or []:
        t, status = access_time(line)
        if t is not None and t >= since and AGENT not in line:  # not mlctl's own requests
            out["requests"] += 1
            out["errors_5xx"] += 500 <= status <= 599
    errors = tail_lines(CFG["error_log"])
    out["error_log"] = errors is not None
    for line in errors or []:
        t, level = error_time(line)
        if t is not None and t >= since and level in SEVERE:
            out["error_lines"] += 1
            out["last_error"] = line[:300]
    return out


def env_values():
    values = []
    for line in (read(path("shared", ".env"), "") or "").splitlines():
        key, eq, value = line.strip().removeprefix("export ").partition("=")
        value = value.strip().strip("'\"")
        if eq and not key.startswith("#") and len(value) >= 4 and is_secret(key.strip()):
            values.append(value)
    return sorted(set(values), key=len, reverse=True)


def is_secret(key):
    # Names, users and paths (PGUSER, MEDIA_ROOT) are not secret; masking them would hide the
    # project name everywhere. Anything credential-like is.
    return key.upper() not in ENV_PUBLIC


def masked(obj, secrets):
    # The .env holds secrets mlctl may not know; none of them may leave the host.
    if isinstance(obj, str):
        for s in secrets:
            obj = obj.replace(s, "********")
        return obj
    if isinstance(obj, dict):
        return {k: masked(v, secrets) for k, v in obj.items()}
    if isinstance(obj, list):
        return [masked(v, secrets) for v in obj]
    return obj


def plan(rel):
    mode, remote = CFG["mode"], not CFG["local"]
    probes = {"check": [disk, memory, load, host_python, release, lock],
              "diag": [disk, memory, host_python, release, history, lock, gunicorn],
              "status": [release, site],
              "monitor": [disk, memory, release, site]}[mode]
    if mode == "check":
        probes += [gunicorn, site]
        if rel:
            probes += [pip_check, django_probe, app_log]
        if remote:
            probes += [nginx, env_file, nginx_logs] + ([permissions] if rel else [])
        if CFG["tls_cert"]:
            probes.append(tls)
    if mode == "diag":
        probes += ([django_probe] if rel else []) + ([nginx] if remote else [])
    if mode == "monitor" and remote:
        probes += [failed_units, nginx_logs]
    return probes


def main():
    global CFG
    CFG = json.loads(sys.argv[1])
    rel = os.path.isdir(path("current"))
    probes = plan(rel)
    # The app's log is read last: the site's requests just made may be what it has to tell.
    late = [fn for fn in probes if fn is app_log]
    probes = [fn for fn in probes if fn is not app_log]
    with concurrent.futures.ThreadPoolExecutor(len(probes)) as pool:
        futures = {fn.__name__: pool.submit(timed, fn) for fn in probes}
    facts = {name: f.result() for name, f in futures.items()}
    facts.update({fn.__name__: timed(fn) for fn in late})
    facts["time"] = time.time()
    print(json.dumps(masked(facts, env_values())))

"""


def probe_config(settings: dict, project: dict, mode: str, window: int = 300) -> dict:
    """The probe's one argument: which facts to gather and where they live."""
    if mode not in MODES:
        raise ValueError(f"unknown probe mode {mode!r}")
    lay = Layout(settings["deploy_to"])
    unit = unit_name(project["name"])
    health = settings["health"]
    return {
        "mode": mode,
        "deploy_to": settings["deploy_to"],
        "local": settings["connection"] == "local",
        "app_user": settings["app_user"],
        "settings_module": project["settings_module"],
        "service": settings["service"],
        "unit": unit,
        "socket_path": f"/run/{unit}.sock",
        "pidfile": f"{lay.run}/gunicorn.pid",
        "bind": settings["bind"],
        "health": {k: health[k] for k in ("url", "expect_status", "timeout", "host_header")},
        "health_plan": healthpaths.requests(settings),
        "health_static": bool(health["static"]) and settings["connection"] != "local",
        "dev_log": local_app_log(settings["deploy_to"]),
        "tls_cert": settings["tls_cert"],
        "window": int(window),
        "access_log": NGINX_LOGS["nginx-access"],
        "error_log": NGINX_LOGS["nginx-error"],
    }


def facts(python: str, config: dict) -> Cmd:
    """The one round trip per host: python reads `program()` on stdin, configured by one argument.

    The program travels on stdin rather than argv so the journal and the host's process list show
    a short command instead of the whole script.
    """
    return Cmd.of(python, "-", json.dumps(config, sort_keys=True))


def program() -> bytes:
    """The probe script with the Django probe it hands to the release's venv, ready to run."""
    tail = (
        f"\nDJANGO_PROBE = {DJANGO_PROBE!r}\n"
        f"LOAD_ENV = {load_env('./.env').render()!r}\n"
        f"ENV_PUBLIC = {ENV_PUBLIC!r}\n"
        f"HEALTH = {remote.source('health')!r}\n"
        '\nif __name__ == "__main__":\n    main()\n'
    )
    return (PROBE_SCRIPT + tail).encode()


# ---------------------------------------------------------------- logs

NGINX_LOGS = {
    "nginx-access": "/var/log/nginx/access.log",
    "nginx-error": "/var/log/nginx/error.log",
}


def app_log(unit: str, lines: int, since: str | None = None, follow: bool = False) -> Cmd:
    """The gunicorn service's journal, with ISO timestamps so hosts can be merged in order."""
    argv = ["journalctl", "-u", f"{unit}.service", "--no-pager", "-o", "short-iso"]
    argv += ["-n", str(lines)]
    if since:
        argv += ["--since", since]
    if follow:
        argv.append("-f")
    return Cmd.of(*argv)


def file_log(path: str, lines: int, follow: bool = False) -> Cmd:
    """The last lines of a log file; `-F` keeps following across log rotation."""
    return Cmd.of("tail", "-n", str(lines), *(["-F"] if follow else []), path)


def local_app_log(deploy_to: str) -> str:
    return f"{Layout(deploy_to).shared}/logs/gunicorn.log"
