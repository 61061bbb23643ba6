"""`check`: health checks of every host, judged locally from one round trip of facts per host.

`gather()` runs the probe (commands/probes.py) on every host in parallel and returns its facts;
`evaluate()` turns one host's facts into checks (ok | warn | fail) with the judges of judges.py.
diag and monitor gather the same way with their own probe mode.
Exit code: 0 all ok, 1 warnings only, 2 any failure.
"""

from __future__ import annotations

import json as jsonlib
from dataclasses import asdict

from mlctl.commands import probes
from mlctl.config.layout import unit_name
from mlctl.config.sections import Thresholds
from mlctl.core import console
from mlctl.core.errors import ConnectError, MlctlError
from mlctl.tasks import process_checks
from mlctl.tasks.cert_judges import tls_checks
from mlctl.tasks.judges import (  # noqa: F401 — Check, deploy_checks_check, lock_state: checks' names too
    EXIT,
    FAIL,
    OK,
    STYLE,
    WARN,
    Check,
    app_log_check,
    deploy_checks_check,
    disk_check,
    env_file_check,
    exit_code,
    first_line,
    gunicorn_check,
    gunicorn_http_check,
    inode_check,
    judged,
    load_check,
    lock_check,
    lock_state,
    memory_check,
    nginx_5xx_check,
    nginx_active_check,
    nginx_config_check,
    permissions_check,
    python_check,
    release_checks,
    site_checks,
    tls_check,
)
from mlctl.tasks.maintenance import maintenance_check
from mlctl.transport.selection import open_session

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
    cmd = probes.facts(cfg.python, probes.probe_config(cfg.settings, cfg.project, mode, window))
    results = sess.each_settled(lambda h: probe_host(h, cmd, mode))
    out = {}
    for host, res in zip(sess.hosts, results, strict=True):
        res = res if isinstance(res, dict) else {"probe_error": str(res)}
        out[host.name] = process_checks.placed(res, cfg.settings, host.name)
    return out


# ---------------------------------------------------------------- judging facts


def evaluate(facts: dict, settings: dict, unit: str, now: float | None = None) -> list[Check]:
    """Every check of one host, in a fixed order, from its facts (pure: unit-tested).

    `settings` are the environment's resolved settings, `unit` the gunicorn unit name.
    """
    local = settings["connection"] == "local"
    if "connect_error" in facts:
        return [Check("ssh", FAIL, first_line(facts["connect_error"]))]
    ms = facts.get("connect_ms", 0)
    out = [] if local else [Check("ssh", OK, f"connected in {ms} ms", ms)]
    if "probe_error" in facts:
        return out + [Check("probe", FAIL, first_line(facts["probe_error"]))]
    has_release = bool(facts.get("release", {}).get("exists"))
    t = Thresholds.of(settings["thresholds"])
    out += _machine_checks(facts, t)
    out += release_checks(facts, settings, has_release)
    out += _serving_checks(facts, settings, unit, has_release)
    if settings.get("tls_cert"):
        out.append(judged(facts, "tls", lambda s: tls_check(s, t.cert_days, now), name="tls"))
    out += tls_checks(facts, settings, now)
    out.append(judged(facts, "lock", lambda s: lock_check(s, settings["timeouts"])))
    out += process_checks.checks(facts)
    if any(c.status == FAIL for c in out) and "app_log" in facts:
        out.append(app_log_check(facts["app_log"]))
    return out


def _machine_checks(facts: dict, t: Thresholds) -> list[Check]:
    judges = [
        ("disk", lambda s: disk_check(s, t.disk_pct)),
        ("disk", lambda s: inode_check(s, t.inode_pct)),
        ("memory", lambda s: memory_check(s, t.mem_pct)),
        ("load", lambda s: load_check(s, t.load_per_cpu)),
        ("host_python", python_check),
    ]
    return [judged(facts, section, judge) for section, judge in judges]


def _serving_checks(facts: dict, settings: dict, unit: str, has_release: bool) -> list[Check]:
    """gunicorn, nginx, the site's pages; on servers also permissions, the .env and nginx's 5xx."""
    local = settings["connection"] == "local"
    out = [
        judged(facts, "gunicorn", lambda s: gunicorn_check(s, unit, has_release)),
        judged(
            facts,
            "gunicorn",
            lambda s: gunicorn_http_check(s, settings, has_release),
            name="gunicorn-http",
        ),
    ]
    if not local:
        out.append(judged(facts, "nginx", nginx_config_check, name="nginx-config"))
        out.append(judged(facts, "nginx", nginx_active_check))
    out += site_checks(facts.get("site"), settings["health"], has_release)
    if "maintenance" in facts:  # the page is on: say so beside the app's own health
        out.append(judged(facts, "maintenance", maintenance_check))
    if not local:
        out.append(permissions_check(facts.get("permissions"), settings["app_user"], has_release))
        out.append(judged(facts, "env_file", env_file_check, name="env-file"))
        if "nginx_logs" in facts:
            out.append(judged(facts, "nginx_logs", nginx_5xx_check, name="nginx-5xx"))
    return out


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
