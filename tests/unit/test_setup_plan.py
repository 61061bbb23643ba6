"""setup as facts -> plan: the survey's parsing and the plan for a bare, a provisioned and a
drifted host, as exact commands."""

from __future__ import annotations

import pytest

from mlctl.commands import provision as pv
from mlctl.commands import provision_plan as planner
from mlctl.config import inventory
from mlctl.config.layout import Layout
from mlctl.core.errors import PreflightFailed
from tests.unit.conftest import BASE

LAY = Layout("/srv/app")
UNIT = "/etc/systemd/system/gunicorn-app"
SITE = "/etc/nginx/sites-available/app"
PG = {"database.engine": "postgresql", "database.name": "app", "database.host": "localhost"}


LIVE_BLUE = {"current": "", "live": "blue", "links": {}, "sockets": {"blue": {"enabled", "active"}}}


def fixed_secret(n: int) -> str:
    return f"generated-{n}"


@pytest.fixture
def cfg(write_inventory):
    return inventory.resolve(inventory.load(write_inventory(BASE)), "test")


@pytest.fixture
def pg_cfg(write_inventory):
    return inventory.resolve(inventory.load(write_inventory(BASE)), "test", {}, PG)


def bare() -> planner.HostFacts:
    """A fresh Debian host: no user, no directory, no file (every directory is off)."""
    missing = tuple(d.path for d in pv.dir_specs(LAY, "www-data", ["media", "logs"]))
    return planner.HostFacts(
        host="t1.example.internal", address="t1.example.internal", dirs_off=missing
    )


def provisioned(cfg, **changes) -> planner.HostFacts:
    """A host as setup leaves it: every file as rendered, the .env as setup writes it."""
    first = planner.plan(bare(), cfg, fixed_secret)
    files = {**pv.unit_files(cfg), **pv.site_file(cfg)}
    facts = dict(
        host="t1.example.internal",
        address="t1.example.internal",
        user_exists=True,
        marker="test",
        env=first.env,
        sums={path: planner.digest(text) for path, text in files.items()},
        slots=LIVE_BLUE,
        site_linked=True,
        has_role=True,
        has_db=True,
        can_login=True,
    )
    return planner.HostFacts(**{**facts, **changes})


def actions(plan: planner.Plan) -> list[tuple[str, str]]:
    return [(a.label, a.cmd.render()) for s in plan.steps for a in s.actions]


def test_bare_host_plan_runs_every_step_in_order(cfg):
    plan = planner.plan(bare(), cfg, fixed_secret)
    assert [(s.name, s.changed) for s in plan.steps] == [
        ("app user", True),
        ("directories", True),
        ("marker", True),
        ("database", False),  # SQLite: nothing to create
        ("shared .env", True),
        ("gunicorn units", True),
        ("app slots", False),  # no release to run yet
        ("nginx site", True),
        ("single gunicorn unit", False),
    ]
    labels = [label for label, _ in actions(plan)]
    assert labels == [
        "create app user",
        "create directories",
        "write marker",
        "write .env",
        f"write {UNIT}@.socket",
        f"write {UNIT}@.service",
        "enable socket",
        "name the live slot",
        f"write {SITE}",
        "enable nginx site",
        "reload nginx",
    ]
    cmds = dict(actions(plan))
    assert cmds["create app user"] == (
        "useradd --system --user-group --home-dir /nonexistent --shell /usr/sbin/nologin www-data"
    )
    assert cmds["create directories"].startswith(
        "set -e; mkdir -p /srv/app ; chown root:root /srv/app ; chmod 755 /srv/app ;"
    )
    assert cmds["create directories"].endswith(
        "mkdir -p /srv/app/shared/logs ; chown www-data:www-data /srv/app/shared/logs ;"
        " chmod 750 /srv/app/shared/logs ;"
    )
    assert cmds["write marker"] == "mkdir -p /srv/app/.mlctl && cat > /srv/app/.mlctl/marker"
    assert cmds["write .env"] == (
        "mkdir -p /srv/app/shared && umask 077 && cat > /srv/app/shared/.env.tmp"
        " && chmod 0640 /srv/app/shared/.env.tmp && chown root:www-data /srv/app/shared/.env.tmp"
        " && mv -f /srv/app/shared/.env.tmp /srv/app/shared/.env"
    )
    assert cmds["enable socket"] == (
        "set -e; systemctl daemon-reload ; systemctl enable --now gunicorn-app@blue.socket ;"
    )
    assert cmds["enable nginx site"] == (
        "set -e; ln -sfn /etc/nginx/sites-available/app /etc/nginx/sites-enabled/app ;"
        " rm -f /etc/nginx/sites-enabled/default ; nginx -t -q ;"
    )
    assert cmds["reload nginx"] == "systemctl reload-or-restart nginx"


def test_bare_host_gets_a_generated_secret_key_and_its_env(cfg):
    plan = planner.plan(bare(), cfg, fixed_secret)
    assert plan.env == {
        "SECRET_KEY": "generated-50",
        "DEBUG": "0",
        "MEDIA_ROOT": "/srv/app/shared/media",
        "ALLOWED_HOSTS": "localhost,127.0.0.1,t1.example.internal",
        "DATABASE_URL": "sqlite:////srv/app/shared/db.sqlite3",
    }
    assert plan.secrets == ["generated-50", "sqlite:////srv/app/shared/db.sqlite3"]
    write = next(a for s in plan.steps for a in s.actions if a.label == "write .env")
    assert write.stdin.decode().splitlines()[0] == "# Managed by mlctl setup; values are secret."
    assert "SECRET_KEY=generated-50" in write.stdin.decode().splitlines()
    marker = next(a for s in plan.steps for a in s.actions if a.label == "write marker")
    assert marker.stdin == b"test\n"


def test_provisioned_host_changes_nothing_and_only_resets_the_env_mode(cfg):
    plan = planner.plan(provisioned(cfg), cfg, fixed_secret)
    assert not any(s.changed for s in plan.steps)
    assert actions(plan) == [
        (
            "env file mode",
            "chmod 0640 /srv/app/shared/.env && chown root:www-data /srv/app/shared/.env",
        )
    ]


def test_provisioned_host_keeps_its_own_secrets(pg_cfg):
    facts = provisioned(pg_cfg, env={**provisioned(pg_cfg).env, "SECRET_KEY": "kept-key"})
    plan = planner.plan(facts, pg_cfg, lambda n: pytest.fail("no secret may be generated"))
    assert plan.env["SECRET_KEY"] == "kept-key"
    assert plan.env["PGPASSWORD"] == "generated-24"  # the first plan's, found in the .env
    assert plan.env["DATABASE_URL"] == "postgresql://app:generated-24@localhost:5432/app"
    assert [s.changed for s in plan.steps] == [False] * 9


def test_drifted_host_rewrites_only_what_drifted(cfg):
    sums = dict(provisioned(cfg).sums)
    sums[f"{UNIT}@.service"] = "0" * 64  # the unit file was edited by hand
    facts = provisioned(
        cfg, sums=sums, dirs_off=("/srv/app/shared/media",), site_linked=False
    )  # media chowned to root; the site's link removed
    plan = planner.plan(facts, cfg, fixed_secret)
    assert [s.name for s in plan.steps if s.changed] == [
        "directories",
        "gunicorn units",
        "nginx site",
    ]
    assert [label for label, _ in actions(plan)] == [
        "create directories",
        "env file mode",
        f"write {UNIT}@.service",
        "enable socket",
        "enable nginx site",
        "reload nginx",
    ]
    write = next(a for s in plan.steps for a in s.actions if a.label == f"write {UNIT}@.service")
    assert write.cmd.render() == (
        f"set -e; cat > {UNIT}@.service.tmp ; chmod 0644 {UNIT}@.service.tmp ;"
        f" mv -f {UNIT}@.service.tmp {UNIT}@.service ;"
    )
    assert write.stdin.decode() == pv.unit_files(cfg)[f"{UNIT}@.service"]


def test_stopped_socket_is_enabled_again_without_rewriting_the_units(cfg):
    stopped = {**LIVE_BLUE, "sockets": {"blue": {"enabled"}}}
    plan = planner.plan(provisioned(cfg, slots=stopped), cfg, fixed_secret)
    step = next(s for s in plan.steps if s.name == "gunicorn units")
    assert step.changed and [a.label for a in step.actions] == ["enable socket"]


def test_a_nginx_site_that_fails_its_test_stops_setup_before_the_reload(cfg):
    steps = planner.plan(provisioned(cfg, site_linked=False), cfg, fixed_secret).steps
    step = next(s for s in steps if s.name == "nginx site")
    enable, reload = step.actions
    assert enable.refusal == "nginx -t rejected the site; nginx was not reloaded"
    assert not reload.refusal


def test_a_server_of_another_environment_is_refused_before_any_change(cfg):
    with pytest.raises(PreflightFailed, match="t1.example.internal: this server belongs to 'live'"):
        planner.plan(provisioned(cfg, marker="live"), cfg, fixed_secret)


def test_bare_postgres_host_creates_role_and_database(pg_cfg):
    plan = planner.plan(bare(), pg_cfg, fixed_secret)
    step = next(s for s in plan.steps if s.name == "database")
    (create,) = step.actions
    assert create.cmd.render() == "runuser -u postgres -- psql -qX -v ON_ERROR_STOP=1"
    assert create.stdin.decode() == (
        "CREATE ROLE \"app\" LOGIN PASSWORD 'generated-24';\n" 'CREATE DATABASE "app" OWNER "app";'
    )
    assert plan.env["DATABASE_URL"] == "postgresql://app:generated-24@localhost:5432/app"
    assert set(plan.secrets) == {"generated-50", "generated-24", plan.env["DATABASE_URL"]}


def test_a_role_whose_password_no_longer_logs_in_gets_the_env_password_again(pg_cfg):
    plan = planner.plan(provisioned(pg_cfg, can_login=False), pg_cfg, fixed_secret)
    step = next(s for s in plan.steps if s.name == "database")
    assert step.changed
    assert step.actions[0].stdin == b"ALTER ROLE \"app\" LOGIN PASSWORD 'generated-24';"


def test_survey_output_becomes_facts():
    out = "\n".join(
        [
            f"{pv.FACT} tools",
            "",
            f"{pv.FACT} python",
            f"{pv.VERSION_TAG} 3.11.2",
            f"{pv.FACT} user",
            "yes",
            f"{pv.FACT} dirs",
            "/srv/app/shared/media",
            f"{pv.FACT} marker",
            "test",
            f"{pv.FACT} env",
            "# Managed by mlctl setup; values are secret.",
            "SECRET_KEY=abc=def",
            f"{pv.FACT} sums",
            f"{'a' * 64}  {UNIT}@.socket",
            f"{pv.FACT} slots",
            "current releases/20260101000000-abc1234",
            "link blue ../releases/20260101000000-abc1234",
            "socket blue enabled",
            "live blue",
            "link green ",
            f"{pv.FACT} site",
            "",
            f"{pv.FACT} login",
            "yes",
            f"{pv.FACT} database",
            "1,0",
        ]
    )
    facts = planner.host_facts("h", "h", pv.parse_survey(out))
    assert facts == planner.HostFacts(
        host="h",
        address="h",
        user_exists=True,
        dirs_off=("/srv/app/shared/media",),
        marker="test",
        env={"SECRET_KEY": "abc=def"},
        sums={f"{UNIT}@.socket": "a" * 64},
        slots={
            "current": "20260101000000-abc1234",
            "live": "blue",
            "links": {"blue": "20260101000000-abc1234", "green": ""},
            "sockets": {"blue": {"enabled"}},
        },
        site_linked=False,
        has_role=True,
        has_db=False,
        can_login=True,
    )


def test_survey_reads_everything_in_one_command_with_the_database_probe_last(pg_cfg, cfg):
    text = pv.survey(pg_cfg, "app", "app").render()
    sections = [w.split("'")[0] for w in text.split(f"echo '{pv.FACT} ")[1:]]
    assert sections == [
        "tools",
        "python",
        "user",
        "dirs",
        "marker",
        "env",
        "sums",
        "slots",
        "site",
        "login",
        "database",
    ]
    assert "for t in nginx systemctl /usr/bin/python3 psql pg_dump pg_restore ; do" in text
    assert text.endswith(
        "runuser -u postgres -- psql -tAX -v ON_ERROR_STOP=1 -c 'SELECT (SELECT count(*) FROM"
        " pg_roles WHERE rolname = '\"'\"'app'\"'\"') || '\"'\"','\"'\"' || (SELECT count(*)"
        " FROM pg_database WHERE datname = '\"'\"'app'\"'\"')'"
    )
    assert pv.survey(cfg, "", "").render().endswith("echo yes; true")


def test_local_environment_commands():
    lay = Layout("/home/u/app/var/dev")
    assert pv.local_dirs(lay, ["media", "logs"]).render() == (
        "mkdir -p /home/u/app/var/dev/releases /home/u/app/var/dev/venvs"
        " /home/u/app/var/dev/backups/db /home/u/app/var/dev/.mlctl/releases"
        " /home/u/app/var/dev/run /home/u/app/var/dev/shared/media /home/u/app/var/dev/shared/logs"
    )
    assert (
        pv.database_login(lay.env_file)
        .render()
        .endswith("done < /home/u/app/var/dev/shared/.env && psql -tAXc 'select 1'")
    )
    assert pv.local_survey(lay).render() == (
        "echo; echo '@@mlctl-fact marker'; cat /home/u/app/var/dev/.mlctl/marker 2>/dev/null;"
        " echo; echo '@@mlctl-fact env'; cat /home/u/app/var/dev/shared/.env 2>/dev/null; true"
    )


def test_local_plan_writes_the_env_private_to_the_user(cfg):
    lay = Layout("/home/u/app/var/dev")
    env = planner.merged_env({}, {"DEBUG": "0"}, fixed_secret)
    step = planner.env_step({}, env, lay, mode="0600", group=None)
    assert step.changed and step.actions[0].cmd.render() == (
        "mkdir -p /home/u/app/var/dev/shared && umask 077"
        " && cat > /home/u/app/var/dev/shared/.env.tmp"
        " && chmod 0600 /home/u/app/var/dev/shared/.env.tmp && true"
        " && mv -f /home/u/app/var/dev/shared/.env.tmp /home/u/app/var/dev/shared/.env"
    )
    same = planner.env_step(env, env, lay, mode="0600", group=None)
    assert same.actions[0].cmd.render() == "chmod 0600 /home/u/app/var/dev/shared/.env && true"
