"""`check`: health checks of every host, judged locally from one round trip of facts per host.

`gather()` runs the probe (commands/probes.py) on every host in parallel and returns its facts;
`evaluate()` turns one host's facts into checks (ok | warn | fail). diag and monitor gather the
same way with their own probe mode. Exit code: 0 all ok, 1 warnings only, 2 any failure.
"""

from __future__ import annotations

import json as jsonlib
import re
import time
from dataclasses import asdict, dataclass

from . import console, healthpaths
from .commands import probes
from .console import clip
from .errors import ConnectError, MlctlError
from .layout import unit_name
from .selection import open_session

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


# ---------------------------------------------------------------- gathering facts


def probe_host(host, cmd, mode: str) -> dict:
    """One host's facts; a host that cannot be reached or probed says why instead of raising."""
    try:
        connect_ms = host.session.connect_host(host)
    except ConnectError as e:
        return {"connect_error": str(e)}
    try:
        r = host.stream(f"probe {mode}", cmd, probes.program())
    except ConnectError as e:
        host.c = None  # reconnect on the next round (monitor --watch, diag --watch)
        return {"connect_error": str(e)}
    except MlctlError as e:
        return {"connect_ms": connect_ms, "probe_error": str(e)}
    facts = parse_facts(r.stdout)
    if facts is None:
        lines = [ln for ln in (r.stderr or r.stdout).strip().splitlines() if ln.strip()]
        why = lines[-1][:300] if lines else f"exit {r.code}, no output"
        return {"connect_ms": connect_ms, "probe_error": why}
    facts["connect_ms"] = connect_ms
    return facts


def parse_facts(stdout: str) -> dict | None:
    lines = stdout.strip().splitlines()
    try:
        facts = jsonlib.loads(lines[-1])
    except (ValueError, IndexError):
        return None
    return facts if isinstance(facts, dict) else None


def gather(sess, mode: str, window: int = 300) -> dict[str, dict]:
    """{host: facts} for every host, probed in parallel over one connection each."""
    sess.refuse_root()
    cfg = sess.cfg
    cmd = probes.facts(cfg["python"], probes.probe_config(cfg.settings, cfg.project, mode, window))
    results = sess.each_settled(lambda h: probe_host(h, cmd, mode))
    out = {}
    for host, res in zip(sess.hosts, results, strict=True):
        out[host.name] = res if isinstance(res, dict) else {"probe_error": str(res)}
    return out


# ---------------------------------------------------------------- judging facts


def evaluate(facts: dict, settings: dict, unit: str, now: float | None = None) -> list[Check]:
    """Every check of one host, in a fixed order, from its facts (pure: unit-tested).

    `settings` are the environment's resolved settings, `unit` the gunicorn unit name.
    """
    local = settings["connection"] == "local"
    if "connect_error" in facts:
        return [Check("ssh", FAIL, _first_line(facts["connect_error"]))]
    out = (
        []
        if local
        else [
            Check(
                "ssh",
                OK,
                f"connected in {facts.get('connect_ms', 0)} ms",
                facts.get("connect_ms", 0),
            )
        ]
    )
    if "probe_error" in facts:
        return out + [Check("probe", FAIL, _first_line(facts["probe_error"]))]
    t = settings["thresholds"]
    rel = facts.get("release", {})
    has_release = bool(rel.get("exists"))
    judges = [
        ("disk", lambda s: disk_check(s, t["disk_pct"])),
        ("disk", lambda s: inode_check(s, t["inode_pct"])),
        ("memory", lambda s: memory_check(s, t["mem_pct"])),
        ("load", lambda s: load_check(s, t["load_per_cpu"])),
        ("host_python", python_check),
    ]
    for section, judge in judges:
        out.append(_judged(facts, section, judge))
    out += release_checks(facts, settings, has_release)
    out.append(_judged(facts, "gunicorn", lambda s: gunicorn_check(s, unit, has_release)))
    out.append(
        _judged(
            facts,
            "gunicorn",
            lambda s: gunicorn_http_check(s, settings, has_release),
            name="gunicorn-http",
        )
    )
    if not local:
        out.append(_judged(facts, "nginx", nginx_config_check, name="nginx-config"))
        out.append(_judged(facts, "nginx", nginx_active_check))
    out += site_checks(facts.get("site"), settings["health"], has_release)
    if not local:
        out.append(permissions_check(facts.get("permissions"), settings["app_user"], has_release))
        out.append(_judged(facts, "env_file", env_file_check, name="env-file"))
        if "nginx_logs" in facts:
            out.append(_judged(facts, "nginx_logs", nginx_5xx_check, name="nginx-5xx"))
    if settings.get("tls_cert"):
        out.append(_judged(facts, "tls", lambda s: tls_check(s, t["cert_days"], now), name="tls"))
    out.append(_judged(facts, "lock", lambda s: lock_check(s, settings["timeouts"])))
    if any(c.status == FAIL for c in out) and "app_log" in facts:
        out.append(app_log_check(facts["app_log"]))
    return out


def _judged(facts: dict, section: str, judge, name: str | None = None) -> Check:
    """Run one judge on its section; a missing or failed probe section becomes a failed check."""
    data = facts.get(section)
    if data is None:
        check = Check(name or section, FAIL, "not probed")
    elif data.get("failed"):
        check = Check(name or section, FAIL, f"probe failed: {_first_line(data['error'])}")
    else:
        check = judge(data)
        if name:
            check.name = name
    check.duration_ms = int((data or {}).get("ms", 0))
    return check


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return clip(lines[0]) if lines else ""


def _gib(n: int | float) -> str:
    return f"{n / 2**30:.1f} GiB"


def disk_check(d: dict, limit: int) -> Check:
    used = d["used_pct"]
    if used > limit:
        return Check("disk", FAIL, f"disk {used:g}% used > {limit}% ({_gib(d['free_bytes'])} free)")
    return Check("disk", OK, f"disk {used:g}% used, {_gib(d['free_bytes'])} free in {d['path']}")


def inode_check(d: dict, limit: int) -> Check:
    used = d.get("inode_pct")
    if used is None:
        return Check("inodes", OK, "inodes: not limited on this filesystem")
    if used > limit:
        return Check("inodes", FAIL, f"inodes {used:g}% used > {limit}%")
    return Check("inodes", OK, f"inodes {used:g}% used")


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
    out = [_judged(facts, "pip_check", venv_check, name="venv")]
    dj = facts.get("django_probe")
    if dj is None:
        return out + [Check(n, FAIL, "not probed") for n in names[1:]]
    ms = int(dj.get("ms", 0))
    if "version" not in dj or "error" in dj:
        why = f"Django not importable: {_first_line(dj.get('error', 'no answer'))}"
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
    why = _first_line(p.get("output", "")) or f"exit {p['code']}"
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
    return Check("check-deploy", FAIL, _first_line(c.get("output", "")) or "failed")


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


def gunicorn_check(g: dict, unit: str, has_release: bool) -> Check:
    if not has_release:
        return Check("gunicorn", WARN, NO_RELEASE)
    if g["kind"] == "pidfile":
        if g["alive"]:
            return Check("gunicorn", OK, f"pid {g['pid']} alive")
        return Check("gunicorn", FAIL, "gunicorn: not running (no live pid in run/gunicorn.pid)")
    svc, sock = g["service"], g["socket"]
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
    expect = settings["health"]["expect_status"]
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
        why = _first_line(s.get("error", "")) or "no answer"
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


def lock_state(lk: dict, timeouts: dict) -> tuple[str, str]:
    """('free'|'held'|'stale', description) of a host's deploy lock, judged as a run judges it:
    a heartbeat older than timeouts.lock_lease, or (without one) an age over lock_stale."""
    from .locking import describe_holder, stale_reason

    if not lk.get("exists"):
        return "free", "free"
    holder = lk.get("holder") or {}
    who = describe_holder(holder)
    reason = stale_reason(holder, timeouts["lock_stale"], timeouts["lock_lease"])
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


# ---------------------------------------------------------------- the task


def check_task(sel, json: bool = False) -> int:
    with open_session(sel, "check") as sess:
        cfg = sess.cfg
        if not json:
            console.banner(cfg.name, cfg.color, "check", cfg.hosts)
        facts = gather(sess, "check")
    unit = unit_name(cfg.project["name"])
    results = {host: evaluate(f, cfg.settings, unit) for host, f in facts.items()}
    code = max((exit_code(c) for c in results.values()), default=0)
    sess.journal.record(
        "",
        "check",
        exit_code=code,
        outcome=_outcome(code),
        checks={h: {c.name: c.status for c in cs} for h, cs in results.items()},
    )
    if json:
        console.out(jsonlib.dumps(check_json(cfg.name, results, code), indent=1))
    else:
        console.table(check_table(results))
    _summary(cfg.name, results, code)
    return code


def check_json(env: str, results: dict[str, list[Check]], code: int) -> dict:
    return {
        "env": env,
        "hosts": {h: [asdict(c) for c in cs] for h, cs in results.items()},
        "exit": code,
    }


def check_table(results: dict[str, list[Check]]):
    from rich.markup import escape
    from rich.table import Table

    table = Table(show_lines=False, pad_edge=False)
    for col in ("host", "check", "status", "detail"):
        table.add_column(col, overflow="fold")
    table.add_column("ms", justify="right")
    for host, checks in results.items():
        for i, c in enumerate(checks):
            table.add_row(
                escape(host) if i == 0 else "",
                c.name,
                f"[{STYLE[c.status]}]{c.status}[/]",
                escape(c.detail),
                str(c.duration_ms),
                end_section=i == len(checks) - 1,
            )
    return table


def _outcome(code: int) -> str:
    return {0: "ok", 1: "warn"}.get(code, "failed")


def _summary(env: str, results: dict[str, list[Check]], code: int) -> None:
    counts = {s: sum(c.status == s for cs in results.values() for c in cs) for s in EXIT}
    text = (
        f"{env}: {counts[OK]} ok, {counts[WARN]} warning(s), {counts[FAIL]} failure(s) "
        f"on {len(results)} host(s)"
    )
    {0: console.done, 1: console.warn}.get(code, console.fail)(text)
