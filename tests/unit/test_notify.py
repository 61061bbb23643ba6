"""Deploy notifications: the event, who gets it, and a receiver that is down or refuses."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

import pytest

from mlctl.config import inventory
from mlctl.core import console
from mlctl.tasks import notify
from mlctl.transport.journal import Journal


class Receiver:
    """A local HTTP server that records each POSTed JSON body and answers `status`."""

    def __init__(self, status: int = 200):
        self.bodies: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 — http.server's name
                length = int(self.headers["Content-Length"])
                outer.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/T0/secret-token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def session(write_inventory, tmp_path, hooks: list) -> SimpleNamespace:
    text = (
        "project: {name: app, settings_module: app.settings, wsgi: app.wsgi:application}\n"
        "environments:\n  test:\n    hosts: [web1, web2]\n"
        f"    notify: {json.dumps(hooks)}\n"
    )
    cfg = inventory.resolve(inventory.load(write_inventory(text)), "test", {}, {})
    journal = Journal("test", "deploy", log_dir=str(tmp_path))
    return SimpleNamespace(cfg=cfg, journal=journal, secrets=["hunter2-the-password"])


def test_a_deploy_posts_the_event_with_a_slack_text(write_inventory, tmp_path, receiver):
    sess = session(write_inventory, tmp_path, [{"webhook": receiver.url}])
    notify.send(sess, "deploy", "20260101120000-0123456789ab", "0123456789abcdef")
    (ev,) = receiver.bodies
    assert {k: ev[k] for k in ("event", "action", "environment", "project", "outcome")} == {
        "event": "deploy",
        "action": "deploy",
        "environment": "test",
        "project": "app",
        "outcome": "ok",
    }
    assert ev["release"] == "20260101120000-0123456789ab" and ev["commit"] == "0123456789abcdef"
    assert ev["hosts"] == ["web1", "web2"] and ev["who"] and ev["duration_s"] >= 0
    assert ev["run_id"] == sess.journal.run_id
    assert re.search(
        r": deploy of app 20260101120000-0123456789ab to test succeeded in \d+ s "
        r"\(commit 0123456789ab\)$",
        ev["text"],
    )


def test_a_failure_masks_secrets_and_goes_only_where_asked(write_inventory, tmp_path, receiver):
    other = Receiver()
    try:
        hooks = [
            {"webhook": receiver.url, "on": ["failure"]},
            {"webhook": other.url, "on": ["deploy"]},
        ]
        sess = session(write_inventory, tmp_path, hooks)
        error = RuntimeError("migrate failed: password hunter2-the-password refused\nmore")
        notify.send(sess, "rollback", "20260101120000-0123456789ab", "0123456789ab", error)
        (ev,) = receiver.bodies
        assert other.bodies == []
        assert ev["event"] == "failure" and ev["action"] == "rollback" and ev["outcome"] == "failed"
        assert ev["error"] == "migrate failed: password ******** refused"
        assert "hunter2" not in json.dumps(ev) and "FAILED" in ev["text"]
    finally:
        other.close()


@pytest.mark.parametrize("status", [None, 500])
def test_a_receiver_down_or_refusing_is_one_warning(write_inventory, tmp_path, monkeypatch, status):
    warnings: list[str] = []
    monkeypatch.setattr(console, "warn", warnings.append)
    if status is None:
        down = Receiver()
        url = down.url
        down.close()  # nothing listens there any more
    else:
        refusing = Receiver(status)
        url = refusing.url
    try:
        sess = session(write_inventory, tmp_path, [{"webhook": url}])
        notify.send(sess, "deploy", "r1", "c1")  # returns: a notification never fails a deploy
    finally:
        if status is not None:
            refusing.close()
    (line,) = warnings
    assert line.startswith("notification to 127.0.0.1 failed: ") and "deploy unaffected" in line
    assert "secret-token" not in line  # the webhook's URL is never shown
    assert ("HTTP 500" in line) if status else ("refused" in line.lower())


def test_no_webhook_no_request(write_inventory, tmp_path):
    notify.send(session(write_inventory, tmp_path, []), "deploy", "r1", "c1")


def test_commit_of_a_release_id():
    assert notify.commit_of("20260101120000-0123456789ab") == "0123456789ab"
    assert notify.commit_of("odd") == ""
