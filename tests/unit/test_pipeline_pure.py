"""Pure pieces of the deploy pipeline: pruning, release ids, lock staleness, wheel tags, setup."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlctl import remote
from mlctl.commands import provision
from mlctl.config.layout import Layout, check_release_id
from mlctl.core.errors import UsageError
from mlctl.project import wheelhouse
from mlctl.project.installset import InstallSet
from mlctl.tasks import hoststeps, prune, setup_hosts
from mlctl.tasks.operations import release_rows
from mlctl.transport import journal, locking

R = [f"2026010100000{i}-abcdef1" for i in range(1, 8)]


def test_prune_keeps_newest_good_current_and_drops_failed():
    metas = {r: {"status": "good"} for r in R}
    metas[R[5]] = {"status": "bad"}
    metas[R[6]] = {"status": "partial"}
    doomed = prune.choose(R, metas, current=R[4], keep=3)
    assert doomed == [R[0], R[1], R[5], R[6]]


def test_prune_never_removes_current_even_when_it_is_not_good():
    metas = {r: {"status": "bad"} for r in R}
    metas[R[0]] = {"status": "good"}
    assert prune.choose(R, metas, current=R[6], keep=1) == R[1:6]


def test_prune_five_failed_deploys_keep_the_last_good_release():
    metas = {R[0]: {"status": "good"}, **{r: {"status": "bad"} for r in R[1:6]}}
    assert prune.choose(R[:6], metas, current=R[0], keep=5) == R[1:6]


def test_prune_ignores_names_that_are_not_release_ids():
    assert prune.choose(["../etc", "x"], {}, current=None, keep=1) == []


@pytest.mark.parametrize("bad", ["../x", "20260101000001-abcdef1/../../", "", "now", "a" * 30])
def test_release_ids_with_path_tricks_are_refused(bad):
    with pytest.raises(UsageError):
        check_release_id(bad)
    with pytest.raises(UsageError):
        Layout("/srv/app").release(bad)


def test_layout_paths():
    lay = Layout("/srv/app/")
    assert lay.release(R[0]) == f"/srv/app/releases/{R[0]}"
    assert lay.meta(R[0]) == f"/srv/app/.mlctl/releases/{R[0]}.json"
    assert (lay.current, lay.lock, lay.env_file) == (
        "/srv/app/current",
        "/srv/app/.mlctl/lock",
        "/srv/app/shared/.env",
    )


def test_lock_staleness():
    me = socket.gethostname()
    assert locking.stale_reason({}, 3600) == "no holder recorded"
    alive = {"host": me, "pid": os.getpid(), "time": time.time()}
    assert locking.stale_reason(alive, 3600) == ""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert "is gone" in locking.stale_reason({**alive, "pid": dead.pid}, 3600)
    other = {"host": "elsewhere", "pid": 1, "time": time.time() - 7200}
    assert locking.stale_reason(other, 3600) == "older than 3600s"
    assert locking.stale_reason({**other, "time": time.time()}, 3600) == ""
    assert "pid 1" in locking.describe_holder(other)


def test_manylinux_tags_follow_the_hosts_glibc():
    tags = wheelhouse.platform_tags("x86_64", "2.36")
    assert tags[0] == "manylinux_2_36_x86_64" and tags[-3] == "manylinux_2_17_x86_64"
    assert tags[-2:] == ["manylinux2014_x86_64", "linux_x86_64"]
    assert wheelhouse.platform_tags("x86_64", "") == []


def test_setup_helpers_quote_sql_and_compute_allowed_hosts():
    assert provision.sql_literal("it's") == "'it''s'"
    assert provision.sql_ident('a"b') == '"a""b"'
    assert (
        setup_hosts.allowed_hosts("deploy@198.51.100.11:22", "_")
        == "localhost,127.0.0.1,198.51.100.11"
    )
    assert setup_hosts.allowed_hosts("web1", "example.com www.example.com").endswith(
        "web1,example.com,www.example.com"
    )


def test_release_rows_mark_current_and_removed():
    facts = {
        "releases": [R[1], R[2]],
        "current": R[2],
        "metas": {R[0]: {"status": "partial"}, R[1]: {"status": "good"}},
    }
    rows = release_rows(facts)
    assert [(r["id"], r["status"]) for r in rows] == [
        (R[2], "current"),
        (R[1], "good"),
        (R[0], "partial (removed)"),
    ]


def test_example_app_own_tests_pass():
    app = Path(__file__).resolve().parents[2] / "examples" / "djangoapp"
    p = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=app,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stdout[-2000:]


def test_parallel_hosts_resolve_one_wheelhouse_once(tmp_path, monkeypatch):
    """Host threads share a wheelhouse: one download, no thread deletes another's directory."""
    import threading

    monkeypatch.setenv("MLCTL_STATE_DIR", str(tmp_path))
    calls = []

    def fake_run(argv, **kwargs):
        calls.append(argv)
        dest = Path(argv[argv.index("--dest") + 1])
        time.sleep(0.2)  # long enough for the other threads to pile up
        (dest / "pkg-1.0-py3-none-any.whl").write_bytes(b"wheel")
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(wheelhouse.subprocess, "run", fake_run)
    results, errors = [], []

    def build():
        try:
            iset = InstallSet("requirements.txt", {"requirements.txt": b"pkg==1.0\n"}, "r")
            results.append(wheelhouse.build("h1", iset, "3.11", "x86_64", "2.36"))
        except Exception as e:  # noqa: BLE001 — the assertion below reports it
            errors.append(e)

    threads = [threading.Thread(target=build) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(calls) == 1
    assert len(set(results)) == 1 and (results[0] / ".complete").exists()
    assert sorted(p.name for p in results[0].iterdir()) == [
        ".complete",
        "pkg-1.0-py3-none-any.whl",
        "requirements.txt",
    ]
    assert b"pkg-1.0" in wheelhouse.tarball(results[0], ("requirements.txt",))


def test_prune_commands_come_from_the_facts_and_never_fail_the_script():
    lay = Layout("/srv/app")
    facts = {"releases": R[:4], "metas": {r: {"status": "good"} for r in R[:4]}}
    facts["metas"][R[3]] = {"status": "bad"}
    rm, venvs = prune.commands(lay, facts, R[4], keep=2)
    assert rm.render() == (
        f"rm -rf /srv/app/releases/{R[0]} /srv/app/releases/{R[1]} /srv/app/releases/{R[3]} "
        f"|| echo '{prune.FAILED}' >&2"
    )
    assert venvs.render().startswith("( cd /srv/app && for v in venvs/*;")
    assert venvs.render().endswith("done ) || true")
    fresh = prune.commands(lay, {"releases": [], "metas": {}}, R[0], keep=2)
    assert [c.render() for c in fresh] == [venvs.render()]  # nothing to remove but venvs


def test_parse_build_reads_the_last_line():
    out = 'System check identified no issues.\n{"pending": ["notes.0003_x"], "leaves": {}}\n'
    assert hoststeps.parse_build(out) == {"pending": ["notes.0003_x"], "leaves": {}}
    assert hoststeps.parse_build("") == {"pending": [], "leaves": None}  # --dry-run prints only


def test_journal_timestamps_have_milliseconds():
    from datetime import datetime

    stamp = journal.timestamp()
    assert len(stamp.split(".")[1]) == 3 + 5  # ms and the UTC offset (+hhmm)
    assert datetime.fromisoformat(stamp).tzinfo is not None


def _release_copy(tmp_path: Path) -> Path:
    """The example app as a release: its code, and the test environment as its venv."""
    app = Path(__file__).resolve().parents[2] / "examples" / "djangoapp"
    rel = tmp_path / "release"
    shutil.copytree(app, rel, ignore=shutil.ignore_patterns("staticfiles", "*.sqlite3", ".env"))
    (rel / ".venv").symlink_to(Path(sys.prefix))
    return rel


def _build(rel: Path, secret: str, **extra: str) -> subprocess.CompletedProcess:
    env = {
        "PATH": os.environ["PATH"],
        "DEBUG": "0",
        "SECRET_KEY": secret,
        "ALLOWED_HOSTS": "example.org",
        "STATIC_ROOT": str(rel / "staticfiles"),
        **extra,
    }
    code = remote.source("build")
    argv = [
        "./.venv/bin/python",
        "-c",
        code,
        "djangoapp.settings",
        "djangoapp.wsgi:application",
        "",
    ]
    return subprocess.run(argv, cwd=rel, env=env, capture_output=True, text=True, timeout=120)


def test_build_program_collects_static_and_reports_the_migration_plan(tmp_path):
    rel = _release_copy(tmp_path)
    p = _build(rel, "s3cr3t-" + "x1y2z3" * 10)
    assert p.returncode == 0, p.stderr
    built = hoststeps.parse_build(p.stdout)
    assert built["leaves"]["notes"] == "0002_seed_notes"
    assert {"notes.0001_initial", "notes.0002_seed_notes"} <= set(built["pending"])
    assert (rel / "staticfiles" / "notes" / "style.css").is_file()
    assert built["static"] == "/static/admin/css/autocomplete.css"  # the first file collected


def test_build_program_failure_ends_in_one_line_naming_the_check(tmp_path):
    p = _build(_release_copy(tmp_path), "short")
    last = p.stderr.strip().splitlines()[-1]
    assert p.returncode == 1
    assert last == (
        "check --deploy failed: SystemCheckError: 1 issue (security.W009): ?: (security.W009) "
        "Your SECRET_KEY has less than 50 characters, less than 5 unique characters, or it's "
        "prefixed with 'django-insecure-' indicating that it was generated automatically by "
        "Django. Please generate a long and random…"
    ), last


def test_build_program_lists_every_check_deploy_issue(tmp_path):
    p = _build(_release_copy(tmp_path), "short", DEBUG="1")
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "check --deploy failed: SystemCheckError: 2 issues (security.W009, security.W018): "
        "?: (security.W009) Your SECRET_KEY"
    ), last
    assert len(last) <= 300 and last.endswith("generate a long…")


def test_build_program_fails_first_when_gunicorn_is_not_in_the_venv(tmp_path):
    rel = _release_copy(tmp_path)
    venv = tmp_path / "venv-without-gunicorn"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (rel / ".venv").unlink()
    (rel / ".venv").symlink_to(venv)
    p = _build(rel, "s3cr3t-" + "x1y2z3" * 10)
    assert p.returncode == 1
    assert p.stderr.strip().splitlines()[-1] == (
        "gunicorn failed: FileNotFoundError: .venv/bin/gunicorn is missing: add gunicorn to the "
        "project's requirements"
    )
    assert not (rel / "staticfiles").exists()  # nothing ran before it


def test_gunicorn_unit_follows_the_gunicorn_settings(write_inventory):
    from mlctl.config import inventory
    from tests.unit.conftest import BASE

    inv = inventory.load(write_inventory(BASE))
    unit = provision.render(
        "gunicorn.service", **provision.template_values(inventory.resolve(inv, "test"))
    )
    assert "--workers 2 --preload --access-logfile" in unit
    assert (
        "RuntimeDirectory=gunicorn-app-%i\nEnvironment=XDG_RUNTIME_DIR=/run/gunicorn-app-%i\n"
        in unit
    )
    # set before the project's packages run (cookiecutter-django's config/__init__.py imports a
    # Celery app that setdefault()s the local settings before wsgi_deploy.py can choose)
    assert "\nEnvironment=DJANGO_SETTINGS_MODULE=app.settings\n" in unit
    flags = {"gunicorn.workers": 4, "gunicorn.preload": False}
    cfg = inventory.resolve(inv, "test", {}, flags)
    unit = provision.render("gunicorn.service", **provision.template_values(cfg))
    assert "--workers 4 --access-logfile" in unit and "--preload" not in unit
