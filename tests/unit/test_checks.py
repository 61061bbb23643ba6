"""check and diag judged from fixture facts: no server needed."""

from __future__ import annotations

import copy
import socket
import time

import pytest

from mlctl.config import healthpaths, schema
from mlctl.tasks import checks, diag

RID = "20250102030405-abcdef012345"
UNIT = "gunicorn-notes"


def settings(**over) -> dict:
    s = schema.defaults_of(schema.ENV_KEYS)
    s.update({"deploy_to": "/srv/notes", "tls_cert": "/etc/ssl/notes.pem", **over})
    return s


def answer(path: str, status, expect: str = "200", static: bool = False, host: str = "") -> dict:
    """One judged health request, as remote/health.py prints it."""
    lo, hi = healthpaths.parse_expect(expect)
    ok = status is not None and lo <= status <= hi
    why = f"HTTP {status}" if ok else f"HTTP {status} (expected {expect})"
    if status is None:
        why = "no answer (ConnectionRefusedError: [Errno 111] Connection refused)"
    return {"path": path, "host": host, "expect": expect, "status": status, "ok": ok, "why": why}


def site(*results) -> dict:
    """The probe's `site` section: the health URL, the root page, a static file by default."""
    if not results:
        static = {**answer("/static/app.1a2b3c.css", 200), "static": True}
        results = (answer("/healthz", 200), answer("/", 200, "<500"), static)
    results = [{"static": False, **r} for r in results]
    first = results[0]
    return {
        "status": first["status"],
        "error": "" if first["status"] else first["why"],
        "results": results,
        "ok": all(r["ok"] for r in results),
        "ms": 15,
    }


def healthy(**over) -> dict:
    """Facts of a healthy server, as the probe prints them in check mode."""
    facts = {
        "connect_ms": 12,
        "disk": {
            "path": "/srv/notes",
            "used_pct": 42.0,
            "free_bytes": 10 * 2**30,
            "total_bytes": 20 * 2**30,
            "inode_pct": 3.0,
            "ms": 0,
        },
        "memory": {
            "used_pct": 30.0,
            "total_bytes": 4 * 2**30,
            "available_bytes": 3 * 2**30,
            "ms": 0,
        },
        "load": {"load1": 0.5, "cpus": 2, "per_cpu": 0.25, "ms": 0},
        "host_python": {"version": "3.11.2", "executable": "/usr/bin/python3", "ms": 0},
        "release": {
            "current": RID,
            "exists": True,
            "revision": RID,
            "venv": "/srv/notes/venvs/h",
            "releases": [RID],
            "ms": 0,
            "meta": {
                "id": RID,
                "commit": "abcdef012345678",
                "branch": "main",
                "subject": "Add tags",
                "user": "alice",
                "when": "2025-01-02T03:04:05+0000",
                "status": "good",
            },
        },
        "lock": {"exists": False, "holder": None, "ms": 0},
        "pip_check": {"code": 0, "output": "No broken requirements found.", "ms": 800},
        "django_probe": {
            "python": "3.11.2",
            "version": "5.2.1",
            "ms": 900,
            "check": {"ok": True, "output": "System check identified no issues"},
            "db": {"ok": True, "vendor": "postgresql"},
            "pending": [],
        },
        "gunicorn": {
            "kind": "systemd",
            "ms": 20,
            "service": {"active": "active", "sub": "running", "pid": 4242},
            "socket": {"active": "active", "sub": "listening", "pid": None},
            "http": {"status": 200},
        },
        "site": site(),
        "nginx_logs": {"window": 300, "requests": 40, "errors_5xx": 0, "access_log": True, "ms": 3},
        "app_log": {"text": "INFO booted\n", "ms": 20},
        "nginx": {
            "active": "active",
            "test": {"code": 0, "output": "test is successful"},
            "ms": 30,
        },
        "env_file": {"exists": True, "mode": "0640", "uid": 0, "gid": 33, "ms": 0},
        "permissions": {
            "read_code": True,
            "enter_code": True,
            "read_env": True,
            "write_media": True,
            "write_code": False,
            "write_code_file": False,
            "release_dir": f"releases/{RID}",
            "ms": 40,
        },
        "tls": {"path": "/etc/ssl/notes.pem", "not_after": time.time() + 90 * 86400, "ms": 2},
    }
    facts.update(over)
    return facts


def by_name(check_list) -> dict:
    return {c.name: c for c in check_list}


def statuses(facts, s=None) -> dict:
    return {c.name: c.status for c in checks.evaluate(facts, s or settings(), UNIT)}


# ---------------------------------------------------------------- evaluate


def test_healthy_host_is_all_ok_in_a_fixed_order():
    result = checks.evaluate(healthy(), settings(), UNIT)
    assert [c.name for c in result] == [
        "ssh", "disk", "inodes", "memory", "load", "python", "venv", "django", "check-deploy",
        "database", "migrations", "gunicorn", "gunicorn-http", "nginx-config", "nginx", "site",
        "site /", "static", "permissions", "env-file", "nginx-5xx", "tls", "lock",
    ]  # fmt: skip
    assert {c.status for c in result} == {"ok"}
    assert checks.exit_code(result) == 0
    named = by_name(result)
    assert named["django"].detail == "Django 5.2.1 (Python 3.11.2)"
    assert named["gunicorn"].detail == "gunicorn-notes.service: active (pid 4242)"
    assert named["venv"].duration_ms == 800


def test_unreachable_host_is_one_ssh_failure():
    result = checks.evaluate(
        {"connect_error": "h1: cannot connect: refused\nmore"}, settings(), UNIT
    )
    assert [(c.name, c.status, c.detail) for c in result] == [
        ("ssh", "fail", "h1: cannot connect: refused")
    ]
    assert checks.exit_code(result) == 2


def test_probe_that_broke_is_reported_after_ssh():
    result = checks.evaluate(
        {"connect_ms": 3, "probe_error": "sudo: a password is required"}, settings(), UNIT
    )
    assert [(c.name, c.status) for c in result] == [("ssh", "ok"), ("probe", "fail")]


def test_no_release_yet_warns_release_dependent_checks():
    facts = healthy(
        release={"current": None, "exists": False, "meta": {}, "releases": []},
        site=site(answer("/healthz", None), answer("/", None, "<500")),
        gunicorn={
            "kind": "systemd",
            "service": {"active": "inactive", "pid": None},
            "socket": {"active": "active"},
            "http": {"status": None},
        },
    )
    del facts["pip_check"], facts["django_probe"], facts["permissions"]
    result = by_name(checks.evaluate(facts, settings(), UNIT))
    for name in (
        "venv",
        "django",
        "check-deploy",
        "database",
        "migrations",
        "gunicorn",
        "gunicorn-http",
        "permissions",
    ):
        assert (result[name].status, result[name].detail) == ("warn", "no release yet"), name
    assert (result["site /"].status, result["site /"].detail) == (
        "warn",
        "no release yet (GET /: no answer (ConnectionRefusedError: [Errno 111] Connection "
        "refused))",
    )
    assert result["disk"].status == "ok" and result["nginx"].status == "ok"
    assert checks.exit_code(list(result.values())) == 1


@pytest.mark.parametrize(
    "over, name, status, detail",
    [
        (
            {"disk": {"path": "/srv/notes", "used_pct": 95.0, "free_bytes": 2**30, "inode_pct": 1}},
            "disk",
            "fail",
            "disk 95% used > 90% (1.0 GiB free)",
        ),
        (
            {
                "disk": {
                    "path": "/srv/notes",
                    "used_pct": 5.0,
                    "free_bytes": 2**30,
                    "inode_pct": 97.5,
                }
            },
            "inodes",
            "fail",
            "inodes 97.5% used > 90%",
        ),
        (
            {"memory": {"used_pct": 95.0, "available_bytes": 2**29}},
            "memory",
            "warn",
            "memory 95% used > 90% (0.5 GiB available)",
        ),
        (
            {"load": {"load1": 9.0, "cpus": 2, "per_cpu": 4.5}},
            "load",
            "warn",
            "load 9.00 on 2 cpu(s) = 4.5/cpu > 2",
        ),
        (
            {"nginx": {"active": "inactive", "test": {"code": 0}}},
            "nginx",
            "fail",
            "nginx: inactive",
        ),
        (
            {"nginx": {"active": "active", "test": {"code": 1, "output": "unknown directive"}}},
            "nginx-config",
            "fail",
            "nginx -t: unknown directive",
        ),
        (
            {"env_file": {"exists": True, "mode": "0644"}},
            "env-file",
            "fail",
            ".env is world-readable (mode 0644)",
        ),
        ({"env_file": {"exists": False}}, "env-file", "fail", "shared/.env is missing (run setup)"),
        (
            {"site": site(answer("/healthz", 502))},
            "site",
            "fail",
            "GET /healthz: HTTP 502 (expected 200)",
        ),
        (
            {"site": site(answer("/healthz", 200), answer("/", 500, "<500", host="notes.example"))},
            "site /",
            "fail",
            "GET / (Host notes.example): HTTP 500 (expected <500)",
        ),
        (
            {
                "site": site(
                    answer("/healthz", 200), {**answer("/static/a.css", 404), "static": True}
                )
            },
            "static",
            "fail",
            "GET /static/a.css: HTTP 404 (expected 200)",
        ),
        (
            {"nginx_logs": {"window": 300, "requests": 9, "errors_5xx": 3, "access_log": True}},
            "nginx-5xx",
            "warn",
            "3 of 9 request(s) answered 5xx in 300 s",
        ),
        (
            {
                "pip_check": {
                    "code": 1,
                    "output": "django 5.2 requires asgiref, which is not installed.",
                }
            },
            "venv",
            "fail",
            "pip check: django 5.2 requires asgiref, which is not installed.",
        ),
        (
            {"tls": {"path": "/etc/ssl/notes.pem", "error": "not found"}},
            "tls",
            "fail",
            "certificate /etc/ssl/notes.pem: not found",
        ),
    ],
)
def test_single_problem_is_named(over, name, status, detail):
    result = by_name(checks.evaluate(healthy(**over), settings(), UNIT))
    assert (result[name].status, result[name].detail) == (status, detail)
    others = [c for c in result.values() if c.name != name]
    assert all(c.status == "ok" for c in others), [c for c in others if c.status != "ok"]


def test_app_user_can_write_code():
    perms = dict(healthy()["permissions"], write_code=True)
    result = by_name(checks.evaluate(healthy(permissions=perms), settings(), UNIT))
    assert result["permissions"].status == "fail"
    assert result["permissions"].detail == f"www-data can write code in releases/{RID}"


def test_app_user_cannot_write_media_nor_read_code():
    perms = dict(healthy()["permissions"], write_media=False, read_code=False)
    detail = by_name(checks.evaluate(healthy(permissions=perms), settings(), UNIT))[
        "permissions"
    ].detail
    assert detail == (
        f"www-data cannot read code in releases/{RID}; www-data cannot write shared/media"
    )


def test_unapplied_migrations_are_listed():
    dj = dict(healthy()["django_probe"], pending=["notes.0003_x"])
    result = by_name(checks.evaluate(healthy(django_probe=dj), settings(), UNIT))
    assert (result["migrations"].status, result["migrations"].detail) == (
        "fail",
        "1 unapplied migration(s): notes.0003_x",
    )


def test_database_down_fails_database_and_leaves_migrations_unknown():
    dj = dict(healthy()["django_probe"], db={"ok": False, "error": "OperationalError: refused"})
    del dj["pending"]
    result = by_name(checks.evaluate(healthy(django_probe=dj), settings(), UNIT))
    assert result["database"].status == "fail"
    assert result["database"].detail == "cannot connect: OperationalError: refused"
    assert result["migrations"].status == "warn"


def test_check_deploy_issues_are_counted():
    output = (
        "SystemCheckError: System check identified some issues:\n\nWARNINGS:\n"
        "?: (security.W004) You have not set a value for SECURE_HSTS_SECONDS.\n"
        "?: (security.W008) Your SECURE_SSL_REDIRECT setting is not set to True.\n"
    )
    dj = dict(healthy()["django_probe"], check={"ok": False, "output": output})
    result = by_name(checks.evaluate(healthy(django_probe=dj), settings(), UNIT))
    assert result["check-deploy"].status == "fail"
    assert result["check-deploy"].detail == (
        "2 issues (security.W004, security.W008): ?: (security.W004) You have not set a value "
        "for SECURE_HSTS_SECONDS."
    )


def test_django_not_importable_fails_every_django_check():
    dj = {"python": "3.11.2", "error": "ModuleNotFoundError: No module named 'django'", "ms": 50}
    result = by_name(checks.evaluate(healthy(django_probe=dj), settings(), UNIT))
    assert result["django"].detail == (
        "Django not importable: ModuleNotFoundError: No module named 'django'"
    )
    assert {result[n].status for n in ("check-deploy", "database", "migrations")} == {"fail"}


def test_gunicorn_states():
    def gun(service, sock="active", http=200):
        return {
            "kind": "systemd",
            "service": {"active": service, "pid": None},
            "socket": {"active": sock},
            "http": {"status": http},
        }

    assert statuses(healthy(gunicorn=gun("failed")))["gunicorn"] == "fail"
    assert statuses(healthy(gunicorn=gun("inactive")))["gunicorn"] == "warn"
    assert statuses(healthy(gunicorn=gun("active", sock="inactive")))["gunicorn"] == "fail"
    assert statuses(healthy(gunicorn=gun("active", http=400)))["gunicorn-http"] == "warn"
    assert statuses(healthy(gunicorn=gun("active", http=503)))["gunicorn-http"] == "fail"
    assert statuses(healthy(gunicorn=gun("active", http=None)))["gunicorn-http"] == "fail"


def test_failed_probe_section_becomes_a_failure():
    result = by_name(
        checks.evaluate(
            healthy(disk={"failed": True, "error": "OSError: x", "ms": 1}), settings(), UNIT
        )
    )
    assert (result["disk"].status, result["disk"].detail) == ("fail", "probe failed: OSError: x")


def test_tls_expiry_thresholds():
    now = 1_700_000_000.0
    soon = {"path": "c", "not_after": now + 3 * 86400}
    assert checks.tls_check(soon, 14, now).status == "warn"
    assert checks.tls_check({"path": "c", "not_after": now - 1}, 14, now).status == "fail"
    assert checks.tls_check({"path": "c", "not_after": now + 30 * 86400}, 14, now).status == "ok"


def test_no_tls_check_without_a_certificate():
    assert "tls" not in statuses(healthy(), settings() | {"tls_cert": ""})


def test_lock_held_and_stale():
    held = {
        "exists": True,
        "holder": {
            "user": "bob",
            "host": "elsewhere",
            "pid": 1,
            "time": time.time(),
            "action": "deploy",
        },
    }
    check = by_name(checks.evaluate(healthy(lock=held), settings(), UNIT))["lock"]
    assert check.status == "warn" and check.detail.startswith("held by bob@elsewhere")
    stale = {
        "exists": True,
        "holder": {
            "user": "bob",
            "host": socket.gethostname(),
            "pid": 2**22 + 12345,
            "time": time.time(),
        },
    }
    timeouts = {"lock_stale": 3600, "lock_lease": 60}
    state, text = checks.lock_state(stale, timeouts)
    assert state == "stale" and "is gone" in text
    assert checks.lock_state({"exists": False}, timeouts) == ("free", "free")


def test_lock_of_another_machine_is_judged_by_its_heartbeat():
    timeouts = {"lock_stale": 3600, "lock_lease": 60}
    holder = {"user": "ci", "host": "runner-7", "pid": 1, "time": time.time(), "age": 300}
    alive = {"exists": True, "holder": {**holder, "heartbeat_age": 5}}
    assert checks.lock_state(alive, timeouts)[0] == "held"
    dead = {"exists": True, "holder": {**holder, "heartbeat_age": 120}}
    state, text = checks.lock_state(dead, timeouts)
    assert state == "stale"
    assert text.endswith("(no heartbeat for 120s, more than timeouts.lock_lease (60s))"), text


def test_local_env_runs_only_local_checks():
    s = settings(connection="local", service="pidfile", tls_cert="")
    facts = healthy(gunicorn={"kind": "pidfile", "pid": 99, "alive": True, "http": {"status": 200}})
    for key in ("nginx", "env_file", "permissions", "tls"):
        facts.pop(key)
    names = [c.name for c in checks.evaluate(facts, s, UNIT)]
    assert "ssh" not in names and "nginx" not in names and "permissions" not in names
    assert by_name(checks.evaluate(facts, s, UNIT))["gunicorn"].detail == "pid 99 alive"
    dead = copy.deepcopy(facts)
    dead["gunicorn"]["alive"] = False
    assert statuses(dead, s)["gunicorn"] == "fail"


def test_check_json_shape():
    results = {"h1": checks.evaluate(healthy(), settings(), UNIT)}
    doc = checks.check_json("test", results, 0)
    assert set(doc) == {"env", "hosts", "exit"}
    assert doc["hosts"]["h1"][0] == {
        "name": "ssh",
        "status": "ok",
        "detail": "connected in 12 ms",
        "duration_ms": 12,
    }


def test_exit_code_is_the_worst_status():
    ok, warn, fail = (checks.Check("a", s, "") for s in ("ok", "warn", "fail"))
    assert checks.exit_code([ok]) == 0
    assert checks.exit_code([ok, warn]) == 1
    assert checks.exit_code([warn, fail, ok]) == 2


# ---------------------------------------------------------------- diag and status


def diag_facts() -> dict:
    f = healthy()
    f["history"] = {
        "last": {
            "ts": "2025-01-02T03:05:00+0000",
            "action": "deploy",
            "release": RID,
            "user": "alice",
            "outcome": "good",
        }
    }
    f["django_probe"] = {
        "python": "3.11.2",
        "version": "5.2.1",
        "db": {"ok": True, "vendor": "postgresql"},
    }
    return f


def test_diag_fields():
    fields = diag.diag_fields(diag_facts(), settings())
    assert list(fields) == list(diag.FIELDS)
    assert fields["release"] == RID
    assert (fields["branch"], fields["commit"], fields["subject"]) == (
        "main",
        "abcdef012345678",
        "Add tags",
    )
    assert fields["gunicorn"] == {
        "state": "active",
        "pid": 4242,
        "socket": "active",
        "slot": None,
        "warm": None,
    }
    assert fields["database"] == {"ok": True, "detail": "postgresql"}
    assert fields["disk"] == {"used_pct": 42.0, "free_bytes": 10 * 2**30}
    assert fields["last_deploy"]["user"] == "alice"
    assert fields["releases"] == {"count": 1, "list": [RID]}
    assert fields["lock"] == {"state": "free", "detail": "free"}
    assert diag.field_text("gunicorn", fields["gunicorn"]) == "active (pid 4242)"


def test_diag_without_release_and_unreachable():
    f = diag_facts()
    f["release"] = {"current": None, "exists": False, "meta": {}, "releases": []}
    f.pop("django_probe")
    fields = diag.diag_fields(f, settings())
    assert fields["release"] is None
    assert fields["database"] == {"ok": None, "detail": "no release yet"}
    assert diag.diag_fields({"connect_error": "refused"}, settings()) == {"error": "refused"}


def test_age_text():
    now = diag.parse_time("2025-01-02T03:04:05+0000")
    assert diag.age_text("2025-01-02T03:04:05+0000", now + 42) == "42s"
    assert diag.age_text("2025-01-02T03:04:05+0000", now + 185) == "3m"
    assert diag.age_text("2025-01-02T04:04:05+0100", now + 7200) == "2h"
    assert diag.age_text("2025-01-02T03:04:05+00:00", now + 5 * 86400) == "5d"
    assert diag.age_text(None) == "?"


def test_status_line():
    now = diag.parse_time("2025-01-02T03:07:05+0000")
    text, ok = diag.status_line("h1", {"release": healthy()["release"], "site": site()}, 200, now)
    assert (text, ok) == (f"h1  {RID}  abcdef012345  3m  health ok", True)
    text, ok = diag.status_line(
        "h1", {"release": healthy()["release"], "site": {"status": 502}}, 200, now
    )
    assert text.endswith("health fail (502)") and not ok
    broken = site(answer("/healthz", 200), answer("/", 500, "<500"))
    text, ok = diag.status_line("h1", {"release": healthy()["release"], "site": broken}, 200, now)
    assert (text, ok) == (
        f"h1  {RID}  abcdef012345  3m  health fail (GET /: HTTP 500 (expected <500))",
        False,
    )
    text, ok = diag.status_line("h1", {"release": {"current": None}, "site": {}}, 200)
    assert (text, ok) == ("h1  no release yet", True)


TRACEBACK = """INFO django.request: GET /
ERROR django.request: Internal Server Error: /
Traceback (most recent call last):
  File "/srv/notes/releases/r/notes/views.py", line 9, in index
    return render(request, "index.html")
ValueError: Missing staticfiles manifest entry for 'css/styles.css'
[2025-01-02 03:04:05 +0000] [42] [INFO] Booting worker with pid: 42
"""


def test_app_log_check_appears_only_when_something_failed():
    facts = healthy(app_log={"text": TRACEBACK, "ms": 20})
    assert "app-log" not in statuses(facts)
    facts["site"] = site(answer("/healthz", 200), answer("/", 500, "<500"))
    named = by_name(checks.evaluate(facts, settings(), UNIT))
    assert (named["app-log"].status, named["app-log"].detail) == (
        "warn",
        "last error in the app's log: ValueError: Missing staticfiles manifest entry for "
        "'css/styles.css'",
    )
    facts["app_log"] = {"text": "INFO nothing wrong here\n"}
    named = by_name(checks.evaluate(facts, settings(), UNIT))
    assert named["app-log"].detail == "no traceback in the app's last 300 log lines"
    assert checks.exit_code(list(named.values())) == 2


def test_check_deploy_failure_lists_every_issue_id_and_never_cuts_a_word():
    output = "SystemCheckErrors:\n" + "".join(
        f"?: (security.W{n:03d}) {'a long explanation of this setting ' * 9}\n" for n in (4, 8, 9)
    )
    c = checks.deploy_checks_check({"ok": False, "output": output})
    assert c.status == "fail"
    assert c.detail.startswith(
        "3 issues (security.W004, security.W008, security.W009): ?: (security.W004) a long "
    )
    assert len(c.detail) <= 300 and c.detail.endswith(" a long…")
