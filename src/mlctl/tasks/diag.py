"""`diag`: one table of every host's release, services, database and resources; `status`: one line
per host. Both gather facts with one probe round trip per host (checks.gather) and format locally.
"""

from __future__ import annotations

import json as jsonlib
import time
from datetime import datetime

from rich.markup import escape
from rich.table import Table

from mlctl.config import healthpaths
from mlctl.core import console
from mlctl.tasks.checks import gather, lock_state
from mlctl.transport.selection import open_session

FIELDS = (
    "release",
    "branch",
    "commit",
    "subject",
    "python",
    "django",
    "gunicorn",
    "nginx",
    "database",
    "disk",
    "memory",
    "venv",
    "last_deploy",
    "releases",
    "lock",
)


# ---------------------------------------------------------------- facts → fields (pure)


def diag_fields(facts: dict, settings: dict) -> dict:
    """One host's dashboard fields from its probe facts; an unreachable host gets {"error"}."""
    if "connect_error" in facts or "probe_error" in facts:
        return {"error": facts.get("connect_error") or facts.get("probe_error")}
    rel = facts.get("release") or {}
    meta = rel.get("meta") or {}
    dj = facts.get("django_probe") or {}
    return {
        "release": rel.get("current"),
        "branch": meta.get("branch"),
        "commit": meta.get("commit"),
        "subject": meta.get("subject"),
        "python": dj.get("python") or (facts.get("host_python") or {}).get("version"),
        "django": dj.get("version"),
        "gunicorn": gunicorn_field(facts.get("gunicorn") or {}),
        "nginx": (facts.get("nginx") or {}).get("active", "n/a"),
        "database": database_field(dj, bool(rel.get("exists"))),
        "disk": _pick(facts.get("disk"), "used_pct", "free_bytes"),
        "memory": _pick(facts.get("memory"), "used_pct", "available_bytes"),
        "venv": rel.get("venv"),
        "last_deploy": (facts.get("history") or {}).get("last"),
        "releases": {"count": len(rel.get("releases") or []), "list": rel.get("releases") or []},
        "lock": dict(
            zip(
                ("state", "detail"),
                lock_state(facts.get("lock") or {}, settings["timeouts"]),
                strict=True,
            )
        ),
    }


def _pick(section: dict | None, *keys: str) -> dict | None:
    return {k: section.get(k) for k in keys} if section and not section.get("failed") else None


def gunicorn_field(g: dict) -> dict:
    if g.get("kind") == "pidfile":
        return {"state": "running" if g.get("alive") else "stopped", "pid": g.get("pid")}
    svc = g.get("service") or {}
    other = g.get("other") or {}
    return {
        "state": svc.get("active", "unknown"),
        "pid": svc.get("pid"),
        "socket": (g.get("socket") or {}).get("active", "unknown"),
        "slot": g.get("slot"),
        "warm": other.get("release") if other.get("active") == "active" else None,
    }


def database_field(dj: dict, has_release: bool) -> dict:
    if not has_release:
        return {"ok": None, "detail": "no release yet"}
    if "error" in dj:
        return {"ok": False, "detail": dj["error"]}
    db = dj.get("db") or {}
    return {
        "ok": bool(db.get("ok")),
        "detail": db.get("vendor") if db.get("ok") else db.get("error"),
    }


# ---------------------------------------------------------------- fields → text


def field_text(name: str, value) -> str:
    """How one field reads in the table."""
    if value is None:
        return "—"
    if name == "commit":
        return value[:12]
    if name == "gunicorn":
        pid = f" (pid {value['pid']})" if value.get("pid") else ""
        slot = f", slot {value['slot']}" if value.get("slot") else ""
        warm = f"; {value['warm']} kept warm" if value.get("warm") else ""
        return f"{value['state']}{pid}{slot}{warm}"
    if name == "database":
        if value["ok"] is None:
            return value["detail"]
        return ("ok" if value["ok"] else "FAIL") + (
            f": {value['detail']}" if value["detail"] else ""
        )
    if name == "disk":
        return f"{value['used_pct']:g}% used, {value['free_bytes'] / 2**30:.1f} GiB free"
    if name == "memory":
        return f"{value['used_pct']:g}% used"
    if name == "last_deploy":
        return (
            f"{value.get('action') or 'deploy'} {value.get('release') or '?'} "
            f"{value.get('outcome') or ''} by {value.get('user') or '?'} at {value.get('ts')}"
        )
    if name == "releases":
        return f"{value['count']}: " + ", ".join(value["list"]) if value["count"] else "0"
    if name == "lock":
        return value["detail"]
    return str(value)


def diag_table(env: str, hosts: dict[str, dict]) -> Table:
    """Hosts as columns, fields as rows: several hosts compare at a glance."""
    table = Table(title=f"{env}", title_justify="left", show_lines=False)
    table.add_column("field", style="bold")
    for host in hosts:
        table.add_column(escape(host), overflow="fold")
    if all("error" in f for f in hosts.values()):
        table.add_row("error", *[escape(f["error"]) for f in hosts.values()])
        return table
    for name in FIELDS:
        cells = []
        for fields in hosts.values():
            if "error" in fields:
                cells.append(f"[red]{escape(fields['error'])}[/]" if name == "release" else "")
            elif name == "release" and fields["release"] is None:
                cells.append("[yellow]no release yet[/]")
            else:
                cells.append(escape(field_text(name, fields.get(name))))
        table.add_row(name.replace("_", " "), *cells)
    return table


# ---------------------------------------------------------------- diag task


def diag_task(sel, json: bool = False, watch: bool = False, interval: float = 5.0) -> int:
    with open_session(sel, "diag") as sess:
        cfg = sess.cfg
        if watch and not json:
            return _watch(sess, interval)
        hosts = _diag_round(sess)
    if json:
        console.out(jsonlib.dumps({"env": cfg.name, "hosts": hosts}, indent=1, default=str))
    else:
        console.table(diag_table(cfg.name, hosts))
    unreachable = [h for h, f in hosts.items() if "error" in f]
    if unreachable:
        console.fail(f"{cfg.name}: unreachable: {', '.join(unreachable)}")
        return 2
    return 0


def _diag_round(sess) -> dict[str, dict]:
    facts = gather(sess, "diag")
    hosts = {h: diag_fields(f, sess.cfg.settings) for h, f in facts.items()}
    sess.journal.record(
        "", "diag", outcome="ok", unreachable=[h for h, f in hosts.items() if "error" in f]
    )
    return hosts


def _watch(sess, interval: float) -> int:
    """Refresh the table in place until Ctrl-C (which ends the watch with exit 0)."""
    from rich.console import Console, Group
    from rich.live import Live
    from rich.text import Text

    def frame():
        stamp = Text(
            f"updated {time.strftime('%H:%M:%S')} · every {interval:g}s · Ctrl-C to stop",
            style="dim",
        )
        return Group(diag_table(sess.cfg.name, _diag_round(sess)), stamp)

    try:
        with Live(frame(), console=Console(), auto_refresh=False) as live:
            while True:
                time.sleep(max(0.5, interval))
                live.update(frame(), refresh=True)
    except KeyboardInterrupt:
        return 0


# ---------------------------------------------------------------- status task


def age_text(when: str | None, now: float | None = None) -> str:
    """'3m', '2h', '5d' since an ISO time (release metadata writes %Y-%m-%dT%H:%M:%S%z)."""
    stamp = parse_time(when)
    if stamp is None:
        return "?"
    secs = max(0, int((now if now is not None else time.time()) - stamp))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit}"
    return f"{secs}s"


def parse_time(when: str | None) -> float | None:
    if not when:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z"):
        try:
            return datetime.strptime(when, fmt).timestamp()
        except ValueError:
            pass
    try:
        return datetime.fromisoformat(when).timestamp()
    except ValueError:
        return None


def status_line(host: str, facts: dict, expect_status: int, now: float | None = None) -> tuple:
    """(text, healthy) for one host."""
    if "connect_error" in facts or "probe_error" in facts:
        why = facts.get("connect_error") or facts.get("probe_error")
        return f"{host}  unreachable: {why}", False
    rel = facts.get("release") or {}
    site = facts.get("site") or {}
    healthy = site.get("ok", site.get("status") == expect_status)
    if not rel.get("current"):
        return f"{host}  no release yet", True
    meta = rel.get("meta") or {}
    failed = [r for r in site.get("results", []) if not r["ok"]]
    why = (
        healthpaths.describe(failed[0])
        if failed
        else (site.get("status") or site.get("error") or "no answer")
    )
    health = "ok" if healthy else f"fail ({why})"
    commit = (meta.get("commit") or "?")[:12]
    return (
        f"{host}  {rel['current']}  {commit}  {age_text(meta.get('when'), now)}  "
        f"health {health}"
    ), healthy


def status_task(sel) -> int:
    """One line per host; exit 0 when every host is reachable and healthy (or has no release)."""
    with open_session(sel, "status") as sess:
        facts = gather(sess, "status")
    expect = sess.cfg.health.expect_status
    results = [status_line(h, f, expect) for h, f in facts.items()]
    for text, _ in results:
        console.out(text)
    healthy = all(ok for _, ok in results)
    sess.journal.record("", "status", outcome="ok" if healthy else "failed")
    return 0 if healthy else 2
