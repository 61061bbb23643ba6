"""`monitor`: alerts for disk, memory, failed units, nginx 5xx rate, error-log lines and a site that
does not answer; exit 2 on any alert (for cron and CI), a webhook per NEW alert, Prometheus metrics.

Facts come from one probe round trip per host (checks.gather, mode "monitor"); judging them, the
webhook de-duplication and the textfile format are pure functions, unit-tested without servers.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from mlctl.config.sections import Health, Thresholds
from mlctl.core import console
from mlctl.core.errors import UsageError
from mlctl.tasks import cert_judges, process_checks
from mlctl.tasks.checks import gather
from mlctl.transport.journal import state_dir
from mlctl.transport.selection import open_session

ALERT_NAMES = (
    "unreachable",
    "disk",
    "memory",
    "failed_units",
    "rate_5xx",
    "error_log",
    "site",
    "cert",
    "cert_renewal",
    "process",
)


@dataclass
class Alert:
    host: str
    alert: str
    detail: str
    value: float
    threshold: float

    @property
    def key(self) -> str:
        return f"{self.host}/{self.alert}"


# ---------------------------------------------------------------- facts → alerts and metrics


def evaluate(host: str, facts: dict, settings: dict) -> tuple[list[Alert], dict[str, float]]:
    """One host's alerts and metric values (name → value, without the mlctl_ prefix)."""
    if "connect_error" in facts or "probe_error" in facts:
        why = facts.get("connect_error") or facts.get("probe_error")
        return [Alert(host, "unreachable", str(why), 0, 1)], {"up": 0}
    t = Thresholds.of(settings["thresholds"])
    alerts: list[Alert] = []
    metrics: dict[str, float] = {"up": 1}
    for judge in (_disk, _memory, _failed_units, _rate_5xx, _error_log):
        judge(host, facts, t, alerts, metrics)
    _site(host, facts, settings, alerts, metrics)
    _certs(host, facts, t, alerts, metrics)
    troubles = process_checks.troubles(facts)
    if "processes" in facts:
        metrics["processes_down"] = len(troubles)
    if troubles:  # one alert per host: its key is host/process
        alerts.append(Alert(host, "process", "; ".join(troubles), len(troubles), 0))
    return alerts, metrics


def _usable(section) -> bool:
    return bool(section) and not section.get("failed")


def _pct_used(host: str, name: str, used: float, limit: float, detail: str, alerts, metrics):
    """disk and memory: a used percentage against its threshold."""
    metrics[f"{name}_used_ratio"] = used / 100
    metrics[f"{name}_threshold_ratio"] = limit / 100
    if used > limit:
        alerts.append(Alert(host, name, detail, used, limit))


def _disk(host, facts, t, alerts, metrics) -> None:
    d = facts.get("disk")
    if _usable(d):
        used, limit = d["used_pct"], t.disk_pct
        detail = f"disk {used:g}% used > {limit}% ({d['path']})"
        _pct_used(host, "disk", used, limit, detail, alerts, metrics)


def _memory(host, facts, t, alerts, metrics) -> None:
    m = facts.get("memory")
    if _usable(m) and m.get("used_pct") is not None:
        used, limit = m["used_pct"], t.mem_pct
        _pct_used(host, "memory", used, limit, f"memory {used:g}% used > {limit}%", alerts, metrics)


def _failed_units(host, facts, t, alerts, metrics) -> None:
    f = facts.get("failed_units")
    # Without a running systemd, `systemctl --failed` exits non-zero and lists nothing: unknown.
    if not _usable(f) or (f["code"] != 0 and not f["units"]):
        return
    metrics["failed_units"] = len(f["units"])
    if f["units"]:
        alerts.append(
            Alert(
                host, "failed_units", "failed units: " + ", ".join(f["units"]), len(f["units"]), 0
            )
        )


def _rate_5xx(host, facts, t, alerts, metrics) -> None:
    n = facts.get("nginx_logs")
    if not _usable(n) or not n.get("access_log"):
        return
    requests, bad = n["requests"], n["errors_5xx"]
    pct = 100.0 * bad / requests if requests else 0.0
    metrics["http_requests_window"] = requests
    metrics["http_5xx_window"] = bad
    metrics["http_5xx_ratio"] = pct / 100
    metrics["http_5xx_threshold_ratio"] = t.rate_5xx_pct / 100
    if requests and pct > t.rate_5xx_pct:
        alerts.append(
            Alert(
                host,
                "rate_5xx",
                f"nginx 5xx {pct:.1f}% ({bad}/{requests}) in the "
                f"last {n['window']}s > {t.rate_5xx_pct:g}%",
                round(pct, 2),
                t.rate_5xx_pct,
            )
        )


def _error_log(host, facts, t, alerts, metrics) -> None:
    n = facts.get("nginx_logs")
    if not _usable(n) or not n.get("error_log"):
        return
    lines = n["error_lines"]
    metrics["error_log_lines_window"] = lines
    metrics["error_log_threshold_lines"] = t.error_lines
    if lines > t.error_lines:
        last = f"; last: {n['last_error']}" if n.get("last_error") else ""
        alerts.append(
            Alert(
                host,
                "error_log",
                f"{lines} nginx error line(s) in the last "
                f"{n['window']}s > {t.error_lines}{last}",
                lines,
                t.error_lines,
            )
        )


def _site(host, facts, settings, alerts, metrics) -> None:
    s = facts.get("site")
    if not _usable(s):
        return
    h = Health.of(settings["health"])
    up = s.get("status") == h.expect_status
    metrics["site_up"] = 1 if up else 0
    released = (facts.get("release") or {}).get("current")
    if not up and released:
        got = f"HTTP {s['status']}" if s.get("status") else (s.get("error") or "no answer")
        alerts.append(
            Alert(
                host,
                "site",
                f"{h.url}: {got} (expected {h.expect_status})",
                s.get("status") or 0,
                h.expect_status,
            )
        )


def _certs(host, facts, t, alerts, metrics) -> None:
    """The served certificate of each name: refused, or expiring within thresholds.cert_days;
    certbot's renewal timer off."""
    served = facts.get("served_tls")
    if not _usable(served):
        return
    found = [cert_judges.finding(c, t.cert_days) for c in served["certs"]]
    days = [f.days for f in found if f.days is not None]
    if days:
        metrics["cert_days_left"] = min(days)
    for f in found:
        if f.status != "ok":
            alerts.append(Alert(host, "cert", f.detail, f.days or 0, t.cert_days))
    if "timer" in served:
        status, text = cert_judges.timer_finding(served["timer"])
        if status != "ok":
            alerts.append(Alert(host, "cert_renewal", text, 0, 1))


# ---------------------------------------------------------------- webhook de-duplication


def state_path(env: str) -> Path:
    return state_dir() / f"monitor-{env}.json"


def load_state(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return (
            data if isinstance(data, dict) and isinstance(data.get("sent"), dict) else {"sent": {}}
        )
    except (OSError, ValueError):
        return {"sent": {}}


def new_alerts(alerts: list[Alert], state: dict) -> list[Alert]:
    """Alerts not yet sent while active; one that cleared and came back is new again."""
    return [a for a in alerts if a.key not in state["sent"]]


def next_state(alerts: list[Alert], state: dict, delivered: list[Alert], now: float) -> dict:
    """Keep what is still active and was sent; add what was delivered now; forget cleared ones.

    An alert whose POST failed stays unsent, so the next run tries again.
    """
    active = {a.key for a in alerts}
    sent = {k: v for k, v in state["sent"].items() if k in active}
    for a in delivered:
        sent[a.key] = {"since": now, "detail": a.detail}
    return {"sent": sent}


def save_state(path: Path, state: dict) -> None:
    _atomic_write(path, json.dumps(state, indent=1) + "\n")


def payload(env: str, a: Alert, now: float) -> dict:
    return {
        "text": f"[{env}] {a.host}: {a.alert} — {a.detail}",
        "env": env,
        "host": a.host,
        "alert": a.alert,
        "detail": a.detail,
        "value": a.value,
        "threshold": a.threshold,
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now)),
    }


def post(url: str, body: dict, timeout: float = 10.0) -> None:
    data = json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 — operator's own URL
        r.read()


def notify(url: str, env: str, alerts: list[Alert], state_file: Path, now: float) -> list[Alert]:
    """POST each new alert once; remember what was delivered; return the delivered alerts."""
    state = load_state(state_file)
    delivered = []
    for a in new_alerts(alerts, state):
        try:
            post(url, payload(env, a, now))
            delivered.append(a)
        except (OSError, ValueError) as e:
            console.warn(f"webhook: {a.key} not delivered ({e}); retried on the next run")
    save_state(state_file, next_state(alerts, state, delivered, now))
    return delivered


# ---------------------------------------------------------------- Prometheus textfile

HELP = {
    "up": "1 when the host answered the probe",
    "disk_used_ratio": "used fraction of the filesystem holding deploy_to",
    "disk_threshold_ratio": "thresholds.disk_pct as a fraction",
    "memory_used_ratio": "used fraction of memory (MemTotal - MemAvailable)",
    "memory_threshold_ratio": "thresholds.mem_pct as a fraction",
    "failed_units": "systemd units in the failed state",
    "cert_days_left": "days until the first served certificate expires",
    "http_requests_window": "nginx requests in the monitor window",
    "http_5xx_window": "nginx 5xx responses in the monitor window",
    "http_5xx_ratio": "fraction of nginx responses that were 5xx in the monitor window",
    "http_5xx_threshold_ratio": "thresholds.rate_5xx_pct as a fraction",
    "error_log_lines_window": "nginx error-log lines (error or worse) in the monitor window",
    "error_log_threshold_lines": "thresholds.error_lines",
    "site_up": "1 when health.url answered health.expect_status",
    "alert": "1 when the alert is active",
}


def _label(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in labels.items()) + "}"


def prometheus_text(env: str, metrics: dict[str, dict[str, float]], alerts: list[Alert]) -> str:
    """node_exporter textfile format: one gauge family per metric, labelled env and host."""
    firing = {(a.host, a.alert) for a in alerts}
    samples: dict[str, list[str]] = {}
    for host, values in metrics.items():
        for name, value in values.items():
            samples.setdefault(name, []).append(
                f"mlctl_{name}{_labels(env=env, host=host)} {float(value)!r}"
            )
        for alert in ALERT_NAMES:
            on = 1 if (host, alert) in firing else 0
            samples.setdefault("alert", []).append(
                f"mlctl_alert{_labels(env=env, host=host, alert=alert)} {on}"
            )
    lines = []
    for name in [n for n in HELP if n in samples]:
        lines += [f"# HELP mlctl_{name} {HELP[name]}", f"# TYPE mlctl_{name} gauge", *samples[name]]
    return "\n".join(lines) + "\n"


def _atomic_write(path: Path, text: str) -> None:
    """Write a temp file beside `path`, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- the task


def monitor_task(
    sel,
    once: bool = False,
    watch: bool = False,
    interval: float = 60.0,
    window: int = 300,
    webhook: str | None = None,
    prometheus: str | None = None,
) -> int:
    if once and watch:
        raise UsageError("--once and --watch exclude each other")
    with open_session(sel, "monitor") as sess:
        if not watch:
            return monitor_round(sess, window, webhook, prometheus)
        try:
            while True:
                monitor_round(sess, window, webhook, prometheus)
                time.sleep(max(1.0, interval))
        except KeyboardInterrupt:
            return 0  # the operator ended the watch; alerts were already reported per round


def monitor_round(sess, window: int, webhook: str | None, prometheus: str | None) -> int:
    env = sess.cfg.name
    now = time.time()
    facts = gather(sess, "monitor", window)
    alerts: list[Alert] = []
    metrics: dict[str, dict[str, float]] = {}
    for host, f in facts.items():
        host_alerts, metrics[host] = evaluate(host, f, sess.cfg.settings)
        alerts += host_alerts
    report(env, facts, alerts)
    if webhook:
        notify(webhook, env, alerts, state_path(env), now)
    if prometheus:
        _atomic_write(Path(prometheus), prometheus_text(env, metrics, alerts))
    sess.journal.record(
        "", "monitor", outcome="alert" if alerts else "ok", alerts=[asdict(a) for a in alerts]
    )
    return 2 if alerts else 0


def report(env: str, facts: dict, alerts: list[Alert]) -> None:
    stamp = time.strftime("%H:%M:%S")
    for a in alerts:
        console.out(f"{stamp} ALERT {a.host} {a.alert}: {a.detail}")
    quiet = [h for h in facts if not any(a.host == h for a in alerts)]
    if quiet:
        console.out(f"{stamp} ok {', '.join(quiet)}")
    if alerts:
        console.fail(f"{env}: {len(alerts)} alert(s)")
    else:
        console.done(f"{env}: no alerts on {len(facts)} host(s)")
