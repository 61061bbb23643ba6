"""`maintenance on|off`, the page around a deploy's migration, and how `check`/`status` say it.

While the page is on, nginx answers 503 with it to every client except the health path and the
addresses of `maintenance.allow`. The host itself always reaches the app, so mlctl's own probes
and a deploy's health gate still judge the app; `check` and `status` add that the page is on.
`deploy --maintenance` turns it on before migrating and off once the deploy has succeeded. A
deploy that fails leaves it on and says so: the operator looks at the site before opening it.
"""

from __future__ import annotations

import time

from mlctl.commands import maintenance as page
from mlctl.commands.release import write_file
from mlctl.core import console
from mlctl.core.errors import PreflightFailed, UsageError
from mlctl.tasks import guards
from mlctl.tasks.judges import OK, WARN, Check
from mlctl.transport.selection import open_session


def maintenance_task(sel, state=None, message=None, yes=False) -> int:
    if state not in ("on", "off"):
        raise UsageError("say which: mlctl ENV maintenance on|off [--message TEXT]")
    with open_session(sel, "maintenance") as sess:
        cfg = sess.cfg
        if cfg.local:
            raise UsageError(f"{cfg.name} is a local environment: it has no nginx to show a page")
        guards.confirm(cfg, "maintenance", yes)
        sess.connect()
        text = message or cfg.maintenance.message
        sess.each(lambda h: switch(h, state == "on", text))
    if state == "on":
        console.done(f"{cfg.name}: maintenance page on ({_who_passes(cfg)} still reach the app)")
    else:
        console.done(f"{cfg.name}: maintenance page off; the site is open")
    return 0


def switch(host, on: bool, message: str = "") -> None:
    """Turn the page on (with `message`) or off on one host; nginx needs no reload."""
    project = host.session.cfg.project["name"]
    ready = host.run("maintenance ready", page.is_on(project), warn=True)
    if ready.code == 3:
        raise PreflightFailed(
            f"{host.name}: nginx has no maintenance page for {project} yet",
            f"run `mlctl {host.session.cfg.name} setup` first",
        )
    if on:
        host.stream("maintenance page", write_file(page.page_path(project)), page.page(message))
        host.run("maintenance on", page.switch_on(project))
    else:
        host.run("maintenance off", page.switch_off(project))
    console.step(host.name, f"maintenance page {'on' if on else 'off'}")


def _who_passes(cfg) -> str:
    allowed = ", ".join(cfg.maintenance.allow)
    return (
        f"the health path, the hosts themselves and {allowed}"
        if allowed
        else ("the health path and the hosts themselves")
    )


class Window:
    """The page around a deploy: on before the migration, off after success, left on (and
    said so) after a failure. Does nothing unless the deploy asked for it."""

    def __init__(self, sess, wanted: bool):
        self.sess, self.wanted, self.opened = sess, wanted and not sess.cfg.local, False

    def open(self) -> None:
        if self.wanted:
            text = self.sess.cfg.maintenance.message
            self.sess.each(lambda h: switch(h, True, text))
            self.opened = True

    def close(self) -> None:
        if self.opened:
            self.sess.each(lambda h: switch(h, False))
            self.opened = False

    def left_open(self) -> None:
        if self.opened:
            console.warn(
                f"the maintenance page stays on: check the site, then "
                f"`mlctl {self.sess.cfg.name} maintenance off`"
            )


# ---------------------------------------------------------------- what check and status say


def maintenance_check(fact: dict, now: float | None = None) -> Check:
    if not fact.get("on"):
        return Check("maintenance", OK, "off")
    since = time.strftime("%Y-%m-%d %H:%M", time.localtime(fact.get("since") or now or 0))
    return Check(
        "maintenance", WARN, f"page on since {since}: clients get 503 except maintenance.allow"
    )


def status_note(facts: dict) -> str:
    return "  maintenance page on" if (facts.get("maintenance") or {}).get("on") else ""
