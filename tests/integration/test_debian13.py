"""The example app on Debian 13 hosts (Python 3.13, PostgreSQL 17): deploy, migrate, roll back.

Uses the session `farm13` fixture (two Debian 13 hosts: h1 = test, h2 = live). The whole deploy
suite runs on Debian 13 with MLCTL_FARM_IMAGE=debian13; this module keeps the default run honest
about the second image: mlctl's host-side code and the wheelhouse must work on the host's Python.
"""

from __future__ import annotations

import pytest

from .helpers import LIVE_UNIT, D, add_pinned_field, current, healthz, mlctl, new_project, psql, ssh

pytestmark = pytest.mark.hosts

GUNICORN_PYTHON = f"readlink -f /proc/$(systemctl show -p MainPID --value {LIVE_UNIT}.service)/exe"


@pytest.fixture(scope="module")
def world(farm13, tmp_path_factory):
    repo, inv = new_project(farm13, tmp_path_factory)
    return {"farm": farm13, "repo": repo, "inv": inv, "test": farm13.hosts[0]}


def test_setup_and_deploy_serve_the_app_on_python_3_13(world):
    farm, inv = world["farm"], world["inv"]
    mlctl(inv, "test", "setup")
    mlctl(inv, "live", "setup", "--yes")
    mlctl(inv, "test", "deploy")
    mlctl(inv, "live", "deploy", "--yes")
    for h in farm.hosts:
        rid = current(farm, h)
        assert healthz(h.address) == {"release": rid, "database": "ok", "status": "ok"}
        assert ssh(farm, h, GUNICORN_PYTHON) == "/usr/bin/python3.13", h
        assert psql(farm, h, "show server_version").startswith("17."), h
    assert mlctl(inv, "test", "check", check=False).returncode in (0, 1)  # ok, or warnings only


def test_migration_and_rollback_on_postgresql_17(world):
    farm, inv, h = world["farm"], world["inv"], world["test"]
    v1 = current(farm, h)
    add_pinned_field(world["repo"])
    assert "notes.0003_note_pinned" in mlctl(inv, "test", "deploy").stderr
    column = "select count(*) from information_schema.columns where column_name = 'pinned'"
    assert psql(farm, h, column) == "1"

    mlctl(inv, "test", "rollback", "--yes")
    assert current(farm, h) == v1
    assert healthz(h.address)["release"] == v1
    assert psql(farm, h, column) == "0"  # the migration was reversed
    assert ssh(farm, h, f"test -d {D}/releases/{v1} && echo yes") == "yes"
