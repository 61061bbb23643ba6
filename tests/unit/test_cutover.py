"""The nginx cutover: which slot a host uses, the exact commands, the slot gate's requests, and
setup's move of a host from one gunicorn unit to two slots."""

from __future__ import annotations

import http.server
import json
import os
import socketserver
import threading

import pytest

from mlctl import remote
from mlctl.commands import cutover as cut
from mlctl.commands import provision as pv
from mlctl.commands import provision_plan as planner
from mlctl.config import healthpaths
from mlctl.config.layout import AppSlots, Layout
from mlctl.tasks.serving import RESTART, START, WARM, choose
from tests.unit.test_setup_plan import LIVE_BLUE, cfg, fixed_secret, provisioned  # noqa: F401

SLOTS = AppSlots("app")
LAY = Layout("/srv/app")
OLD, NEW = "20260101000000-aaaaaaa", "20260102000000-bbbbbbb"


def facts(live="blue", blue=(None, False), green=(None, False)) -> dict:
    return {
        "live": live,
        "blue": {"release": blue[0], "active": blue[1]},
        "green": {"release": green[0], "active": green[1]},
    }


# ---------------------------------------------------------------- which slot


def test_a_new_release_starts_in_the_idle_slot():
    assert choose(facts(blue=(OLD, True)), NEW, "nginx") == (START, "green")
    assert choose(facts("green", green=(OLD, True), blue=(OLD, False)), NEW, "nginx") == (
        START,
        "blue",
    )


def test_a_live_slot_stopped_since_a_reboot_still_counts_as_serving():
    # socket activation: its service starts on the first request, so it is not the idle one
    assert choose(facts(blue=(OLD, False)), NEW, "nginx") == (START, "green")


def test_the_first_release_starts_in_the_live_slot_that_serves_nothing():
    assert choose(facts(), NEW, "nginx") == (START, "blue")
    assert choose({"live": None}, NEW, "nginx") == (START, "blue")


def test_going_back_to_a_release_a_slot_still_runs_is_a_switch():
    assert choose(facts("green", blue=(OLD, True), green=(NEW, True)), OLD, "nginx") == (
        WARM,
        "blue",
    )


def test_a_slot_that_was_retired_is_started_again_not_switched_to():
    assert choose(facts("green", blue=(OLD, False), green=(NEW, True)), OLD, "nginx") == (
        START,
        "blue",
    )


def test_restart_mode_always_uses_the_live_slot():
    assert choose(facts("green", green=(OLD, True)), NEW, "restart") == (RESTART, "green")
    assert choose({}, NEW, "restart") == (RESTART, "blue")


# ---------------------------------------------------------------- the commands


def test_slot_names():
    assert SLOTS.unit("green") == "gunicorn-app@green"
    assert SLOTS.socket("green") == "/run/gunicorn-app-green.sock"
    assert SLOTS.upstream_file == "/etc/nginx/mlctl/app.upstream.conf"
    assert SLOTS.static_file == "/etc/nginx/mlctl/app.static.conf"
    assert SLOTS.retire_unit("blue") == "mlctl-retire-gunicorn-app-blue"
    assert AppSlots.other("blue") == "green" and AppSlots.other("green") == "blue"


def test_the_live_files_name_the_slot():
    assert cut.upstream_text(SLOTS, "green").splitlines()[-1] == (
        "server unix:/run/gunicorn-app-green.sock fail_timeout=0;"
    )
    assert (
        cut.static_text(LAY, "green").splitlines()[-1] == "alias /srv/app/slots/green/staticfiles/;"
    )


def test_point_nginx_tests_before_it_reloads_and_puts_the_old_files_back():
    text = cut.point_nginx(SLOTS, LAY, "green", "blue").render()
    new = "/etc/nginx/mlctl/app.upstream.conf.new"
    assert text.startswith("set -e; mkdir -p /etc/nginx/mlctl ; printf %s ")
    assert f"> {new} ;" in text
    assert f"mv -f {new} /etc/nginx/mlctl/app.upstream.conf ;" in text
    test_at, reload_at = text.index("nginx -t -q"), text.index("systemctl reload nginx")
    assert test_at < reload_at
    refused = text[test_at:reload_at]
    assert "gunicorn-app-blue.sock" in refused and "exit 78; }" in refused
    assert text.endswith("systemctl reload nginx ;")


def test_start_and_gate_cancels_a_retirement_links_the_slot_and_probes_while_it_starts():
    probe = pv.Cmd.of("probe")
    text = cut.start_and_gate(SLOTS, LAY, "green", NEW, probe).render()
    order = [
        "systemctl stop mlctl-retire-gunicorn-app-green.timer"
        " mlctl-retire-gunicorn-app-green.service",
        f"ln -sfn ../releases/{NEW} /srv/app/slots/.green.new",
        "mv -Tf /srv/app/slots/.green.new /srv/app/slots/green",
        "t0=$(date +%s)",
        "probe & probe=$!;",
        "systemctl restart gunicorn-app@green.service",
        'wait "$probe"',
    ]
    at = [text.index(part) for part in order]
    assert at == sorted(at)
    # a slot that fails to start or fails the gate is stopped again
    assert text.count("systemctl stop gunicorn-app@green.socket gunicorn-app@green.service") == 2


def test_retire_waits_for_nginx_then_stops_the_slot_in_a_transient_timer():
    text = cut.retire(SLOTS, "blue", 300).render()
    assert (
        "systemd-run --quiet --collect --unit=mlctl-retire-gunicorn-app-blue --on-active=300s"
        " --timer-property=AccuracySec=1s /bin/sh -c" in text
    )
    assert "nginx: worker process is shutting down" in text
    assert text.endswith(
        "systemctl disable --quiet --no-reload gunicorn-app@blue.socket;"
        " systemctl stop gunicorn-app@blue.socket gunicorn-app@blue.service' ;"
    )
    assert "--on-active=1s" in cut.retire(SLOTS, "blue", 0).render()


def test_cutover_order_nginx_then_current_then_the_old_slot_retires():
    text = cut.cutover(SLOTS, LAY, "green", NEW, "blue", 60).render()
    order = [
        "systemctl start gunicorn-app@green.service",
        "nginx -t -q",
        "systemctl reload nginx",
        f"mv -Tf /srv/app/current.new-{NEW} /srv/app/current",
        "systemctl enable --quiet --no-reload gunicorn-app@green.socket",
        "--unit=mlctl-retire-gunicorn-app-blue --on-active=60s",
    ]
    at = [text.index(part) for part in order]
    assert at == sorted(at)
    same = cut.cutover(SLOTS, LAY, "blue", OLD, "blue", 60).render()
    assert "systemd-run" not in same  # re-pointing the live slot retires nothing


# ---------------------------------------------------------------- the slot's gate


def test_the_slot_gate_asks_the_socket_and_looks_for_the_static_file_in_the_release():
    settings = {
        "connection": "ssh",
        "server_name": "example.com",
        "health": {
            "url": "http://127.0.0.1/healthz",
            "expect_status": 200,
            "host_header": "",
            "paths": [{"path": "/", "expect": "<500"}],
            "static": True,
        },
    }
    rel = LAY.release(NEW)
    plan = healthpaths.slot_requests(settings, NEW, "/static/css/app.1a2b.css", "/run/s.sock", rel)
    assert plan["socket"] == "/run/s.sock"
    health, root, static = plan["requests"]
    assert health["release"] == NEW and health["host"] == "example.com"
    assert root["path"] == "/" and "file" not in root
    assert static["file"] == f"{rel}/staticfiles/css/app.1a2b.css"


class Healthz(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 — the stdlib's name
        body = json.dumps({"release": NEW}).encode() if self.path == "/healthz" else b"boom"
        self.send_response(200 if self.path == "/healthz" else 500)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):  # BaseHTTPRequestHandler wants a (host, port) client address
        request, _ = super().get_request()
        return request, ("local", 0)


def test_health_program_judges_a_slot_on_its_unix_socket_and_files_on_disk(tmp_path):
    ns: dict = {}
    exec(compile(remote.source("health"), "health", "exec"), ns)  # noqa: S102 — our own program
    sock = str(tmp_path / "s.sock")
    server = UnixServer(sock, Healthz)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    (tmp_path / "app.css").write_text("x")
    try:
        reqs = [
            {"path": "/healthz", "expect": "200", "release": NEW},
            {"path": "/", "expect": "<500"},
            {"path": "/static/app.css", "expect": "200", "file": str(tmp_path / "app.css")},
            {"path": "/static/gone.css", "expect": "200", "file": str(tmp_path / "gone.css")},
        ]
        results = ns["once"]({"base": sock, "timeout": 5, "requests": reqs})
    finally:
        server.shutdown()
        server.server_close()
        os.unlink(sock)
    assert [(r["ok"], r["why"]) for r in results] == [
        (True, "HTTP 200"),
        (False, "HTTP 500 (expected <500)"),
        (True, "HTTP 200"),
        (False, "HTTP 404 (expected 200)"),
    ]


# ---------------------------------------------------------------- setup: one unit -> two slots


def single_unit_host(cfg):  # noqa: F811 — the fixture's value
    """A host an earlier mlctl set up: the one unit's files, no slot, no live files."""
    base = provisioned(cfg)
    sums = {k: v for k, v in base.sums.items() if "@" not in k}
    sums.update({path: "f" * 64 for path in pv.single_unit_files("app")})
    sums[pv.site_paths("app")[0]] = "e" * 64  # the site without the include
    slots = {"current": OLD, "live": "", "links": {}, "sockets": {}}
    return planner.HostFacts(**{**base.__dict__, "sums": sums, "slots": slots})


def test_setup_moves_a_single_unit_host_to_two_slots_with_the_site_up(cfg):  # noqa: F811
    plan = planner.plan(single_unit_host(cfg), cfg, fixed_secret)
    changed = [s.name for s in plan.steps if s.changed]
    assert changed == ["gunicorn units", "app slots", "nginx site", "single gunicorn unit"]
    labels = [a.label for s in plan.steps for a in s.actions]
    start = f"start {OLD} in slot blue"
    assert labels.index("enable socket") < labels.index(start) < labels.index("name the live slot")
    assert labels.index("reload nginx") < labels.index("remove the single unit")
    gate = next(a for s in plan.steps for a in s.actions if a.label == start).cmd.render()
    assert "/run/gunicorn-app-blue.sock" in gate and OLD in gate
    remove = next(a for s in plan.steps for a in s.actions if a.label == "remove the single unit")
    text = remove.cmd.render()
    assert text.index("worker process is shutting down") < text.index(
        "systemctl disable --now --quiet gunicorn-app.socket gunicorn-app.service"
    )
    assert (
        "rm -f /etc/systemd/system/gunicorn-app.socket /etc/systemd/system/gunicorn-app.service"
        in text
    )


def test_setup_leaves_the_live_files_of_a_host_with_slots_alone(cfg):  # noqa: F811
    serving = {**LIVE_BLUE, "current": OLD, "live": "green", "links": {"green": OLD}}
    serving["sockets"] = {"green": {"enabled", "active"}}
    plan = planner.plan(provisioned(cfg, slots=serving), cfg, fixed_secret)
    assert not any(s.changed for s in plan.steps)


def test_setup_starts_the_live_slot_when_its_link_is_not_the_current_release(cfg):  # noqa: F811
    drifted = {**LIVE_BLUE, "current": NEW, "links": {"blue": OLD}}
    plan = planner.plan(provisioned(cfg, slots=drifted), cfg, fixed_secret)
    assert [s.name for s in plan.steps if s.changed] == ["app slots"]


def test_survey_reads_the_slots():
    text = "\n".join(pv.Cmd((*pv.slot_state(LAY, SLOTS),)).render().split(";"))
    assert "readlink /srv/app/current" in text and "readlink /srv/app/slots/green" in text
    assert "grep -qs /run/gunicorn-app-green.sock /etc/nginx/mlctl/app.upstream.conf" in text


@pytest.mark.parametrize("missing", ["", "link blue \n"])
def test_parse_slots_of_a_host_without_slots(missing):
    parsed = pv.parse_slots("current \n" + missing)
    assert parsed["current"] == "" and parsed["live"] == ""


def test_every_cutover_script_is_valid_shell(tmp_path):
    """`sh -n` on each script as a host runs it (a stray `;` fails them all at once)."""
    import subprocess

    from mlctl.commands import service

    probe = pv.Cmd.of("probe")
    scripts = [
        cut.start_and_gate(SLOTS, LAY, "green", NEW, probe),
        cut.restart_in_place(SLOTS, LAY, "blue", NEW),
        cut.retire(SLOTS, "blue", 5),
        pv.remove_single_unit("app"),
    ]
    for old in ("blue", None):
        scripts.append(
            pv.script(
                service.mark_start(),
                cut.cutover(SLOTS, LAY, "green", NEW, old, 5),
                service.probe_or_explain(probe, pv.Cmd.of("log")),
            )
        )
    for i, cmd in enumerate(scripts):
        path = tmp_path / f"{i}.sh"
        path.write_text(cmd.render())
        r = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True)
        assert r.returncode == 0, (cmd.render(), r.stderr)


def test_cutover_settings_shorthand_default_and_refusals(write_inventory):
    from mlctl.config import inventory
    from mlctl.core.errors import InventoryError
    from tests.unit.conftest import BASE

    text = BASE.replace(
        "    hosts: [t1.example.internal]\n",
        "    hosts: [t1.example.internal]\n    cutover: restart\n",
    )
    inv = inventory.load(write_inventory(text))
    assert inventory.resolve(inv, "test").cutover.mode == "restart"
    live = inventory.resolve(inv, "live").cutover
    assert (live.mode, live.keep_old) == ("nginx", 300.0)
    flags = {"cutover.keep_old": -1}
    with pytest.raises(InventoryError, match="cutover.keep_old.*must not be negative"):
        inventory.resolve(inv, "live", {}, flags)
    with pytest.raises(InventoryError, match="blue-green"):
        bad = BASE.replace("  user: deploy\n", "  user: deploy\n  cutover: blue-green\n")
        inventory.resolve(inventory.load(write_inventory(bad)), "test")


def test_prune_never_removes_a_release_a_slot_still_runs():
    from mlctl.tasks import prune

    rolled_back, older = "20260101000000-ccccccc", "20251201000000-ddddddd"
    facts = {
        "releases": [older, rolled_back, OLD],
        "metas": {
            older: {"status": "good"},
            rolled_back: {"status": "rolled-back"},
            OLD: {"status": "good"},
        },
        "slots": {"live": "blue", "green": {"release": rolled_back, "active": True}},
    }
    (remove, _venvs) = prune.commands(LAY, facts, NEW, keep=1)
    assert rolled_back not in remove.render() and older in remove.render()
    facts["slots"]["green"]["active"] = False  # retired: nothing runs it any more
    (remove, _venvs) = prune.commands(LAY, facts, NEW, keep=1)
    assert rolled_back in remove.render()


def test_diag_and_check_show_the_live_slot_and_the_one_kept_warm():
    from mlctl.tasks import diag, judges

    g = {
        "kind": "systemd",
        "slot": "green",
        "unit": "gunicorn-app@green",
        "service": {"active": "active", "pid": 7},
        "socket": {"active": "active"},
        "other": {"slot": "blue", "active": "active", "release": OLD},
    }
    field = diag.gunicorn_field(g)
    assert diag.field_text("gunicorn", field) == f"active (pid 7), slot green; {OLD} kept warm"
    ok = judges.gunicorn_check(g, "gunicorn-app", True)
    assert (ok.status, ok.detail) == ("ok", "gunicorn-app@green.service: active (pid 7)")
    legacy = judges.gunicorn_check({**g, "slot": None}, "gunicorn-app", True)
    assert legacy.status == "fail" and "run `mlctl ENV setup`" in legacy.detail
