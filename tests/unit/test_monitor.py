"""monitor: alerts from fixture facts, Prometheus textfile output, webhook de-duplication."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlctl.config import schema
from mlctl.tasks import monitor

RID = "20250102030405-abcdef012345"


def settings(**thresholds) -> dict:
    s = schema.defaults_of(schema.ENV_KEYS)
    s["thresholds"].update(thresholds)
    return s


def facts(**over) -> dict:
    f = {
        "disk": {"path": "/srv/notes", "used_pct": 42.0, "free_bytes": 1, "ms": 0},
        "memory": {"used_pct": 30.0, "available_bytes": 1, "ms": 0},
        "release": {"current": RID, "exists": True},
        "site": {"status": 200},
        "failed_units": {"units": [], "code": 0},
        "nginx_logs": {
            "window": 300,
            "requests": 100,
            "errors_5xx": 1,
            "error_lines": 0,
            "last_error": None,
            "access_log": True,
            "error_log": True,
        },
    }
    f.update(over)
    return f


def alert_names(f, s=None) -> list[str]:
    return [a.alert for a in monitor.evaluate("h1", f, s or settings())[0]]


# ---------------------------------------------------------------- alerts


def test_quiet_host_has_no_alert_and_all_metrics():
    alerts, metrics = monitor.evaluate("h1", facts(), settings())
    assert alerts == []
    assert metrics == {
        "up": 1, "disk_used_ratio": 0.42, "disk_threshold_ratio": 0.9,
        "memory_used_ratio": 0.3, "memory_threshold_ratio": 0.9, "failed_units": 0,
        "http_requests_window": 100, "http_5xx_window": 1, "http_5xx_ratio": 0.01,
        "http_5xx_threshold_ratio": 0.05, "error_log_lines_window": 0,
        "error_log_threshold_lines": 0, "site_up": 1,
    }  # fmt: skip


@pytest.mark.parametrize(
    "over, alert, detail",
    [
        ({"disk": {"path": "/srv", "used_pct": 95.0}}, "disk", "disk 95% used > 90% (/srv)"),
        ({"memory": {"used_pct": 97.0}}, "memory", "memory 97% used > 90%"),
        (
            {"failed_units": {"units": ["nginx.service"], "code": 0}},
            "failed_units",
            "failed units: nginx.service",
        ),
        (
            {
                "nginx_logs": {
                    "window": 300,
                    "requests": 10,
                    "errors_5xx": 3,
                    "error_lines": 0,
                    "access_log": True,
                    "error_log": True,
                }
            },
            "rate_5xx",
            "nginx 5xx 30.0% (3/10) in the last 300s > 5%",
        ),
        (
            {
                "nginx_logs": {
                    "window": 60,
                    "requests": 0,
                    "errors_5xx": 0,
                    "error_lines": 2,
                    "last_error": "upstream gone",
                    "access_log": True,
                    "error_log": True,
                }
            },
            "error_log",
            "2 nginx error line(s) in the last 60s > 0; last: upstream gone",
        ),
        (
            {"site": {"status": None, "error": "refused"}},
            "site",
            "http://127.0.0.1/healthz: refused (expected 200)",
        ),
    ],
)
def test_each_alert(over, alert, detail):
    alerts, _ = monitor.evaluate("h1", facts(**over), settings())
    assert [(a.alert, a.detail) for a in alerts] == [(alert, detail)]


def test_thresholds_come_from_settings():
    busy = facts(
        nginx_logs={
            "window": 300,
            "requests": 10,
            "errors_5xx": 3,
            "error_lines": 4,
            "access_log": True,
            "error_log": True,
        }
    )
    assert alert_names(busy, settings(rate_5xx_pct=50.0, error_lines=10)) == []


def test_systemctl_without_systemd_is_not_an_alert():
    f = facts(failed_units={"units": [], "code": 1})
    alerts, metrics = monitor.evaluate("h1", f, settings())
    assert alerts == [] and "failed_units" not in metrics


def test_site_down_without_release_is_not_an_alert():
    assert alert_names(facts(release={"current": None}, site={"status": None})) == []


def test_unreachable_host():
    alerts, metrics = monitor.evaluate("h1", {"connect_error": "refused"}, settings())
    assert [(a.alert, a.detail) for a in alerts] == [("unreachable", "refused")]
    assert metrics == {"up": 0}


# ---------------------------------------------------------------- Prometheus


def test_prometheus_text_parses_and_carries_labels():
    alerts, m1 = monitor.evaluate("h1", facts(disk={"path": "/", "used_pct": 95.0}), settings())
    a2, m2 = monitor.evaluate('we"ird\\host', {"connect_error": "x"}, settings())
    text = monitor.prometheus_text("test", {"h1": m1, 'we"ird\\host': m2}, alerts + a2)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert all(f.type == "gauge" for f in families.values())
    disk = {s.labels["host"]: s.value for s in families["mlctl_disk_used_ratio"].samples}
    assert disk == {"h1": 0.95}
    up = {s.labels["host"]: s.value for s in families["mlctl_up"].samples}
    assert up == {"h1": 1.0, 'we"ird\\host': 0.0}
    firing = {
        (s.labels["host"], s.labels["alert"]): s.value for s in families["mlctl_alert"].samples
    }
    assert firing[("h1", "disk")] == 1 and firing[("h1", "memory")] == 0
    assert firing[('we"ird\\host', "unreachable")] == 1
    assert {s.labels["env"] for f in families.values() for s in f.samples} == {"test"}
    assert 'mlctl_disk_threshold_ratio{env="test",host="h1"} 0.9' in text


def test_prometheus_file_is_replaced_atomically(tmp_path):
    target = tmp_path / "textfile" / "mlctl.prom"
    monitor._atomic_write(target, "a 1\n")
    monitor._atomic_write(target, "a 2\n")
    assert target.read_text() == "a 2\n"
    assert [p.name for p in target.parent.iterdir()] == ["mlctl.prom"]


# ---------------------------------------------------------------- webhook de-duplication


def alert(name="disk", host="h1") -> monitor.Alert:
    return monitor.Alert(host, name, f"{name} detail", 95.0, 90)


def test_new_alert_is_sent_once_then_remembered():
    state = {"sent": {}}
    current = [alert("disk")]
    assert monitor.new_alerts(current, state) == current
    state = monitor.next_state(current, state, current, now=1.0)
    assert monitor.new_alerts(current, state) == []
    assert state == {"sent": {"h1/disk": {"since": 1.0, "detail": "disk detail"}}}


def test_cleared_alert_that_comes_back_is_new():
    state = monitor.next_state([alert()], {"sent": {}}, [alert()], now=1.0)
    state = monitor.next_state([], state, [], now=2.0)  # cleared
    assert state == {"sent": {}}
    assert monitor.new_alerts([alert()], state) == [alert()]


def test_undelivered_alert_is_retried():
    state = monitor.next_state([alert()], {"sent": {}}, delivered=[], now=1.0)
    assert monitor.new_alerts([alert()], state) == [alert()]


def test_state_file_survives_garbage(tmp_path):
    path = tmp_path / "monitor-test.json"
    path.write_text("not json")
    assert monitor.load_state(path) == {"sent": {}}
    monitor.save_state(path, {"sent": {"h1/disk": {"since": 1}}})
    assert monitor.load_state(path) == {"sent": {"h1/disk": {"since": 1}}}


def test_state_path_is_under_the_state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MLCTL_STATE_DIR", str(tmp_path))
    assert monitor.state_path("live") == tmp_path / "monitor-live.json"


@pytest.fixture
def receiver():
    """A local webhook endpoint; yields (url, list of received JSON bodies)."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 — http.server's naming
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()
    server.server_close()


def test_webhook_posts_each_new_alert_once(receiver, tmp_path):
    url, received = receiver
    state = tmp_path / "monitor-test.json"
    disk, site = alert("disk"), alert("site", host="h2")
    assert monitor.notify(url, "test", [disk], state, now=1_700_000_000.0) == [disk]
    assert monitor.notify(url, "test", [disk, site], state, now=1_700_000_060.0) == [site]
    assert monitor.notify(url, "test", [disk, site], state, now=1_700_000_120.0) == []
    assert [(b["host"], b["alert"]) for b in received] == [("h1", "disk"), ("h2", "site")]
    body = received[0]
    assert set(body) == {"text", "env", "host", "alert", "detail", "value", "threshold", "ts"}
    assert body["text"] == "[test] h1: disk — disk detail"
    assert (body["env"], body["value"], body["threshold"]) == ("test", 95.0, 90)
    # Cleared, then back: sent again.
    monitor.notify(url, "test", [site], state, now=1_700_000_180.0)
    monitor.notify(url, "test", [disk, site], state, now=1_700_000_240.0)
    assert [b["alert"] for b in received] == ["disk", "site", "disk"]


def test_webhook_failure_is_retried_next_run(tmp_path, receiver):
    state = tmp_path / "monitor-test.json"
    assert monitor.notify("http://127.0.0.1:9/unreachable", "test", [alert()], state, 1.0) == []
    url, received = receiver
    assert monitor.notify(url, "test", [alert()], state, 2.0) == [alert()]
    assert len(received) == 1
