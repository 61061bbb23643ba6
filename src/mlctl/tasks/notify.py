"""Deploy notifications: a JSON event POSTed from this machine to each `notify:` webhook.

    notify: [{webhook: https://hooks.example/T0/B0/xyz, on: [deploy, rollback, failure]}]

A successful deploy sends `deploy`, a successful rollback `rollback`, a failed one of either
`failure`. The event carries the environment, release, commit, who, outcome and duration, and
a `text` line, so Slack-compatible webhooks show it as it is. Secrets are masked in it. A post
that fails (refused, timed out, an HTTP error) is one warning line: it never fails the deploy.
The webhook's URL is never printed (it often holds a token): the warning names its host.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from mlctl.config.operator_settings import notify_events
from mlctl.core import cancel, console
from mlctl.core.shell import mask
from mlctl.transport.journal import local_user

TIMEOUT = 5.0  # seconds per webhook: a slow receiver must not hold the deploy's end


def event(cfg, action: str, release: str, commit: str, error: str = "", **extra) -> dict:
    """The event of one finished deploy or rollback (pure, apart from the clock)."""
    outcome = "failed" if error else "ok"
    ev = {
        "event": "failure" if error else action,
        "action": action,
        "environment": cfg.name,
        "project": cfg.project["name"],
        "release": release,
        "commit": commit,
        "who": local_user(),
        "outcome": outcome,
        "hosts": list(cfg.hosts),
        **extra,
    }
    if error:
        ev["error"] = error
    ev["text"] = summary_text(ev)
    return ev


def summary_text(ev: dict) -> str:
    what = f"{ev['action']} of {ev['project']} {ev['release'] or '?'} to {ev['environment']}"
    took = f" in {ev['duration_s']:.0f} s" if "duration_s" in ev else ""
    if ev["outcome"] == "ok":
        return f"{ev['who']}: {what} succeeded{took} (commit {ev['commit'][:12]})"
    return f"{ev['who']}: {what} FAILED{took}: {ev.get('error', '')}"


def send(sess, action: str, release: str, commit: str = "", error: BaseException | None = None):
    """Tell each webhook that asked for this event; warn (only) about those that failed."""
    hooks = sess.cfg.notify or []
    if not hooks:
        return
    why = _describe(error) if error is not None else ""
    extra = {"duration_s": _elapsed(sess), "run_id": run_id(sess)}
    ev = event(sess.cfg, action, release, commit, why, **extra)
    ev = json.loads(mask(json.dumps(ev), sess.secrets))  # an error line may quote a secret
    for hook in hooks:
        if ev["event"] in notify_events(hook):
            problem = post(hook["webhook"], ev)
            if problem:
                host = urlsplit(hook["webhook"]).hostname
                console.warn(f"notification to {host} failed: {problem} ({action} unaffected)")


def post(url: str, payload: dict, timeout: float = TIMEOUT) -> str:
    """POST `payload` as JSON; '' when the receiver took it (2xx), else why not."""
    body = json.dumps(payload).encode()
    req = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 — http(s) only
            r.read()
        return ""
    except urllib.error.HTTPError as e:
        return f"HTTP {e.code}"
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        return str(reason) or type(e).__name__


def run_id(sess) -> str:
    return sess.journal.run_id


def commit_of(release: str) -> str:
    """The (short) commit a release id ends with: `20260101120000-0123456789ab`."""
    return release.rpartition("-")[2] if "-" in release else ""


def _elapsed(sess) -> float:
    """Seconds since the run began (its run id starts with its local start time)."""
    try:
        start = time.mktime(time.strptime(sess.journal.run_id[:15], "%Y%m%dT%H%M%S"))
    except ValueError:
        return 0.0
    return round(max(0.0, time.time() - start), 1)


def _describe(error: BaseException) -> str:
    if isinstance(error, KeyboardInterrupt):
        return cancel.describe(error)
    return str(error).splitlines()[0] if str(error) else type(error).__name__
