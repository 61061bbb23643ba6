"""Setup, deploy, snapshots, rollback and failure handling on real hosts."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

import pytest

from .helpers import (
    D,
    add_pinned_field,
    commit_file,
    current,
    git,
    healthz,
    mlctl,
    new_project,
    psql,
    ssh,
)

pytestmark = pytest.mark.hosts


@pytest.fixture(scope="module")
def world(farm, tmp_path_factory):
    repo, inv = new_project(farm, tmp_path_factory)
    return {"farm": farm, "repo": repo, "inv": inv, "test": farm.hosts[0], "live": farm.hosts[1:]}


def test_setup_provisions_hosts_and_second_run_changes_nothing(world):
    farm, inv = world["farm"], world["inv"]
    first = mlctl(inv, "test", "setup").stderr + mlctl(inv, "live", "setup", "--yes").stderr
    assert "changed" in first
    for h in farm.hosts:
        assert (
            ssh(farm, h, "systemctl is-active gunicorn-djangoapp@blue.socket nginx")
            == "active\nactive"
        )
        assert ssh(farm, h, f"stat -c '%a %U %G' {D}/shared/.env") == "640 root www-data"
        assert ssh(farm, h, f"stat -c '%a %U %G' {D}/shared/media") == "750 www-data www-data"
        assert ssh(farm, h, f"stat -c '%a %U' {D}/releases") == "755 root"
        ssh(farm, h, "sudo nginx -t -q")
        assert psql(farm, h, "select current_user") == "djangoapp"
        assert ssh(farm, h, f"cat {D}/.mlctl/marker") == ("test" if h is world["test"] else "live")
    before = {
        h.address: ssh(
            farm,
            h,
            f"sudo sha256sum {D}/shared/.env /etc/nginx/sites-available/"
            "djangoapp /etc/systemd/system/gunicorn-djangoapp@.*",
        )
        for h in farm.hosts
    }
    second = mlctl(inv, "test", "setup").stderr + mlctl(inv, "live", "setup", "--yes").stderr
    assert "changed" not in second, second
    assert second.count(": ok") == 10 * len(farm.hosts)
    for h in farm.hosts:
        assert before[h.address] == ssh(
            farm,
            h,
            f"sudo sha256sum {D}/shared/.env /etc/nginx/"
            "sites-available/djangoapp /etc/systemd/system/"
            "gunicorn-djangoapp@.*",
        )


INDEX_RAISES = """

def index(request):  # the root page raises; /healthz still answers
    raise ValueError("Missing staticfiles manifest entry for 'css/styles.css'")
"""
INDEX_ERROR = "ValueError: Missing staticfiles manifest entry for 'css/styles.css'"


def break_index(repo) -> str:
    """Commit a release whose `/` raises; return the views.py to restore."""
    views = (repo / "notes" / "views.py").read_text()
    commit_file(repo, "notes/views.py", views + INDEX_RAISES, "index raises")
    return views


def test_first_deploy_that_fails_leaves_no_current_and_is_listed_failed(world):
    farm, inv, repo, h = world["farm"], world["inv"], world["repo"], world["test"]
    views = break_index(repo)
    p = mlctl(inv, "test", "deploy", check=False)
    last = p.stderr.strip().splitlines()[-1]
    assert p.returncode != 0 and last.endswith(INDEX_ERROR), p.stderr
    assert "health check failed: GET /: HTTP 500 (expected <500)" in last
    assert "rolling every host back" not in p.stderr
    assert f"{h.address}: no release to go back to;" in p.stderr
    assert ssh(farm, h, f"test -e {D}/current -o -L {D}/current && echo yes || echo no") == "no"
    rid = git(repo, "rev-parse", "HEAD")[:12]
    listed = json.loads(mlctl(inv, "test", "releases", "--json").stdout)["hosts"][h.address]
    assert [r["status"] for r in listed if r["id"].endswith(rid)] == ["failed"], listed
    commit_file(repo, "notes/views.py", views, "index fixed")


def test_deploy_v1_serves_its_release_through_nginx(world):
    farm, inv = world["farm"], world["inv"]
    mlctl(inv, "test", "deploy")
    mlctl(inv, "live", "deploy", "--yes")
    for h in farm.hosts:
        rid = current(farm, h)
        assert rid.endswith(git(world["repo"], "rev-parse", "HEAD")[:12])
        assert healthz(h.address) == {"release": rid, "database": "ok", "status": "ok"}
    # Data written while v1 serves must survive everything that follows.
    psql(
        farm,
        world["test"],
        "insert into notes_note (title, slug, body, created) "
        "values ('canary', 'canary', 'keep me', now())",
    )
    world["v1"] = current(farm, world["test"])


def test_deploy_v2_migrates_with_verified_snapshots_history_and_tag(world):
    farm, inv, repo, h = world["farm"], world["inv"], world["repo"], world["test"]
    add_pinned_field(repo)
    out = mlctl(inv, "test", "deploy").stderr
    rid = current(farm, h)
    assert "notes.0003_note_pinned" in out
    assert healthz(h.address)["release"] == rid != world["v1"]
    snaps = ssh(farm, h, f"sudo ls {D}/backups/db").split()
    assert f"{rid}-before-migrate.dump" in snaps and f"{rid}-after-migrate.dump" in snaps
    for which, has_column in (("before", False), ("after", True)):
        ssh(
            farm,
            h,
            "cd / && sudo -u postgres dropdb --if-exists scratch && sudo -u postgres createdb "
            f"scratch && cat {D}/backups/db/{rid}-{which}-migrate.dump | "
            "sudo -u postgres pg_restore --no-owner -d scratch",
        )
        cols = ssh(
            farm,
            h,
            'sudo -u postgres psql -tAX -d scratch -c "select column_name from '
            "information_schema.columns where table_name='notes_note'\"",
        )
        assert ("pinned" in cols.split()) is has_column
    ssh(farm, h, "cd / && sudo -u postgres dropdb scratch")
    history = ssh(farm, h, f"sudo tail -n 1 {D}/.mlctl/history.jsonl")
    assert f'"release": "{rid}"' in history and '"outcome": "good"' in history
    assert f"deploy/test/{rid}" in git(repo, "tag", "--list", "deploy/test/*")
    world["v2"] = rid


def test_redeploy_unchanged_reuses_venv_and_migrates_nothing(world):
    farm, inv, h = world["farm"], world["inv"], world["test"]
    out = mlctl(inv, "test", "deploy").stderr
    assert "reused" in out and "building venv" not in out
    assert "no migration pending" in out
    assert healthz(h.address)["release"] == current(farm, h)
    # Back to v2 (auto policy): both releases recorded the same migrations, so no Django
    # process has to work out a plan.
    p = mlctl(inv, "test", "rollback")
    assert "no migration to reverse (same migrations in both releases)" in p.stderr, p.stderr
    assert current(farm, h) == world["v2"] and healthz(h.address)["release"] == world["v2"]


def test_rollback_reverses_migration_and_keeps_data(world):
    farm, inv, h = world["farm"], world["inv"], world["test"]
    mlctl(inv, "test", "rollback", "--to", world["v1"])
    assert current(farm, h) == world["v1"]
    assert healthz(h.address)["release"] == world["v1"]
    cols = psql(
        farm,
        h,
        "select column_name from information_schema.columns " "where table_name='notes_note'",
    )
    assert "pinned" not in cols.split()
    assert psql(farm, h, "select body from notes_note where slug='canary'") == "keep me"
    mlctl(inv, "test", "deploy")  # back to the newest code for the failure cases
    world["good"] = current(farm, h)


def _assert_unchanged(world, host, rid_before: str) -> None:
    farm = world["farm"]
    assert current(farm, host) == rid_before
    assert healthz(host.address)["release"] == rid_before
    assert ssh(farm, host, f"test -d {D}/.mlctl/lock && echo held || echo free") == "free"


def test_release_whose_wsgi_import_fails_never_becomes_current(world):
    farm, inv, repo, h = world["farm"], world["inv"], world["repo"], world["test"]
    good = current(farm, h)
    wsgi = (repo / "djangoapp" / "wsgi.py").read_text()
    commit_file(repo, "djangoapp/wsgi.py", wsgi + "\nraise RuntimeError('broken release')\n", "bad")
    p = mlctl(inv, "test", "deploy", check=False)
    assert p.returncode != 0 and "import WSGI app" in p.stderr.strip().splitlines()[-1]
    _assert_unchanged(world, h, good)
    releases = ssh(farm, h, f"ls {D}/releases").split()
    assert all(not r.endswith(git(repo, "rev-parse", "HEAD")[:12]) for r in releases)
    commit_file(repo, "djangoapp/wsgi.py", wsgi, "fix wsgi")


def test_release_the_app_user_cannot_read_never_becomes_current(world):
    farm, inv, h = world["farm"], world["inv"], world["test"]
    good = current(farm, h)
    p = mlctl(inv, "test", "deploy", "--set", "hooks.before_build=chmod 600 README.md", check=False)
    last = p.stderr.strip().splitlines()[-1]
    assert p.returncode != 0 and "read check failed" in last, p.stderr
    assert "www-data cannot read ./README.md" in last, last
    _assert_unchanged(world, h, good)


def test_failed_health_check_rolls_every_live_host_back_and_marks_bad(world):
    farm, inv, repo = world["farm"], world["inv"], world["repo"]
    before = {h.address: current(farm, h) for h in world["live"]}
    views = (repo / "notes" / "views.py").read_text()
    broken = views.replace(
        "def healthz(request",
        "def healthz(request, *a):\n    raise "
        "RuntimeError('boom')\n\n\ndef _old_healthz(request",
        1,
    )
    assert broken != views
    commit_file(repo, "notes/views.py", broken, "health 500")
    p = mlctl(inv, "live", "deploy", "--yes", "--set", "timeouts.health=3", check=False)
    assert p.returncode != 0, p.stderr
    assert "health check" in p.stderr.strip().splitlines()[-1]
    bad = git(repo, "rev-parse", "HEAD")[:12]
    for h in world["live"]:
        _assert_unchanged(world, h, before[h.address])
        meta = ssh(farm, h, f"cat {D}/.mlctl/releases/*-{bad}.json")
        assert '"status": "bad"' in meta
    commit_file(repo, "notes/views.py", views, "fix health")


def test_release_whose_root_page_raises_is_rolled_back_on_every_host(world, tmp_path):
    farm, inv, repo = world["farm"], world["inv"], world["repo"]
    before = {h.address: current(farm, h) for h in world["live"]}
    views = break_index(repo)
    logs = tmp_path / "logs"
    p = mlctl(inv, "--log-dir", str(logs), "live", "deploy", "--yes", check=False)
    last = p.stderr.strip().splitlines()[-1]
    assert p.returncode != 0 and last.endswith(INDEX_ERROR), p.stderr
    assert "health check failed: GET /: HTTP 500 (expected <500)" in last
    assert "rolling every host back after:" in p.stderr
    bad = git(repo, "rev-parse", "HEAD")[:12]
    for h in world["live"]:
        _assert_unchanged(world, h, before[h.address])
        assert '"status": "bad"' in ssh(farm, h, f"cat {D}/.mlctl/releases/*-{bad}.json")
    records = [json.loads(x) for x in (logs / "mlctl.jsonl").read_text().splitlines()]
    traces = [
        r["traceback"] for r in records if r.get("step") == "health check" and r.get("traceback")
    ]
    assert len(traces) == len(world["live"]), records[-5:]
    assert all(t.startswith("Traceback (most recent call last):") for t in traces)
    assert all(t.endswith(INDEX_ERROR) and "views.py" in t for t in traces), traces
    commit_file(repo, "notes/views.py", views, "index fixed")


def test_missing_gunicorn_fails_before_migrate_with_the_database_unchanged(world):
    farm, inv, repo, h = world["farm"], world["inv"], world["repo"], world["test"]
    good = current(farm, h)
    req = (repo / "requirements.txt").read_text()
    without = "".join(ln for ln in req.splitlines(True) if not ln.startswith("gunicorn"))
    assert without != req
    commit_file(repo, "requirements.txt", without, "no gunicorn")
    migration = MIGRATION_0004.replace("XXX", "unreached")
    commit_file(repo, "notes/migrations/0004_unreached.py", migration, "a migration")
    # mlctl brings its own gunicorn (build.server) to a set that names none: turned off here.
    p = mlctl(inv, "test", "deploy", "--set", "build.server=", check=False)
    last = p.stderr.strip().splitlines()[-1]
    assert p.returncode != 0, p.stderr
    assert last.endswith(
        "gunicorn failed: FileNotFoundError: .venv/bin/gunicorn is missing: add gunicorn to the "
        "project's requirements"
    ), last
    assert "migrating" not in p.stderr
    _assert_unchanged(world, h, good)
    applied = psql(farm, h, "select name from django_migrations where app='notes'").split()
    assert "0004_unreached" not in applied
    cols = psql(
        farm, h, "select column_name from information_schema.columns where table_name='notes_note'"
    )
    assert "unreached" not in cols.split()
    git(repo, "rm", "-q", "notes/migrations/0004_unreached.py")
    commit_file(repo, "requirements.txt", req, "gunicorn back")


MIGRATION_0004 = """from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("notes", "0003_note_pinned")]
    operations = [migrations.AddField("note", "XXX", models.BooleanField(default=False))]
"""


def test_failing_migration_leaves_database_as_before(world):
    farm, inv, repo, h = world["farm"], world["inv"], world["repo"], world["test"]
    good = current(farm, h)
    migration = """from django.db import migrations, models


def explode(apps, schema_editor):
    raise RuntimeError("migration failed halfway")


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("notes", "0003_note_pinned")]
    operations = [
        migrations.CreateModel("Half", [("id", models.AutoField(primary_key=True))]),
        migrations.RunPython(explode, migrations.RunPython.noop),
    ]
"""
    commit_file(repo, "notes/migrations/0004_half.py", migration, "failing migration")
    p = mlctl(inv, "test", "deploy", "--skip-tests", check=False)
    assert p.returncode != 0 and "migration failed" in p.stderr.strip().splitlines()[-1]
    _assert_unchanged(world, h, good)
    assert (
        psql(
            farm,
            h,
            "select count(*) from information_schema.tables " "where table_name='notes_half'",
        )
        == "0"
    )
    assert psql(farm, h, "select body from notes_note where slug='canary'") == "keep me"
    git(repo, "rm", "-q", "notes/migrations/0004_half.py")
    git(repo, "commit", "-qm", "drop failing migration")


def test_sigint_during_build_leaves_current_and_cleans_up(world):
    farm, inv, repo, h = world["farm"], world["inv"], world["repo"], world["test"]
    good = current(farm, h)
    commit_file(repo, "notes/static/notes/extra.css", "body { color: red }\n", "new static")
    import os

    proc = subprocess.Popen(
        [sys.executable, "-m", "mlctl.cli", "test", "deploy"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "MLCTL_INVENTORY": str(inv)},
    )
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if " build " in line:
            time.sleep(0.3)
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.communicate(timeout=120)[1]
    assert proc.returncode != 0, "".join(lines) + rest
    _assert_unchanged(world, h, good)
    rid = git(repo, "rev-parse", "HEAD")[:12]
    assert not [r for r in ssh(farm, h, f"ls {D}/releases").split() if r.endswith(rid)]


def test_two_deploys_at_once_exactly_one_runs(world):
    farm, inv = world["farm"], world["inv"]
    import os

    env = {**os.environ, "MLCTL_INVENTORY": str(inv)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "mlctl.cli", "test", "deploy", "--skip-tests"],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes[0] == 0 and codes[1] != 0, results
    loser = [err for code, err in results if code != 0][0]
    assert "deploy lock held by" in loser and "pid" in loser
    assert healthz(world["test"].address)["release"] == current(farm, world["test"])


def test_dry_run_prints_the_commands_and_changes_nothing(world):
    farm, inv, h = world["farm"], world["inv"], world["test"]
    tree = f"sudo find {D} /etc/nginx /etc/systemd/system -printf '%p %s %T@ %m\\n' | sort"
    before = ssh(farm, h, tree)
    p = mlctl(inv, "test", "deploy", "--dry-run")
    # every step under the watcher (docs/reliability.md), its program named, not printed
    start = rf"\[{re.escape(h.address)}\] start in slot (blue|green): sudo -n /usr/bin/python3"
    assert re.search(start + r" -I -S -c <mlctl-watch> ", p.stdout), p.stdout
    assert " sh -c 'set -e; " in p.stdout, p.stdout
    assert "import select" not in p.stdout
    assert "collectstatic" in p.stdout and "mv -Tf" in p.stdout
    # each printed step is the command as it runs: its own step number in the watcher's tag
    numbers = [int(n) for n in re.findall(r"<mlctl-watch> \d+ \S+\.(\d+) sh -c", p.stdout)]
    assert len(numbers) > 3 and numbers == sorted(set(numbers)), p.stdout
    # the rest of the pipeline is planned too: the record, prune and unlock of `finish`
    assert f"[{h.address}] record: " in p.stdout and "when migrations are pending" in p.stdout
    assert ssh(farm, h, tree) == before


# what a deploy runs on a PostgreSQL host when migrations are pending
MIGRATION_STEPS = ["snapshot RID-before-migrate", "migrate", "snapshot RID-after-migrate"]


def journal_steps(records: list[dict]) -> list[dict]:
    """The commands of one run after its facts were gathered (where a dry run starts planning)."""
    return [r for r in records if "command" in r and r["step"] != "facts"]


def normalized(command: str, run_id: str, rid: str) -> str:
    """What differs between two runs of the same commit by nature: the run's id (and the step
    numbers of the watcher's tags), the release id (a timestamp) and the time in records."""
    command = command.replace(run_id, "RUN").replace(rid, "RID")
    command = re.sub(r"RUN\.\d+", "RUN.N", command)
    return re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}", "TIME", command)


def without_build_outputs(command: str, static: str | None) -> str:
    """The real run knows what the build printed (the leaf migrations and one collected static
    file, written into the release's metadata and requested by the health probe); a dry run
    cannot, as it builds nothing. Removing exactly those leaves the command a dry run plans."""
    command = re.sub(r',\n "leaves": \{[^}]*\}', "", command)
    if static:
        command = command.replace(f',\n "static": "{static}"', "")
        command = re.sub(
            r', \{"path": "' + re.escape(static) + r'", "expect": "200"[^}]*\}', "", command
        )
    return command


def test_dry_run_plans_exactly_the_commands_a_real_deploy_runs(world, tmp_path):
    """Step for step: `deploy --dry-run`, then a real deploy of the same commit; the planned
    commands and the journal's are the same but for what only the real run can know."""
    farm, inv, h, repo = world["farm"], world["inv"], world["test"], world["repo"]
    logs = tmp_path / "logs"
    dry = mlctl(inv, "--log-dir", str(logs), "test", "deploy", "--dry-run")
    real = mlctl(inv, "--log-dir", str(logs), "test", "deploy")
    records = [json.loads(x) for x in (logs / "mlctl.jsonl").read_text().splitlines()]
    run_ids = list(dict.fromkeys(r["run_id"] for r in records))
    assert len(run_ids) == 2, run_ids
    planned, ran = (journal_steps([r for r in records if r["run_id"] == i]) for i in run_ids)
    assert planned and {r["outcome"] for r in planned} == {"planned"}, planned
    assert "planned" not in {r["outcome"] for r in ran}
    commit = git(repo, "rev-parse", "HEAD")[:12]
    dry_rid = re.search(
        rf"\d{{14}}-{commit}",
        planned[[r["step"] for r in planned].index("upload and build")]["command"],
    ).group(0)
    real_rid = current(farm, h)
    meta = json.loads(ssh(farm, h, f"cat {D}/.mlctl/releases/{real_rid}.json"))
    plan = [
        (normalized(r["step"], run_ids[0], dry_rid), normalized(r["command"], run_ids[0], dry_rid))
        for r in planned
    ]
    static = meta.get("static")
    done = [
        (
            normalized(r["step"], run_ids[1], real_rid),
            without_build_outputs(normalized(r["command"], run_ids[1], real_rid), static),
        )
        for r in ran
    ]
    # A fact only the real build knows: whether migrations are pending. The dry run plans the
    # snapshot-migrate-snapshot block a real run runs when there are; this commit has none, so
    # the real run skipped exactly that block.
    assert "no migration pending; snapshot skipped" in real.stderr, real.stderr
    assert "when migrations are pending:" in dry.stdout
    migration = [s for s in plan if s[0] in MIGRATION_STEPS]
    assert [s for s, _ in migration] == MIGRATION_STEPS, plan
    expected = [s for s in plan if s not in migration]
    assert [s for s, _ in done] == [s for s, _ in expected]
    for (step, planned_cmd), (_, run_cmd) in zip(expected, done, strict=True):
        assert planned_cmd == run_cmd, step
    # what the dry run printed is what it recorded, in order
    shown = [
        f"[{h.address}] {r['step']}: {r['command']}" + (" < archive" if "bytes" in r else "")
        for r in planned
    ]
    positions = [dry.stdout.find(line) for line in shown]
    assert -1 not in positions and positions == sorted(positions), dry.stdout
