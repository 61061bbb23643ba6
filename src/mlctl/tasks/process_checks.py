"""Judging the processes and schedules on one host from its probe facts (pure, unit-tested):
`check`'s lines, `diag`'s field, `status`'s words and `monitor`'s alerts.

The probe reads every declared unit on every host; `placed` adds which entries are meant for the
host (commands/processes.placement), since the probe does not know the host's inventory name.
"""

from __future__ import annotations

import time

from mlctl.commands import processes as proc
from mlctl.tasks.judges import FAIL, OK, WARN, Check

RUNNING = ("active", "reloading")


def placed(facts: dict, settings: dict, host: str) -> dict:
    """The facts, their processes section told which entries belong on `host`."""
    section = facts.get("processes")
    if isinstance(section, dict) and "entries" in section:
        here, _ = proc.layout_of(settings, host)
        section["meant"] = [p.name for p in here]
    return facts


def _entries(facts: dict) -> tuple[dict, set]:
    section = facts.get("processes") or {}
    return section.get("entries") or {}, set(section.get("meant") or ())


def checks(facts: dict) -> list[Check]:
    """One check per process and schedule entry, named after it."""
    entries, meant = _entries(facts)
    if (facts.get("processes") or {}).get("failed"):
        return [Check("processes", FAIL, "probe failed: " + facts["processes"].get("error", ""))]
    current = (facts.get("release") or {}).get("current")
    out = []
    for name, e in sorted(entries.items()):
        judge = process_check if e["kind"] == "process" else schedule_check
        out.append(judge(name, e, name in meant, current))
    return out


def process_check(name: str, e: dict, meant: bool, current: str | None) -> Check:
    running = e["active"] in RUNNING
    where = f" in {e['release']}" if e.get("release") else ""
    state = f"{e['active']} ({e.get('sub') or '?'})"
    label = f"process-{name}"
    if not meant:
        if running:
            return Check(label, FAIL, f"{name} runs here but is not meant for this host: {state}")
        return Check(label, OK, f"{name}: not meant for this host ({e['active']})")
    if not current:
        return Check(label, WARN, f"{name}: no release yet")
    if not running:
        why = f"{name} is {state}, enabled: {e.get('enabled')}"
        return Check(label, FAIL, f"{why}; see journalctl -u {e['unit']}")
    if e.get("release") and e["release"] != current:
        return Check(label, WARN, f"{name} runs {e['release']}, current is {current}")
    return Check(label, OK, f"{name}: {state}, pid {e.get('pid')}{where}")


def schedule_check(name: str, e: dict, meant: bool, current: str | None) -> Check:
    timer = e.get("timer") or {}
    label = f"schedule-{name}"
    if not meant:
        if timer.get("active") in RUNNING:
            return Check(label, FAIL, f"{name}: timer active here but not meant for this host")
        return Check(label, OK, f"{name}: not meant for this host")
    if timer.get("active") not in RUNNING:
        return Check(label, WARN, f"{name}: timer {timer.get('active')} (run setup)")
    if e.get("last") and e.get("result") not in (None, "", "success"):
        return Check(
            label,
            WARN,
            f"{name}: last run failed ({e['result']}, exit {e.get('status')}) at "
            f"{when(e.get('ended') or e['last'])}; see journalctl -u {e['unit']}",
        )
    return Check(label, OK, schedule_text(e))


def when(epoch: int | None) -> str:
    if not epoch:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def schedule_text(e: dict) -> str:
    last = when(e.get("last"))
    if e.get("last"):
        last += " ok" if e.get("result") in ("", "success", None) else f" {e['result']}"
    return f"last {last}, next {when(e.get('next'))}"


def diag_field(facts: dict) -> dict | None:
    """name -> one line per entry, for diag's table and JSON."""
    entries, meant = _entries(facts)
    if not entries:
        return None
    out = {}
    for name, e in sorted(entries.items()):
        if name not in meant:
            out[name] = f"not here ({e['active']})"
        elif e["kind"] == "process":
            pid = f" pid {e['pid']}" if e.get("pid") else ""
            out[name] = f"{e['active']}{pid}" + (f" in {e['release']}" if e.get("release") else "")
        else:
            out[name] = schedule_text(e)
    return out


def status_words(facts: dict) -> str:
    """status's words on the processes: those up here, then what is wrong ("" when none)."""
    entries, meant = _entries(facts)
    up = [
        n
        for n, e in sorted(entries.items())
        if e["kind"] == "process" and n in meant and e["active"] in RUNNING
    ]
    words = ([f"up: {', '.join(up)}"] if up else []) + troubles(facts)
    return "".join(f"; {w}" for w in words)


def troubles(facts: dict) -> list[str]:
    """What is wrong with this host's processes, one phrase each (status, monitor)."""
    entries, meant = _entries(facts)
    has_release = bool((facts.get("release") or {}).get("current"))
    out = []
    for name, e in sorted(entries.items()):
        if e["kind"] != "process":
            continue
        running = e["active"] in RUNNING
        if name in meant and not running and has_release:
            out.append(f"{name} {e['active']}")
        elif name not in meant and running:
            out.append(f"{name} runs here, not meant for this host")
    return out
