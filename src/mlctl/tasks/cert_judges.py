"""The served certificate, judged (pure, unit-tested): the probe (remote/probe_tls.py) shook
hands with the host's own nginx for each of the site's names, verifying the chain, the name and
the dates; here each answer becomes a `check` line or a `monitor` alert, `thresholds.cert_days`
before the expiry, and certbot's renewal timer is judged with `tls: acme`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from mlctl.tasks.judges import FAIL, OK, WARN, Check

PLAIN_HTTP = "plain HTTP (tls: off): no certificate, cookies not marked secure"


@dataclass(frozen=True)
class CertFinding:
    """One name's certificate: `status` ok/warn/fail, the text, and the days left (or None)."""

    name: str
    status: str
    detail: str
    days: float | None


def finding(c: dict, min_days: int, now: float | None = None) -> CertFinding:
    name = c["name"]
    if "error" in c:
        return CertFinding(name, FAIL, f"{name}: certificate refused: {c['error']}", None)
    left = (c["not_after"] - (now if now is not None else time.time())) / 86400
    until = time.strftime("%Y-%m-%d", time.gmtime(c["not_after"]))
    issuer = f", issuer {c['issuer']}" if c.get("issuer") else ""
    if left < min_days:
        text = f"{name}: certificate expires in {int(left)} day(s) ({until}) < {min_days}"
        return CertFinding(name, WARN, text + issuer, left)
    return CertFinding(
        name, OK, f"{name}: certificate valid until {until} ({int(left)} days{issuer})", left
    )


def timer_finding(t: dict) -> tuple[str, str]:
    """(status, text) of certbot's renewal timer: enabled and active, or nothing renews."""
    text = f"{t['unit']}: {t['enabled']}, {t['active']}"
    if t["enabled"] == "enabled" and t["active"] == "active":
        return OK, text
    return FAIL, f"{text}: the certificate will not be renewed (systemctl enable --now {t['unit']})"


def tls_checks(facts: dict, settings: dict, now: float | None = None) -> list[Check]:
    """`check`'s TLS lines: plain HTTP said so, else each name's served certificate and the
    renewal timer."""
    if settings["connection"] == "local":
        return []
    if settings["tls"]["mode"] == "off":
        return [Check("https", OK, PLAIN_HTTP)]
    served = facts.get("served_tls")
    if not served or served.get("failed"):
        why = (served or {}).get("error", "no probe answer")
        return [Check("https", FAIL, f"served certificate not probed: {why}")]
    days = settings["thresholds"]["cert_days"]
    out = [
        Check("https", f.status, f.detail) for f in (finding(c, days, now) for c in served["certs"])
    ]
    if "timer" in served:
        out.append(Check("https-renewal", *timer_finding(served["timer"])))
    return out
