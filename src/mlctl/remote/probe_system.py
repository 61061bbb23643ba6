# The probe program's facts about the machine: disk, memory, load, Python, failed units, nginx,
# the TLS certificate, the shared .env's mode and the nginx logs' window (see remote/probe.py).
import os
import ssl
import sys
import time

if __package__:  # imported by mlctl; on a host these modules are sent in front
    from mlctl.remote.hostfiles import read, tail_lines
    from mlctl.remote.logtime import access_time, error_time
    from mlctl.remote.probe_base import CFG, last_words, path, run

SEVERE = ("error", "crit", "alert", "emerg")
AGENT = "mlctl-health"  # the User-Agent of mlctl's own health requests (remote/health.py)


def disk():
    where = CFG["deploy_to"] if os.path.isdir(CFG["deploy_to"]) else "/"
    st = os.statvfs(where)
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    avail = st.f_bavail * st.f_frsize
    inodes = None
    if st.f_files:
        inodes = round(100.0 * (st.f_files - st.f_ffree) / st.f_files, 1)
    pct = round(100.0 * used / (used + avail), 1) if used + avail else 0
    return {
        "path": where,
        "used_pct": pct,
        "free_bytes": avail,
        "total_bytes": st.f_blocks * st.f_frsize,
        "inode_pct": inodes,
    }


def meminfo(text):
    """/proc/meminfo's fields in bytes."""
    info = {}
    for line in (text or "").splitlines():
        key, _, rest = line.partition(":")
        info[key] = int(rest.split()[0]) * 1024 if rest.split() else 0
    return info


def memory():
    info = meminfo(read("/proc/meminfo", ""))
    total, avail = info.get("MemTotal", 0), info.get("MemAvailable", 0)
    return {
        "used_pct": round(100.0 * (total - avail) / total, 1) if total else None,
        "total_bytes": total,
        "available_bytes": avail,
    }


def load():
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load1 = os.getloadavg()[0]
    return {"load1": load1, "cpus": cpus, "per_cpu": round(load1 / max(1, cpus), 2)}


def host_python():
    return {"version": "%d.%d.%d" % sys.version_info[:3], "executable": sys.executable}


def unit_state(unit):
    r = run(["systemctl", "show", unit, "-p", "ActiveState", "-p", "SubState", "-p", "MainPID"])
    props = dict(x.split("=", 1) for x in r["out"].splitlines() if "=" in x)
    return {
        "active": props.get("ActiveState") or "unknown",
        "sub": props.get("SubState"),
        "pid": int(props.get("MainPID") or 0) or None,
    }


def failed_units():
    r = run(["systemctl", "--failed", "--plain", "--no-legend"])
    return {"units": [x.split()[0] for x in r["out"].splitlines() if x.split()], "code": r["code"]}


def nginx():
    state = run(["systemctl", "is-active", "nginx"])["out"].strip() or "unknown"
    out = {"active": state}
    if CFG["mode"] == "check":
        t = run(["nginx", "-t"])
        out["test"] = {"code": t["code"], "output": last_words(t)}
    return out


def maintenance():
    # The maintenance page's flag file (commands/maintenance.py): on while it exists.
    try:
        return {"on": True, "since": os.stat(CFG["maintenance_flag"]).st_mtime}
    except (KeyError, OSError):
        return {"on": False}


def env_file():
    try:
        st = os.stat(path("shared", ".env"))
    except OSError:
        return {"exists": False}
    mode = "%04o" % (st.st_mode & 0o7777)
    return {"exists": True, "mode": mode, "uid": st.st_uid, "gid": st.st_gid}


def tls():
    cert = CFG["tls_cert"]
    if not os.path.isfile(cert):
        return {"path": cert, "error": "not found"}
    try:
        not_after = ssl._ssl._test_decode_cert(cert)["notAfter"]
    except Exception:  # noqa: BLE001 — ask openssl instead
        r = run(["openssl", "x509", "-enddate", "-noout", "-in", cert])
        if r["code"] != 0:
            return {"path": cert, "error": (r["err"].strip().splitlines() or ["unreadable"])[-1]}
        not_after = r["out"].strip().partition("=")[2]
    return {"path": cert, "not_after": ssl.cert_time_to_seconds(not_after)}


def count_requests(lines, since, out):
    for line in lines:
        t, status = access_time(line)
        if t is not None and status and t >= since and AGENT not in line:  # not mlctl's own
            out["requests"] += 1
            out["errors_5xx"] += 500 <= status <= 599


def count_errors(lines, since, out):
    for line in lines:
        t, level = error_time(line)
        if t is not None and t >= since and level in SEVERE:
            out["error_lines"] += 1
            out["last_error"] = line[:300]


def nginx_logs():
    since = time.time() - float(CFG["window"])
    out = {"window": CFG["window"], "requests": 0, "errors_5xx": 0, "error_lines": 0}
    out["last_error"] = None
    access = tail_lines(CFG["access_log"])
    out["access_log"] = access is not None
    count_requests(access or [], since, out)
    errors = tail_lines(CFG["error_log"])
    out["error_log"] = errors is not None
    count_errors(errors or [], since, out)
    return out
