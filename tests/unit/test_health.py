"""The health gate and its messages: expect syntax, the request plan, the gate program against a
real local HTTP server, the dev pidfile guard, and the exact lines the user reads."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mlctl import remote
from mlctl.commands import service
from mlctl.config import healthpaths, inventory, schema
from mlctl.core.errors import DeployFailed, PreflightFailed
from mlctl.core.shell import Cmd
from mlctl.project import pipfail
from mlctl.tasks import compensation, hoststeps
from mlctl.transport.session import Session
from tests.unit.conftest import BASE

TRACEBACK = """[2025-01-02 03:04:05 +0000] [41] [INFO] Booting worker with pid: 41
Internal Server Error: /
Traceback (most recent call last):
  File "/srv/app/releases/r1/notes/views.py", line 40, in index
    raise ValueError("Missing staticfiles manifest entry for 'css/styles.css'")
ValueError: Missing staticfiles manifest entry for 'css/styles.css'
"""
ERROR = "ValueError: Missing staticfiles manifest entry for 'css/styles.css'"


@pytest.mark.parametrize(
    "text, lo, hi",
    [("200", 200, 200), ("<500", 100, 499), ("<=404", 100, 404), (">=200", 200, 599)]
    + [("2xx", 200, 299), ("200-399", 200, 399), (" 3xx ", 300, 399)],
)
def test_expect_ranges(text, lo, hi):
    assert healthpaths.parse_expect(text) == (lo, hi)


def test_expect_that_is_not_a_status_is_refused_naming_the_forms():
    with pytest.raises(ValueError) as e:
        healthpaths.parse_expect("ok")
    assert str(e.value) == "expected a status like 200, <500, 200-399 or 2xx, got 'ok'"


@pytest.mark.parametrize(
    "entry, line",
    [
        ("{path: about}", "path must start with / and hold no spaces (got 'about')"),
        ("{path: /, expect: fine}", "expected a status like 200, <500, 200-399 or 2xx, got 'fine'"),
        ("{path: /, status: 200}", "unknown key status (known: path, expect, body, host)"),
        ("{path: /, body: 3}", "body must be a string"),
    ],
)
def test_bad_health_path_is_one_exact_inventory_line(write_inventory, entry, line):
    text = BASE.replace(
        "    hosts: [t1.example.internal]\n",
        f"    hosts: [t1.example.internal]\n    health:\n      paths: [{entry}]\n",
    )
    with pytest.raises(inventory.InventoryError) as e:
        inventory.load(write_inventory(text))
    assert str(e.value) == f"environments.yaml:15: environments.test.health.paths[0]: {line}"


def test_the_plan_asks_health_url_pages_and_static_with_the_sites_host():
    s = schema.defaults_of(schema.ENV_KEYS)
    s.update(server_name="notes.example www.notes.example")
    s["health"]["paths"] = [{"path": "/", "expect": "<500"}, "/about/"]
    plan = healthpaths.requests(s, "r1", "/static/app.1a2b.css")
    H = "notes.example"  # noqa: N806
    assert plan == {
        "base": "http://127.0.0.1",
        "requests": [
            {"path": "/healthz", "expect": "200", "host": H, "body": "", "release": "r1"},
            {"path": "/", "expect": "<500", "host": H, "body": "", "release": ""},
            {"path": "/about/", "expect": "<500", "host": H, "body": "", "release": ""},
            {"path": "/static/app.1a2b.css", "expect": "200", "host": H, "body": "", "release": ""},
        ],
    }  # fmt: skip
    s.update(connection="local")  # no nginx on a dev host: no static file to ask for
    assert [r["path"] for r in healthpaths.requests(s, "r1", "/static/x.css")["requests"]] == [
        "/healthz",
        "/",
        "/about/",
    ]


def test_app_error_is_the_last_tracebacks_exception_line():
    earlier = "Traceback (most recent call last):\n  File 'x'\nKeyError: 'old'\n"
    assert healthpaths.app_error(earlier + TRACEBACK) == (
        ERROR,
        "\n".join(TRACEBACK.splitlines()[2:6]),
    )
    assert healthpaths.app_error("INFO all quiet\n") == ("", "")
    bind = "[2025-01-02 03:04:05 +0000] [77] [ERROR] Connection in use: ('127.0.0.1', 8765)"
    assert healthpaths.app_error(f"{bind}\n[2025-01-02 03:04:06 +0000] [77] [INFO] Retrying\n") == (
        "gunicorn: Connection in use: ('127.0.0.1', 8765)",
        bind,
    )


# ---------------------------------------------------------------- the gate against a real server


class App(BaseHTTPRequestHandler):
    release = "r1"
    root_status = 500
    log: Path | None = None

    def do_GET(self):  # noqa: N802 — http.server's naming
        if self.path == "/healthz":
            body, status = json.dumps({"release": self.release}).encode(), 200
        elif self.path == "/login-first":
            self.send_response(302)
            self.send_header("Location", "http://192.0.2.1/elsewhere")  # never followed
            self.end_headers()
            return
        else:
            status, body = self.root_status, b"<html>notes</html>"
            if status == 500 and self.log:
                with self.log.open("a") as fh:
                    fh.write(TRACEBACK)
        self.send_response(status)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def app():
    server = ThreadingHTTPServer(("127.0.0.1", 0), App)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    App.release, App.root_status, App.log = "r1", 500, None


def gate(port: int, release: str, timeout: float = 5) -> subprocess.CompletedProcess:
    config = {
        "base": f"http://127.0.0.1:{port}",
        "timeout": timeout,
        "requests": [
            {"path": "/healthz", "expect": "200", "host": "", "release": release},
            {"path": "/", "expect": "<500", "host": "", "release": ""},
        ],
    }
    argv = [sys.executable, "-c", remote.source("health"), json.dumps(config)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_gate_fails_at_once_when_the_new_release_answers_and_a_page_raises(app):
    start = time.monotonic()
    p = gate(app.server_port, "r1", timeout=30)
    assert p.returncode == hoststeps.UNHEALTHY
    assert p.stderr.strip() == "GET /: HTTP 500 (expected <500)"
    assert time.monotonic() - start < 10  # three strikes, not the whole timeout


def test_a_redirect_is_an_answer_never_followed(app):
    config = {
        "base": f"http://127.0.0.1:{app.server_port}",
        "timeout": 5,
        "once": True,
        "requests": [{"path": "/login-first", "expect": "<500", "host": "", "release": ""}],
    }
    argv = [sys.executable, "-c", remote.source("health"), json.dumps(config)]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert json.loads(p.stdout) == [
        {"path": "/login-first", "host": "", "expect": "<500", "status": 302, "ok": True,
         "why": "HTTP 302"}
    ]  # fmt: skip


def test_gate_never_takes_another_release_for_this_one(app):
    App.root_status = 200
    p = gate(app.server_port, "r2", timeout=1)
    assert p.returncode == hoststeps.UNHEALTHY
    assert p.stderr.strip() == "GET /healthz: HTTP 200 from release r1 (expected r2)"
    assert gate(app.server_port, "r1").returncode == 0


def dev_session(write_inventory, tmp_path, port: int) -> Session:
    text = BASE.replace("settings_module: app.settings", "settings_module: djangoapp.settings")
    text = text.replace(
        "    deploy_to: ./var/dev\n",
        f"    deploy_to: {tmp_path}/dev\n    service: pidfile\n"
        f"    health: {{url: 'http://127.0.0.1:{port}/healthz'}}\n",
    )
    cfg = inventory.resolve(inventory.load(write_inventory(text)), "dev", {}, {})
    sess = Session(cfg, "deploy", log_dir=str(tmp_path / "logs"))
    sess.connect()
    return sess


def test_health_failure_line_ends_with_the_apps_exception_and_logs_the_traceback(
    app, write_inventory, tmp_path
):
    sess = dev_session(write_inventory, tmp_path, app.server_port)
    host = sess.hosts[0]
    log = tmp_path / "dev" / "shared" / "logs" / "gunicorn.log"
    log.parent.mkdir(parents=True)
    log.write_text("Traceback (most recent call last):\nOldError: before the restart\n")
    host.facts["log_offset"] = log.stat().st_size  # what the restart saw
    App.log = log
    with pytest.raises(DeployFailed) as e:
        hoststeps.health(host, "r1", timeout=20)
    assert str(e.value) == (
        "localhost: health check failed: GET /: HTTP 500 (expected <500); see `mlctl dev logs` "
        f"(timeouts.health = 20s) — {ERROR}"
    )
    records = [json.loads(x) for x in (tmp_path / "logs" / "mlctl.jsonl").read_text().splitlines()]
    failed = [r for r in records if r["step"] == "health check" and r.get("traceback")]
    assert failed[-1]["traceback"] == "\n".join(TRACEBACK.splitlines()[2:6])


def test_health_failure_without_a_traceback_names_the_request_and_the_setting(
    app, write_inventory, tmp_path
):
    sess = dev_session(write_inventory, tmp_path, app.server_port)
    with pytest.raises(DeployFailed) as e:
        hoststeps.health(sess.hosts[0], "r9", timeout=1)
    assert str(e.value) == (
        "localhost: health check failed: GET /healthz: HTTP 200 from release r1 (expected r9); "
        "see `mlctl dev logs` (timeouts.health = 1s)"
    )


# ---------------------------------------------------------------- the dev pidfile guard


def pidfile_program(action: str, pidfile: Path, deploy_to: Path, bind: str):
    argv = [sys.executable, "-c", remote.source("pidfile"), action, str(pidfile), str(deploy_to)]
    return subprocess.run([*argv, bind], capture_output=True, text=True, timeout=60)


def test_a_stale_pidfile_is_never_signalled(tmp_path):
    other = subprocess.Popen(["sleep", "60"])
    try:
        pidfile = tmp_path / "run" / "gunicorn.pid"
        pidfile.parent.mkdir()
        pidfile.write_text(f"{other.pid}\n")
        p = pidfile_program("stop", pidfile, tmp_path, "127.0.0.1:1")
        assert p.returncode == 0 and other.poll() is None
        assert p.stderr.strip() == (
            f"stale pidfile {pidfile}: pid {other.pid} is not this environment's gunicorn "
            "(sleep 60); not signalled"
        )
        assert not pidfile.exists()
    finally:
        other.kill()
        other.wait()


def test_a_port_held_by_another_process_is_named_with_its_pid(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import socket,time; s=socket.socket(); s.bind(('127.0.0.1', 0));"
         " s.listen(); print(s.getsockname()[1], flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        port = int(holder.stdout.readline())
        p = pidfile_program("check", tmp_path / "gunicorn.pid", tmp_path, f"127.0.0.1:{port}")
        assert p.returncode == hoststeps.PORT_HELD
        assert p.stderr.strip().startswith(
            f"port {port} is held by pid {holder.pid} ({sys.executable}"
        )
        assert p.stderr.strip().endswith(", not by this environment's gunicorn")
    finally:
        holder.kill()
        holder.wait()
    with socket.socket() as s:  # a free port is fine
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    p = pidfile_program("check", tmp_path / "gunicorn.pid", tmp_path, f"127.0.0.1:{free}")
    assert p.returncode == 0 and json.loads(p.stdout) == {"log_size": 0}


def test_probe_or_explain_exact():
    cmd = service.probe_or_explain(Cmd.of("probe", "a b"), Cmd.of("journalctl", "-n", "3"))
    assert cmd.render() == (
        "probe 'a b' || { rc=$?; echo '--- the app'\"'\"'s log since the restart:' >&2; "
        'journalctl -n 3 >&2; exit "$rc"; }'
    )


# ---------------------------------------------------------------- true failure messages


def test_rollback_messages_say_what_happens():
    assert (
        compensation.revert_message("boom", ["r1", "r1"]) == "rolling every host back after: boom"
    )
    assert compensation.revert_message("boom", [None]) == (
        "no release to go back to; taking the new release out of service after: boom"
    )
    assert compensation.revert_message("boom", ["r1", None]) == (
        "rolling back the hosts that served a release (the others are stopped) after: boom"
    )
    assert compensation.rollback_failed("h2", "r1", "step 'switch back' failed (exit 1)") == (
        "h2: automatic rollback to r1 FAILED: step 'switch back' failed (exit 1)"
    )
    assert compensation.rollback_failed("h2", None, "no sudo") == (
        "h2: could not take the failed release out of service: no sudo"
    )


def test_migration_failure_says_restored_only_when_a_snapshot_was():
    assert compensation.migration_failed("h1", True, "boom") == (
        "h1: migration failed and the database was restored from its snapshot: boom"
    )
    assert compensation.migration_failed("h1", False, "boom") == (
        "h1: migration failed (there was no database before it, so no snapshot to restore): boom"
    )


# ---------------------------------------------------------------- pip


PIP_NO_WHEEL = """ERROR: Could not find a version that satisfies the requirement psycopg2-binary==2.9.9 (from versions: none)
ERROR: No matching distribution found for psycopg2-binary==2.9.9
"""  # noqa: E501
PIP_CONFLICT = """ERROR: Cannot install Django==4.2 and djangorestframework==3.15.2 because these package versions have conflicting dependencies.

The conflict is caused by:
    The user requested Django==4.2
    djangorestframework 3.15.2 depends on django>=4.2.1

To fix this you could try to:
1. loosen the range of package versions you've specified
2. remove package versions to allow pip to attempt to solve the dependency conflict

ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/dependency-resolution/#dealing-with-dependency-conflicts
"""  # noqa: E501
PIP_MISSING = """ERROR: Could not open requirements file: [Errno 2] No such file or directory: 'requirements/prod.txt'
"""  # noqa: E501
PIP_BUILD = """  error: subprocess-exited-with-error

  × Building wheel for mysqlclient (pyproject.toml) did not run successfully.
  │ exit code: 1
  ╰─> [3 lines of output]
      Exception: Can not find valid pkg-config name.
      Specify MYSQLCLIENT_CFLAGS and MYSQLCLIENT_LDFLAGS env vars manually
      [end of output]

  note: This error originates from a subprocess, and is likely not a problem with pip.
  ERROR: Failed building wheel for mysqlclient
ERROR: Could not build wheels for mysqlclient, which is required to install pyproject.toml-based projects
"""  # noqa: E501


@pytest.mark.parametrize(
    "output, where, line",
    [
        (
            PIP_NO_WHEEL,
            "for Python 3.11 on x86_64 (glibc 2.36)",
            "psycopg2-binary==2.9.9: no wheel or release for Python 3.11 on x86_64 (glibc 2.36)",
        ),
        (
            PIP_CONFLICT,
            "",
            "version conflict between Django==4.2 and djangorestframework==3.15.2: The user "
            "requested Django==4.2; djangorestframework 3.15.2 depends on django>=4.2.1",
        ),
        (
            PIP_MISSING,
            "",
            "missing file: Could not open requirements file: [Errno 2] No such file or "
            "directory: 'requirements/prod.txt'",
        ),
        (
            PIP_BUILD,
            "",
            "mysqlclient: building it from source failed: Exception: Can not find valid "
            "pkg-config name.",
        ),
        ("ERROR: something new\nnote: advice\n", "", "something new"),
    ],
    ids=["no wheel", "conflict", "missing file", "build", "other"],
)
def test_pip_failure_names_the_package_and_the_reason(output, where, line):
    assert pipfail.reason(output, where) == line


def test_a_configured_python_the_host_lacks_fails_before_anything_changes(
    write_inventory, tmp_path
):
    text = BASE.replace(
        "    deploy_to: ./var/dev\n",
        f"    deploy_to: {tmp_path}/dev\n    python: {tmp_path}/no/python3.99\n",
    )
    cfg = inventory.resolve(inventory.load(write_inventory(text)), "dev", {}, {})
    sess = Session(cfg, "deploy", log_dir=str(tmp_path / "logs"))
    sess.connect()
    with pytest.raises(PreflightFailed) as e:
        hoststeps.gather_facts(sess.hosts[0])
    assert str(e.value) == (
        f"localhost: python {tmp_path}/no/python3.99 not found — install it or set `python:`"
    )


def test_a_500_the_log_does_not_explain_is_replayed_in_the_releases_own_code(
    app, write_inventory, tmp_path
):
    """Django logs a view's exception nowhere by default with DEBUG off: the gate asks the
    release's code for the failing page and names the exception it raises."""
    from tests.unit.test_pipeline_pure import _release_copy

    rid = "20250102030405-abcdef012345"
    App.release = rid
    sess = dev_session(write_inventory, tmp_path, app.server_port)
    rel = _release_copy(tmp_path / "dev" / "releases")
    rel = rel.rename(tmp_path / "dev" / "releases" / rid)
    views = rel / "notes" / "views.py"
    views.write_text(
        views.read_text() + '\n\ndef index(request):\n    raise KeyError("no such tenant")\n'
    )
    (rel / ".env").write_text("SECRET_KEY=" + "k3y-" * 20 + "\nDEBUG=0\nALLOWED_HOSTS=localhost\n")
    with pytest.raises(DeployFailed) as e:
        hoststeps.health(sess.hosts[0], rid, timeout=20)
    assert str(e.value).endswith(
        "health check failed: GET /: HTTP 500 (expected <500); see `mlctl dev logs` "
        "(timeouts.health = 20s) — KeyError: 'no such tenant'"
    ), str(e.value)
