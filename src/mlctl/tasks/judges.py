"""Judging one host's probe facts: each section of the facts becomes a check (ok | warn | fail).

Pure functions of the facts and the settings, unit-tested without a server; checks.evaluate puts
them in their fixed order. diag and monitor reuse some of them (lock_state, the thresholds).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from mlctl.commands import probes
from mlctl.config import healthpaths
from mlctl.config.sections import Health, Timeouts
from mlctl.core.console import clip

OK, WARN, FAIL = "ok", "warn", "fail"
NGINX_ACCESS = probes.NGINX_LOGS["nginx-access"]
NO_RELEASE = "no release yet"
EXIT = {OK: 0, WARN: 1, FAIL: 2}
STYLE = {OK: "green", WARN: "yellow", FAIL: "bold red"}


@dataclass
class Check:
    name: str
    status: str
    detail: str
    duration_ms: int = 0


def judged(facts: dict, section: str, judge, name: str | None = None) -> Check:
    """Run one judge on its section; a missing or failed probe section becomes a failed check."""
    data = facts.get(section)
    if data is None:
        check = Check(name or section, FAIL, "not probed")
    elif data.get("failed"):
        check = Check(name or section, FAIL, f"probe failed: {first_line(data['error'])}")
    else:
        check = judge(data)
        if name:
            check.name = name
    check.duration_ms = int((data or {}).get("ms", 0))
    return check


def first_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return clip(lines[0]) if lines else ""


def _gib(n: int | float) -> str:
    return f"{n / 2**30:.1f} GiB"


def disk_check(d: dict, limit: int) -> Check:
    used, free = d["used_pct"], _gib(d["free_bytes"])
    if used > limit:
        return Check("disk", FAIL, f"disk {used:g}% used > {limit}% ({free} free)")
    return Check("disk", OK, f"disk {used:g}% used, {free} free in {d['path']}")


def inode_check(d: dict, limit: int) -> Check:
    used = d.get("inode_pct")
    if used is None:
        return Check("inodes", OK, "inodes: not limited on this filesystem")
    over = used > limit
    return Check("inodes", FAIL if over else OK, f"inodes {used:g}% used" + over * f" > {limit}%")


def memory_check(m: dict, limit: int) -> Check:
    used = m.get("used_pct")
    if used is None:
        return Check("memory", WARN, "memory: /proc/meminfo unreadable")
    avail = _gib(m["available_bytes"])
    if used > limit:
        return Check("memory", WARN, f"memory {used:g}% used > {limit}% ({avail} available)")
    return Check("memory", OK, f"memory {used:g}% used, {avail} available")


def load_check(ld: dict, limit: float) -> Check:
    per = ld["per_cpu"]
    text = f"load {ld['load1']:.2f} on {ld['cpus']} cpu(s) = {per:g}/cpu"
    if per > limit:
        return Check("load", WARN, f"{text} > {limit:g}")
    return Check("load", OK, text)


def python_check(p: dict) -> Check:
    return Check("python", OK, f"host python {p['version']}")


def release_checks(facts: dict, settings: dict, has_release: bool) -> list[Check]:
    """venv, django, check-deploy, database, migrations: all need the current release's code."""
    names = ("venv", "django", "check-deploy", "database", "migrations")
    if not has_release:
        return [Check(n, WARN, NO_RELEASE) for n in names]
    out = [judged(facts, "pip_check", venv_check, name="venv")]
    dj = facts.get("django_probe")
    if dj is None:
        return out + [Check(n, FAIL, "not probed") for n in names[1:]]
    ms = int(dj.get("ms", 0))
    if "version" not in dj or "error" in dj:
        why = f"Django not importable: {first_line(dj.get('error', 'no answer'))}"
        return (
            out
            + [Check("django", FAIL, why, ms)]
            + [Check(n, FAIL, "Django not importable", 0) for n in names[2:]]
        )
    checks = [
        Check("django", OK, f"Django {dj['version']} (Python {dj.get('python', '?')})"),
        deploy_checks_check(dj.get("check")),
        database_check(dj.get("db")),
        migrations_check(dj),
    ]
    for c in checks:
        c.duration_ms = ms
    return out + checks


def venv_check(p: dict) -> Check:
    if p["code"] == 0:
        return Check("venv", OK, "pip check: no broken requirements")
    if p["code"] == 127 or "No such file" in p.get("output", ""):
        return Check("venv", FAIL, "current/.venv/bin/python is missing")
    why = first_line(p.get("output", "")) or f"exit {p['code']}"
    return Check("venv", FAIL, f"pip check: {why}")


ISSUE = re.compile(r"^\S*: \(\w+\.[A-Z]\d+\) .*")
ISSUE_ID = re.compile(r"\((\w+\.[A-Z]\d+)\)")


def deploy_checks_check(c: dict | None) -> Check:
    if c is None:
        return Check("check-deploy", FAIL, "not run")
    if c["ok"]:
        return Check("check-deploy", OK, "manage.py check --deploy: no issues")
    issues = [ln.strip() for ln in c.get("output", "").splitlines() if ISSUE.match(ln.strip())]
    if issues:
        ids = ", ".join(ISSUE_ID.search(i).group(1) for i in issues)
        count = f"{len(issues)} issue{'s' if len(issues) > 1 else ''}"
        return Check("check-deploy", FAIL, clip(f"{count} ({ids}): {issues[0]}"))
    return Check("check-deploy", FAIL, first_line(c.get("output", "")) or "failed")


def database_check(db: dict | None) -> Check:
    if db is None:
        return Check("database", FAIL, "not probed")
    if db["ok"]:
        return Check("database", OK, f"connected ({db.get('vendor', '?')})")
    return Check("database", FAIL, f"cannot connect: {db.get('error', '')}")


def migrations_check(dj: dict) -> Check:
    if not (dj.get("db") or {}).get("ok"):
        return Check("migrations", WARN, "unknown: database not reachable")
    if "pending" not in dj:
        return Check("migrations", FAIL, f"cannot tell: {dj.get('pending_error', 'no answer')}")
    pending = dj["pending"]
    if pending:
        shown = ", ".join(pending[:5]) + (", …" if len(pending) > 5 else "")
        return Check("migrations", FAIL, f"{len(pending)} unapplied migration(s): {shown}")
    return Check("migrations", OK, "all applied")


NO_SLOT = (
    "no live app slot: nginx's upstream names none (a host set up by an earlier mlctl?); "
    "run `mlctl ENV setup`"
)


def gunicorn_check(g: dict, unit: str, has_release: bool) -> Check:
    if not has_release:
        return Check("gunicorn", WARN, NO_RELEASE)
    if g["kind"] == "pidfile":
        if g["alive"]:
            return Check("gunicorn", OK, f"pid {g['pid']} alive")
        return Check("gunicorn", FAIL, "gunicorn: not running (no live pid in run/gunicorn.pid)")
    svc, sock = g["service"], g["socket"]
    unit = g.get("unit") or unit
    if "slot" in g and not g["slot"]:
        return Check("gunicorn", FAIL, NO_SLOT)
    if sock["active"] != "active":
        return Check("gunicorn", FAIL, f"{unit}.socket: {sock['active']}")
    if svc["active"] == "active":
        return Check("gunicorn", OK, f"{unit}.service: active (pid {svc['pid']})")
    if svc["active"] == "failed":
        return Check("gunicorn", FAIL, f"{unit}.service: failed")
    # Socket activation starts the service on the first request; inactive is not yet an outage.
    return Check("gunicorn", WARN, f"{unit}.service: {svc['active']} (socket listening)")


def gunicorn_http_check(g: dict, settings: dict, has_release: bool) -> Check:
    if not has_release:
        return Check("gunicorn-http", WARN, NO_RELEASE)
    http = g.get("http") or {}
    where = settings["bind"] if g["kind"] == "pidfile" else "the unix socket"
    expect = Health.of(settings["health"]).expect_status
    status = http.get("status")
    if status is None:
        return Check("gunicorn-http", FAIL, f"no answer on {where}: {http.get('error', '')}")
    text = f"GET /healthz on {where}: HTTP {status}"
    if status == expect:
        return Check("gunicorn-http", OK, text)
    if status >= 500:
        return Check("gunicorn-http", FAIL, f"{text} (expected {expect})")
    return Check("gunicorn-http", WARN, f"{text} (expected {expect})")


def nginx_config_check(n: dict) -> Check:
    test = n.get("test") or {}
    if test.get("code") == 0:
        return Check("nginx-config", OK, "nginx -t: configuration ok")
    return Check("nginx-config", FAIL, f"nginx -t: {test.get('output') or 'failed'}")


def nginx_active_check(n: dict) -> Check:
    if n["active"] == "active":
        return Check("nginx", OK, "nginx: active")
    return Check("nginx", FAIL, f"nginx: {n['active']}")


def site_checks(s: dict | None, health: dict, has_release: bool) -> list[Check]:
    """One check per health request: `site` (the health URL), `site PATH` (health.paths) and
    `static` (a collected file through nginx). A 5xx, or a status outside `expect`, fails."""
    if s is None:
        return [Check("site", FAIL, "not probed")]
    ms = int(s.get("ms", 0))
    if s.get("failed") or not s.get("results"):
        why = first_line(s.get("error", "")) or "no answer"
        return [Check("site", WARN if not has_release else FAIL, f"probe failed: {why}", ms)]
    out = []
    for i, r in enumerate(s["results"]):
        name = "site" if i == 0 else ("static" if r.get("static") else f"site {r['path']}")
        text = healthpaths.describe(r)
        if r["ok"]:
            out.append(Check(name, OK, text, ms))
        elif not has_release:
            out.append(Check(name, WARN, f"{NO_RELEASE} ({text})", ms))
        else:
            out.append(Check(name, FAIL, text, ms))
    return out


def nginx_5xx_check(n: dict) -> Check:
    """Server errors nginx answered to the site's clients lately (mlctl's own probes left out)."""
    window, errors, total = n["window"], n["errors_5xx"], n["requests"]
    if not n.get("access_log"):
        return Check("nginx-5xx", WARN, f"no access log at {NGINX_ACCESS}")
    if errors:
        return Check(
            "nginx-5xx", WARN, f"{errors} of {total} request(s) answered 5xx in {window} s"
        )
    return Check("nginx-5xx", OK, f"no 5xx in the last {window} s ({total} request(s))")


def app_log_check(a: dict) -> Check:
    """Shown when anything failed: the app's own last error, or that it logged none."""
    error, _ = healthpaths.app_error(a.get("text", ""))
    if error:
        return Check("app-log", WARN, f"last error in the app's log: {error}", a.get("ms", 0))
    return Check("app-log", OK, "no traceback in the app's last 300 log lines", a.get("ms", 0))


def permissions_check(p: dict | None, app_user: str, has_release: bool) -> Check:
    if not has_release:
        return Check("permissions", WARN, NO_RELEASE)
    if p is None:
        return Check("permissions", FAIL, "not probed")
    if p.get("failed"):
        return Check("permissions", FAIL, f"probe failed: {p['error']}", p.get("ms", 0))
    code = p.get("release_dir", "the release")
    problems = []
    if not (p["read_code"] and p["enter_code"]):
        problems.append(f"{app_user} cannot read code in {code}")
    if not p["read_env"]:
        problems.append(f"{app_user} cannot read shared/.env")
    if not p["write_media"]:
        problems.append(f"{app_user} cannot write shared/media")
    if p["write_code"] or p["write_code_file"]:
        problems.append(f"{app_user} can write code in {code}")
    if problems:
        return Check("permissions", FAIL, "; ".join(problems), p.get("ms", 0))
    return Check(
        "permissions", OK, f"{app_user} reads code and .env, writes media, not code", p.get("ms", 0)
    )


def env_file_check(e: dict) -> Check:
    if not e["exists"]:
        return Check("env-file", FAIL, "shared/.env is missing (run setup)")
    mode = int(e["mode"], 8)
    if mode & 0o004:
        return Check("env-file", FAIL, f".env is world-readable (mode {e['mode']})")
    if mode & 0o002:
        return Check("env-file", FAIL, f".env is world-writable (mode {e['mode']})")
    return Check("env-file", OK, f".env mode {e['mode']}")


def tls_check(t: dict, min_days: int, now: float | None = None) -> Check:
    if "error" in t:
        return Check("tls", FAIL, f"certificate {t.get('path', '')}: {t['error']}")
    left = (t["not_after"] - (now if now is not None else time.time())) / 86400
    until = time.strftime("%Y-%m-%d", time.gmtime(t["not_after"]))
    if left < 0:
        return Check("tls", FAIL, f"certificate expired on {until}")
    if left < min_days:
        text = f"certificate expires in {int(left)} day(s) ({until}) < {min_days}"
        return Check("tls", WARN, text)
    return Check("tls", OK, f"certificate valid until {until} ({int(left)} days)")


def lock_state(lk: dict, timeouts: dict | Timeouts) -> tuple[str, str]:
    """('free'|'held'|'stale', description) of a host's deploy lock, judged as a run judges it:
    a heartbeat older than timeouts.lock_lease, or (without one) an age over lock_stale."""
    from mlctl.transport.locking import describe_holder, stale_reason

    if not lk.get("exists"):
        return "free", "free"
    holder = lk.get("holder") or {}
    who = describe_holder(holder)
    t = Timeouts.of(timeouts)
    reason = stale_reason(holder, t.lock_stale, t.lock_lease)
    if reason:
        return "stale", f"stale lock of {who} ({reason})"
    return "held", f"held by {who}"


def lock_check(lk: dict, timeouts: dict) -> Check:
    state, text = lock_state(lk, timeouts)
    if state == "free":
        return Check("lock", OK, "free")
    hint = " — `unlock` removes it" if state == "stale" else ""
    return Check("lock", WARN, text + hint)


def exit_code(checks: list[Check]) -> int:
    return max((EXIT[c.status] for c in checks), default=0)
