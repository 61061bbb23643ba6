"""The one validation of resolved settings (validation.check_settings): every environment at load,
the chosen one again with MLCTL_* and --set values, each error naming where the value came from."""

from __future__ import annotations

import pytest

from mlctl.config import inventory, schema
from mlctl.core.errors import InventoryError
from tests.unit.conftest import BASE

F = "environments.yaml"


def load_error(write_inventory, text: str) -> str:
    with pytest.raises(InventoryError) as e:
        inventory.load(write_inventory(text))
    return str(e.value)


def resolve_error(write_inventory, environ=None, flags=None) -> str:
    inv = inventory.load(write_inventory())
    with pytest.raises(InventoryError) as e:
        inventory.resolve(inv, "test", environ or {}, flags or {})
    return str(e.value)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "    server_name: 'a;b'\n",
            f"{F}:20: environments.live.server_name: 'a;b': invalid characters",
        ),
        (
            "    app_user: 'Web User'\n",
            f"{F}:20: environments.live.app_user: 'Web User': " "invalid user name",
        ),
        (
            "    deploy_to: /srv/my app\n",
            f"{F}:20: environments.live.deploy_to: '/srv/my app': use letters, digits, / . _ - "
            "only (it goes into systemd units and the nginx site)",
        ),
        (
            "    database: {engine: sqlite, dump_options: [--no-comments]}\n",
            f"{F}:20: environments.live.database.dump_options[0]: dump_options are pg_dump's "
            "(engine is sqlite): set database.dump_options: [] for this environment",
        ),
        (
            "    database: {engine: postgresql, dump_options: [--file=/tmp/x]}\n",
            f"{F}:20: environments.live.database.dump_options[0]: '--file=/tmp/x' is not an "
            "option mlctl can pass on (mlctl sets the format and the file: -Fc -f)",
        ),
        (
            "    database: {engine: postgresql, dump_options: [-Fp]}\n",
            f"{F}:20: environments.live.database.dump_options[0]: '-Fp' is not an "
            "option mlctl can pass on (mlctl sets the format and the file: -Fc -f)",
        ),
        (
            "    database: {engine: postgresql, dump_options: [--no-comments, mydb]}\n",
            f"{F}:20: environments.live.database.dump_options[1]: 'mydb' is not an "
            "option mlctl can pass on (mlctl sets the format and the file: -Fc -f)",
        ),
    ],
)
def test_server_settings_are_checked_as_the_inventory_is_read(write_inventory, extra, message):
    assert load_error(write_inventory, BASE + extra) == message


def test_a_local_environment_keeps_its_own_rules(write_inventory):
    text = BASE.replace("    deploy_to: ./var/dev\n", "    deploy_to: ./var/my dev\n")
    cfg = inventory.resolve(inventory.load(write_inventory(text)), "dev", {}, {})
    assert cfg["deploy_to"].endswith("var/my dev")  # no systemd unit or nginx site to write


def test_project_name_must_suit_unit_names(write_inventory):
    text = BASE.replace("  name: app\n", "  name: My App\n")
    assert (
        load_error(write_inventory, text) == f"{F}:2: project.name: 'My App': use a-z, 0-9, - and _"
    )


def test_overrides_pass_the_same_checks(write_inventory):
    assert resolve_error(write_inventory, {"MLCTL_SHARED_DIRS": "media,../etc"}) == (
        "MLCTL_SHARED_DIRS: shared_dirs[1]: '../etc' must be a relative name inside the release "
        "(no leading / or -, no '..')"
    )
    assert resolve_error(write_inventory, flags={"server_name": "$(id)"}) == (
        "--set server_name: '$(id)': invalid characters"
    )
    assert resolve_error(write_inventory, {"MLCTL_TIMEOUTS__LOCK_LEASE": "1"}) == (
        "MLCTL_TIMEOUTS__LOCK_LEASE: must be at least 2 seconds, got 1"
    )


def test_dump_options_reach_pg_dump(write_inventory):
    from mlctl.commands import db

    text = BASE + "    database: {engine: postgresql, dump_options: [--exclude-table-data=x_log]}\n"
    cfg = inventory.resolve(inventory.load(write_inventory(text)), "live", {}, {})
    assert cfg["database"]["dump_options"] == ["--exclude-table-data=x_log"]
    cmd = db.snapshot("postgresql", "/e", "/b/s.dump", options=cfg["database"]["dump_options"])
    assert "pg_dump -Fc --no-owner --no-acl --exclude-table-data=x_log -f /b/s.dump" in cmd.render()


def test_secret_keys_come_from_the_schema():
    assert schema.SECRET_KEYS == (("database", "password"), ("database", "url"), ("secrets",))


def test_typed_sections_match_the_schema_and_the_resolved_values(write_inventory):
    from dataclasses import FrozenInstanceError, fields

    from mlctl.config import sections

    for name, cls in sections.SECTIONS.items():
        assert [f.name for f in fields(cls)] == list(schema.ENV_KEYS[name].kind), name
    text = (
        BASE + "    thresholds: {disk_pct: 70}\n    database: {engine: postgresql, password: pw}\n"
    )
    cfg = inventory.resolve(
        inventory.load(write_inventory(text)), "live", {}, {"health.timeout": "9"}
    )
    assert (cfg.thresholds.disk_pct, cfg.thresholds.mem_pct) == (70, 90)
    assert cfg.health.timeout == 9.0 and cfg.health.paths == ({"path": "/", "expect": "<500"},)
    assert cfg.timeouts.lock_lease == cfg["timeouts"]["lock_lease"]
    assert cfg.database.engine == "postgresql" and "pw" not in repr(cfg.database)
    with pytest.raises(FrozenInstanceError):
        cfg.health.timeout = 1  # type: ignore[misc]


def test_every_setting_of_the_schema_has_its_typed_name_on_envconfig(write_inventory):
    from mlctl.config.inventory import EnvConfig

    missing = [key for key in schema.ENV_KEYS if not hasattr(EnvConfig, key)]
    assert missing == []
    cfg = inventory.resolve(inventory.load(write_inventory(BASE)), "live", {}, {})
    for key in schema.ENV_KEYS:
        if key not in ("hosts", "color") and not isinstance(getattr(cfg, key), sections_types()):
            assert getattr(cfg, key) == cfg[key], key
    assert cfg.gunicorn.workers == cfg["gunicorn"]["workers"]
    assert cfg.hooks.after_switch == tuple(cfg["hooks"]["after_switch"])


def sections_types():
    from mlctl.config import sections

    return tuple(sections.SECTIONS.values())
