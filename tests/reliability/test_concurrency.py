"""Concurrency: one lock decides, a live holder is never taken over, switches drop no request."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from mlctl import remote
from mlctl.commands import cutover as cut
from mlctl.config.layout import AppSlots, Layout
from mlctl.core.shell import Cmd, script

from .harness import D, wait_for_line

pytestmark = [pytest.mark.reliability, pytest.mark.hosts]

RACE_ROUNDS = int(os.environ.get("REL_RACE_ROUNDS", "12"))
# The issue asks 200; each switch starts gunicorn in the idle slot and health-checks it (1-2 s
# on the 2-core CI machine), so the default run does 40 and REL_SWITCHES=200 runs the full count.
SWITCHES = int(os.environ.get("REL_SWITCHES", "40"))


def finish(proc: subprocess.Popen, interrupt: bool = True) -> tuple[int, str]:
    if interrupt and proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=180)
    finally:
        proc.kill()
    return proc.returncode, err


def test_two_deploys_started_at_the_same_instant_exactly_one_runs(case):
    """RACE_ROUNDS rounds (12 by default to keep the battery under 8 minutes; the issue asks 20:
    REL_RACE_ROUNDS=20): the loser names the winner; the winner is then interrupted, which must
    also leave everything clean."""
    for i in range(RACE_ROUNDS):
        go = threading.Event()
        procs: list = [None, None]

        def start(k, go=go, procs=procs):
            go.wait()
            procs[k] = case.popen("test", "deploy")

        threads = [threading.Thread(target=start, args=(k,)) for k in (0, 1)]
        for t in threads:
            t.start()
        go.set()
        for t in threads:
            t.join()
        # The loser exits on its own, quickly; then stop the winner (it cleans up on Ctrl-C).
        deadline = time.monotonic() + 120
        while all(p.poll() is None for p in procs) and time.monotonic() < deadline:
            time.sleep(0.05)
        loser = next(p for p in procs if p.poll() is not None)
        winner = next(p for p in procs if p is not loser)
        lcode, lerr = finish(loser, interrupt=False)
        wcode, werr = finish(winner)
        assert lcode == 8, f"round {i}: loser exited {lcode}:\n{lerr}\nwinner:\n{werr}"
        assert "deploy lock held by" in lerr and f"pid {winner.pid} (deploy" in lerr, lerr
        assert wcode in (0, 130), f"round {i}: winner exited {wcode}:\n{werr}"
        if wcode == 0:
            case.good = case.current(case.hosts[0])


def test_deploy_and_rollback_contend_for_the_same_lock(case):
    proc = case.popen("test", "deploy")
    try:
        wait_for_line(proc, " build ")
        p = case.fails("test", "rollback", "--to", case.good, "--db", "code-only")
        assert p.returncode == 8 and f"pid {proc.pid} (deploy" in p.stderr, p.stderr
    finally:
        code, err = finish(proc)
    assert code in (0, 130), err
    if code == 0:
        case.good = case.current(case.hosts[0])


def fake_holder(world, host, pid: int) -> None:
    rec = {
        "event": "started",
        "action": "deploy",
        "run_id": "battery-live-holder",
        "user": "someone",
        "pid": pid,
        "host": socket.gethostname(),
        "time": time.time(),
        "release": "",
    }
    world.sh(
        host,
        f"mkdir {D}/.mlctl/lock && echo '{json.dumps(rec)}' > {D}/.mlctl/lock/holder.json",
    )


def test_live_holder_is_never_taken_over_and_lock_wait_is_named(case):
    h1 = case.hosts[0]
    holder = subprocess.Popen(["sleep", "120"])
    try:
        fake_holder(case, h1, holder.pid)
        p = case.fails("test", "deploy")
        assert p.returncode == 8 and f"pid {holder.pid}" in p.stderr, p.stderr
        start = time.monotonic()
        p = case.fails("test", "deploy", "--set", "timeouts.lock_wait=3")
        assert time.monotonic() - start >= 3
        assert "after waiting 3s" in p.stderr and "timeouts.lock_wait" in p.stderr, p.stderr
        p = case.fails("test", "unlock")
        assert "may still be alive" in p.stderr, p.stderr
        assert case.sh(h1, f"test -d {D}/.mlctl/lock && echo held") == "held"
    finally:
        holder.kill()
        holder.wait()
        case.sh(h1, f"rm -rf {D}/.mlctl/lock")


class Client(threading.Thread):
    """Requests the site (the app and a static file) through nginx in a loop; counts failures."""

    def __init__(self, address: str):
        super().__init__(daemon=True)
        self.address = address
        self.stop = threading.Event()
        self.ok = 0
        self.errors: list[str] = []

    def run(self) -> None:
        paths = ["/healthz", "/static/notes/style.css", "/"]
        i = 0
        while not self.stop.is_set():
            path = paths[i % len(paths)]
            i += 1
            try:
                with urllib.request.urlopen(f"http://{self.address}{path}", timeout=30) as r:
                    r.read()
                    self.ok += 1
            except urllib.error.HTTPError as e:
                self.errors.append(f"{path}: HTTP {e.code}")
            except OSError as e:
                self.errors.append(f"{path}: {e}")


def test_switches_while_a_client_requests_the_site_zero_errors(case):
    """SWITCHES cutovers as a deploy does them (mlctl's own commands, built by the same functions:
    start in the idle slot gated on its socket, nginx pointed at it, the health gate through
    nginx), alternating two releases, while a client requests the site: no 404, no 502, no
    timeout."""
    h1 = case.hosts[0]
    a = case.good
    case.commit({"SWITCH_NOTE": "b\n"}, "release B")
    b = case.deploy_ok()
    lay, slots = Layout(D), AppSlots("djangoapp")
    live = case.sh(h1, f"grep -o 'blue\\|green' {slots.upstream_file}").strip()

    def gate(rid: str, sock: str | None = None) -> Cmd:
        requests = [{"path": "/healthz", "expect": "200", "host": "", "release": rid}]
        plan = {"base": "http://127.0.0.1", "timeout": 30, "requests": requests}
        if sock:
            plan["socket"] = sock
        return Cmd.of("python3", "-c", remote.source("health"), json.dumps(plan))

    def serve(rid: str, slot: str) -> str:
        old = AppSlots.other(slot)
        cmd = script(
            cut.start_and_gate(slots, lay, slot, rid, gate(rid, slots.socket(slot))),
            cut.cutover(slots, lay, slot, rid, old, 600),
            gate(rid),
        )
        return f"sh -c {shlex.quote(cmd.render())} >/dev/null"

    body = "; ".join(serve(r, slot) for r, slot in ((a, AppSlots.other(live)), (b, live)))
    loop = f"set -e; for i in $(seq {SWITCHES // 2}); do {body}; done"
    client = Client(h1.address)
    client.start()
    try:
        case.sh(h1, loop, timeout=SWITCHES * 10 + 60)
    finally:
        client.stop.set()
        client.join(60)
    assert client.ok > 0
    assert not client.errors, f"{len(client.errors)} errors, e.g. {client.errors[:5]}"
