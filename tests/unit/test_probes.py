"""Probe and log command builders as exact strings, and the probe script's own parsing."""

from __future__ import annotations

import calendar
import json
import shlex
import subprocess
import sys
import time

import pytest

from mlctl import remote
from mlctl.commands import probes
from mlctl.config import schema
from mlctl.core.shell import wrap
from mlctl.tasks import logs

PROJECT = {"name": "notes", "settings_module": "djangoapp.settings"}


def settings(**over) -> dict:
    s = schema.defaults_of(schema.ENV_KEYS)
    s.update(over)
    return s


def script_namespace() -> dict:
    """The probe program's functions, as one text the way a host gets it, without running main()."""
    ns: dict = {"__name__": "probe_under_test"}
    exec(compile(remote.source("probe"), "probe", "exec"), ns)  # noqa: S102 — our own fixed text
    return ns


# ---------------------------------------------------------------- builders


def test_app_log_exact():
    assert probes.app_log("gunicorn-notes", 50).render() == (
        "journalctl -u 'gunicorn-notes@*.service' --no-pager -o short-iso -n 50"
    )


def test_app_log_since_and_follow_quote_the_user_value():
    cmd = probes.app_log("gunicorn-notes", 10, since="10 min ago; rm -rf /", follow=True)
    assert cmd.render() == (
        "journalctl -u 'gunicorn-notes@*.service' --no-pager -o short-iso -n 10 "
        "--since '10 min ago; rm -rf /' -f"
    )


def test_file_log_exact():
    assert probes.file_log("/var/log/nginx/access.log", 20).render() == (
        "tail -n 20 /var/log/nginx/access.log"
    )
    assert probes.file_log("/var/log/nginx/error.log", 5, follow=True).render() == (
        "tail -n 5 -F /var/log/nginx/error.log"
    )


def test_local_app_log_path():
    assert probes.local_app_log("/tmp/app/") == "/tmp/app/shared/logs/gunicorn.log"


def test_facts_command_is_python_reading_stdin_with_quoted_config():
    config = probes.probe_config(settings(), PROJECT, "check")
    cmd = probes.facts("/usr/bin/python3", config)
    assert cmd.render() == "/usr/bin/python3 - " + shlex.quote(json.dumps(config, sort_keys=True))
    assert shlex.split(cmd.render())[2] == json.dumps(config, sort_keys=True)


def test_program_is_the_script_plus_the_django_probe_and_a_main_call():
    text = probes.program().decode()
    assert text.startswith(remote.text("hostfiles"))
    assert text.endswith(remote.text("probe"))
    assert repr(probes.DJANGO_PROBE) in text and repr(remote.source("health")) in text
    assert probes.DJANGO_PROBE.startswith(remote.text("migplan"))
    assert text.rstrip().endswith("main()")
    compile(text, "probe", "exec")
    compile(probes.DJANGO_PROBE, "django_probe", "exec")


def test_facts_command_survives_the_sudo_wrapper():
    config = probes.probe_config(settings(deploy_to="/srv/it's here"), PROJECT, "diag")
    wrapped = wrap(probes.facts("python3", config), as_root=True, timeout=900)
    argv = shlex.split(wrapped.render())
    assert argv[:7] == ["sudo", "-n", "timeout", "-k", "5", "900", "sh"]
    inner = shlex.split(argv[-1])
    assert inner[:2] == ["python3", "-"]
    assert json.loads(inner[2])["deploy_to"] == "/srv/it's here"


def test_probe_config_exact():
    s = settings(deploy_to="/srv/notes", tls_cert="/etc/ssl/notes.pem")
    assert probes.probe_config(s, PROJECT, "monitor", 120) == {
        "mode": "monitor",
        "deploy_to": "/srv/notes",
        "local": False,
        "app_user": "www-data",
        "settings_module": "djangoapp.settings",
        "service": "systemd",
        "unit": "gunicorn-notes",
        "upstream_file": "/etc/nginx/mlctl/notes.upstream.conf",
        "pidfile": "/srv/notes/run/gunicorn.pid",
        "bind": "127.0.0.1:8765",
        "health": {
            "url": "http://127.0.0.1/healthz",
            "expect_status": 200,
            "timeout": 30.0,
            "host_header": "",
        },
        "health_plan": {
            "base": "http://127.0.0.1",
            "requests": [
                {"path": "/healthz", "expect": "200", "host": "", "body": "", "release": ""},
                {"path": "/", "expect": "<500", "host": "", "body": "", "release": ""},
            ],
        },
        "health_static": True,
        "dev_log": "/srv/notes/shared/logs/gunicorn.log",
        "tls_cert": "/etc/ssl/notes.pem",
        "window": 120,
        "access_log": "/var/log/nginx/access.log",
        "error_log": "/var/log/nginx/error.log",
    }


def test_probe_config_refuses_unknown_mode():
    with pytest.raises(ValueError):
        probes.probe_config(settings(), PROJECT, "everything")


def test_log_command_per_service():
    s = settings()
    assert logs.log_command(s, "notes", "app", 5, None, False).render() == (
        "journalctl -u 'gunicorn-notes@*.service' --no-pager -o short-iso -n 5"
    )
    assert logs.log_command(s, "notes", "nginx-error", 5, None, True).render() == (
        "tail -n 5 -F /var/log/nginx/error.log"
    )
    local = settings(connection="local", deploy_to="/tmp/dev")
    assert logs.log_command(local, "notes", "app", 7, None, False).render() == (
        "tail -n 7 /tmp/dev/shared/logs/gunicorn.log"
    )


def test_log_command_local_has_no_nginx():
    from mlctl.core.errors import UsageError

    with pytest.raises(UsageError):
        logs.log_command(settings(connection="local"), "notes", "nginx-access", 5, None, False)


# ---------------------------------------------------------------- the probe script's parsing


def test_script_parses_access_log_times_and_status():
    ns = script_namespace()
    line = '1.2.3.4 - - [02/Jan/2025:10:00:00 +0100] "GET /a\\"b HTTP/1.1" 502 12 "-" "curl"'
    t, status = ns["access_time"](line)
    assert status == 502
    assert t == calendar.timegm((2025, 1, 2, 9, 0, 0))
    assert ns["access_time"]("garbage") == (None, None)


def test_script_parses_error_log_level():
    ns = script_namespace()
    t, level = ns["error_time"]("2025/01/02 10:00:00 [error] 12#12: *1 connect() failed")
    assert level == "error"
    assert t == time.mktime((2025, 1, 2, 10, 0, 0, 0, 0, -1))


def test_script_masks_env_values_everywhere():
    ns = script_namespace()
    out = ns["masked"]({"a": ["x hunter22 y", {"b": "hunter22"}], "n": 3}, ["hunter22"])
    assert out == {"a": ["x ******** y", {"b": "********"}], "n": 3}


def test_script_counts_5xx_and_errors_in_window(tmp_path):
    ns = script_namespace()
    now = time.time()
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now - 10))
    old = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now - 4000))
    access = tmp_path / "access.log"
    access.write_text(
        f'a - - [{old}] "GET / HTTP/1.1" 500 1 "-" "x"\n'
        f'a - - [{stamp}] "GET / HTTP/1.1" 200 1 "-" "x"\n'
        f'a - - [{stamp}] "GET / HTTP/1.1" 503 1 "-" "x"\n'
        f'a - - [{stamp}] "GET / HTTP/1.1" 500 1 "-" "mlctl-health"\n'  # mlctl's own: not counted
    )
    local = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(now - 5))
    error = tmp_path / "error.log"
    error.write_text(f"{local} [warn] 1#1: meh\n{local} [error] 1#1: upstream gone\n")
    ns["CFG"].update(window=300, access_log=str(access), error_log=str(error))
    out = ns["nginx_logs"]()
    assert (out["requests"], out["errors_5xx"], out["error_lines"]) == (2, 1, 1)
    assert out["last_error"].endswith("upstream gone")


def test_script_runs_locally_and_prints_facts(tmp_path):
    s = settings(connection="local", deploy_to=str(tmp_path), service="pidfile")
    cmd = probes.facts(sys.executable, probes.probe_config(s, PROJECT, "check"))
    r = subprocess.run(
        ["sh", "-c", cmd.render()], input=probes.program(), capture_output=True, timeout=60
    )
    facts = json.loads(r.stdout)
    assert r.returncode == 0
    assert facts["release"]["current"] is None
    assert facts["gunicorn"]["kind"] == "pidfile" and facts["gunicorn"]["alive"] is False
    assert {"disk", "memory", "load", "lock", "site"} <= set(facts)
    assert "pip_check" not in facts  # nothing to check without a release


# ---------------------------------------------------------------- merging log lines


def test_line_time_formats():
    assert logs.line_time("2025-01-02T10:00:00+0000 h gunicorn[1]: x") == calendar.timegm(
        (2025, 1, 2, 10, 0, 0)
    )
    assert logs.line_time("2025-01-02T11:00:00+01:00 h x") == calendar.timegm(
        (2025, 1, 2, 10, 0, 0)
    )
    assert logs.line_time("[2025-01-02 10:00:00 +0000] [7] [INFO] Booting") == calendar.timegm(
        (2025, 1, 2, 10, 0, 0)
    )
    assert logs.line_time('1.2.3.4 - - [02/Jan/2025:10:00:00 +0000] "GET /"') == calendar.timegm(
        (2025, 1, 2, 10, 0, 0)
    )
    assert logs.line_time("Traceback (most recent call last):") is None


def test_merge_orders_hosts_by_time_and_keeps_continuations():
    merged = logs.merge(
        {
            "h1": "2025-01-02T10:00:02+0000 a\nTraceback\n2025-01-02T10:00:05+0000 c\n",
            "h2": "2025-01-02T10:00:03+0000 b\n",
        }
    )
    assert merged == [
        ("h1", "2025-01-02T10:00:02+0000 a"),
        ("h1", "Traceback"),
        ("h2", "2025-01-02T10:00:03+0000 b"),
        ("h1", "2025-01-02T10:00:05+0000 c"),
    ]


def test_prefixed_pads_host_names():
    assert logs.prefixed("h1", "x", 4) == "h1   | x"


def test_printer_writes_complete_lines_only(capsys):
    printer = logs.Printer(2)
    rest = printer.feed("h1", b"", b"one\r\ntw")
    rest = printer.feed("h1", rest, b"o\n")
    assert rest == b""
    assert capsys.readouterr().out == "h1 | one\nh1 | two\n"
