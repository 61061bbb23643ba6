"""Inventory loading, validation and precedence: one exact line per bad inventory."""

from __future__ import annotations

import json

import pytest
import yaml

from mlctl.config import inventory
from mlctl.config.schema import ENV_KEYS
from mlctl.core.errors import InventoryError, UnknownEnvironment
from tests.unit.conftest import BASE, one_line

ENV_KNOWN = ", ".join(sorted(ENV_KEYS))
F = "environments.yaml"


def edit(old: str, new: str, text: str = BASE) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


# (case id, inventory text, environment named on the command line, the exact message)
BAD = [
    (
        "top-level unknown key",
        BASE + "extra: 1\n",
        "test",
        f"{F}:20: extra: unknown key (known: defaults, environments, project)",
    ),
    (
        "unknown key in defaults",
        edit("  user: deploy\n", "  user: deploy\n  colour: red\n"),
        "test",
        f"{F}:8: defaults.colour: unknown key (known: {ENV_KNOWN})",
    ),
    (
        "unknown key in an environment",
        BASE + "    bogus: 1\n",
        "live",
        f"{F}:20: environments.live.bogus: unknown key (known: {ENV_KNOWN})",
    ),
    (
        "nested unknown key",
        edit(
            "    hosts: [t1.example.internal]\n",
            "    hosts: [t1.example.internal]\n    health: {urll: /x}\n",
        ),
        "test",
        f"{F}:14: environments.test.health.urll: unknown key "
        "(known: expect_status, host_header, paths, static, timeout, url)",
    ),
    (
        "keep_releases not an int",
        edit("  user: deploy\n", '  user: deploy\n  keep_releases: "five"\n'),
        "test",
        f"{F}:8: defaults.keep_releases: expected int, got a string",
    ),
    (
        "hosts a string",
        edit("hosts: [t1.example.internal]", "hosts: t1.example.internal"),
        "test",
        f"{F}:13: environments.test.hosts: expected a list, got a string",
    ),
    (
        "protected a string",
        edit("protected: true", 'protected: "yes"'),
        "live",
        f"{F}:18: environments.live.protected: expected bool, got a string",
    ),
    (
        "project.wsgi missing",
        edit("  wsgi: app.wsgi:application\n", ""),
        "test",
        f"{F}:1: project.wsgi: missing value (required)",
    ),
    (
        "wsgi not module:callable",
        edit("wsgi: app.wsgi:application", "wsgi: --config=evil.py"),
        "test",
        f"{F}:4: project.wsgi: expected module.path:callable, got '--config=evil.py'",
    ),
    (
        "hosts missing for an ssh environment",
        edit("hosts: [t1.example.internal]", "branch: main"),
        "test",
        f"{F}:12: environments.test.hosts: missing value (no hosts for test)",
    ),
    (
        "empty user",
        edit("  user: deploy\n", "  user:\n"),
        "test",
        f"{F}:7: defaults.user: missing value",
    ),
    (
        "null user",
        edit("  user: deploy\n", "  user: null\n"),
        "test",
        f"{F}:7: defaults.user: missing value",
    ),
    (
        "duplicate host",
        edit(
            "      - w2.example.internal\n",
            "      - w2.example.internal\n      - w1.example.internal\n",
        ),
        "live",
        f"{F}:18: environments.live.hosts[2]: duplicate host 'w1.example.internal'",
    ),
    (
        "duplicate key",
        edit("  user: deploy\n", "  user: deploy\n  user: other\n"),
        "test",
        f"{F}:8: defaults.user: duplicate key",
    ),
    (
        "YAML syntax error",
        edit("  user: deploy\n", "  user: deploy: x\n"),
        "test",
        f"{F}:7: invalid YAML: mapping values are not allowed here",
    ),
    ("empty file", "", "test", f"{F}:1: (top level): the file is empty"),
    ("only comments", "# nothing yet\n", "test", f"{F}:1: (top level): the file is empty"),
    (
        "top level a list",
        "- project\n- environments\n",
        "test",
        f"{F}:1: (top level): expected a mapping, got a list",
    ),
    (
        "top level a scalar",
        "just text\n",
        "test",
        f"{F}:1: (top level): expected a mapping, got a string",
    ),
    (
        "deploy_to /",
        BASE + "    deploy_to: /\n",
        "live",
        f"{F}:20: environments.live.deploy_to: refusing to manage '/' "
        "(too broad: use a directory of its own)",
    ),
    (
        "deploy_to empty",
        BASE + "    deploy_to: ''\n",
        "live",
        f"{F}:20: environments.live.deploy_to: must not be empty",
    ),
    (
        "deploy_to ..",
        BASE + "    deploy_to: ..\n",
        "live",
        f"{F}:20: environments.live.deploy_to: must not contain '..'",
    ),
    (
        "deploy_to with ..",
        edit("  deploy_to: /srv/app\n", "  deploy_to: /srv/../etc\n"),
        "test",
        f"{F}:6: defaults.deploy_to: must not contain '..'",
    ),
    (
        "deploy_to ~",
        BASE + "    deploy_to: '~'\n",
        "live",
        f"{F}:20: environments.live.deploy_to: must be a plain path (no ~, $, ` or newline)",
    ),
    (
        "deploy_to YAML null",
        BASE + "    deploy_to: ~\n",
        "live",
        f"{F}:20: environments.live.deploy_to: missing value",
    ),
    (
        "deploy_to relative on ssh",
        BASE + "    deploy_to: srv/app\n",
        "live",
        f"{F}:20: environments.live.deploy_to: must be an absolute path on the server",
    ),
    (
        "shared dir escaping the release",
        edit("  user: deploy\n", "  user: deploy\n  shared_dirs: [media, ../../etc]\n"),
        "test",
        f"{F}:8: defaults.shared_dirs[1]: '../../etc' must be a relative name inside the "
        "release (no leading / or -, no '..')",
    ),
    (
        "invalid host entry",
        edit("hosts: [t1.example.internal]", "hosts: ['t1;reboot']"),
        "test",
        f"{F}:13: environments.test.hosts[0]: invalid host 't1;reboot' "
        "(expected an ssh alias or user@host:port)",
    ),
    (
        "choice out of range",
        BASE + "    service: upstart\n",
        "live",
        f"{F}:20: environments.live.service: must be one of systemd, pidfile (got 'upstart')",
    ),
    (
        "accept-new on a protected environment",
        BASE + "    host_keys: accept-new\n",
        "live",
        f"{F}:20: environments.live.host_keys: accept-new is refused for a protected environment "
        "(pin the host keys)",
    ),
]


@pytest.mark.parametrize(("text", "env", "message"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_inventory_one_exact_line(mlctl, write_inventory, text, env, message):
    path = write_inventory(text)
    r = mlctl("--inventory", str(path), env, "config", "--json")
    assert one_line(r.stderr) == f"error: {message}"
    assert r.returncode == 3
    assert r.stdout == ""


def test_yaml_error_line_is_the_parsers_line(write_inventory):
    """The reported line is the one the YAML parser points at (1-based)."""
    text = edit("    hosts: [t1.example.internal]\n", "    hosts: [t1.example.internal\n")
    with pytest.raises(yaml.YAMLError) as parsed:
        yaml.safe_load(text)
    line = parsed.value.problem_mark.line + 1
    with pytest.raises(InventoryError) as e:
        inventory.load(write_inventory(text))
    assert str(e.value).startswith(f"{F}:{line}: invalid YAML: ")
    assert line == 14


def test_missing_file(mlctl, tmp_path):
    missing = tmp_path / "nope.yaml"
    r = mlctl("--inventory", str(missing), "test", "config")
    assert one_line(r.stderr) == f"error: {missing}: inventory file not found"
    assert r.returncode == 3


def test_no_inventory_anywhere(mlctl, tmp_path):
    r = mlctl("test", "config")
    line = one_line(r.stderr)
    assert line.startswith(f"error: {F} not found in {tmp_path.resolve()} or its parents")
    assert line.endswith("— run `mlctl init` or pass --inventory PATH")
    assert r.returncode == 3


def test_unknown_environment_lists_known_ones(mlctl, write_inventory):
    write_inventory()
    r = mlctl("nosuch", "status")  # found in the working directory; fails before the task loads
    assert one_line(r.stderr) == "error: unknown environment 'nosuch' (known: dev, test, live)"
    assert r.returncode == 3


def test_inventory_from_env_var_and_parent_dir(write_inventory, tmp_path, monkeypatch):
    path = write_inventory()
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert inventory.find(start=deep) == path
    monkeypatch.setenv("MLCTL_INVENTORY", str(path))
    assert inventory.find(start=tmp_path / "elsewhere") == path.resolve()
    assert inventory.find(str(path)) == path.resolve()


def test_repository_inventory_is_valid():
    from tests.unit.conftest import REPO

    inv = inventory.load(REPO / F)
    assert inv.environments == ["dev", "test", "live"]
    for name in inv.environments:
        inventory.resolve(inv, name, {}, {})
    live = inventory.resolve(inv, "live", {}, {})
    assert live["protected"] is True and live.color == "red"
    assert inventory.resolve(inv, "dev", {}, {}).local


# ---------------------------------------------------------------- precedence

LAYERED = edit(
    "  user: deploy\n",
    "  user: deploy\n  keep_releases: 6\n  timeouts: {connect: 6}\n",
    edit(
        "    hosts: [t1.example.internal]\n",
        "    hosts: [t1.example.internal]\n    keep_releases: 7\n" "    timeouts: {connect: 7}\n",
    ),
)


@pytest.mark.parametrize(
    ("text", "environ", "flags", "value", "source"),
    [
        (BASE, {}, {}, 5, "built-in"),
        (
            edit(
                "  user: deploy\n", "  user: deploy\n  keep_releases: 6\n  timeouts: {connect: 6}\n"
            ),
            {},
            {},
            6,
            "defaults",
        ),
        (LAYERED, {}, {}, 7, "environments.test"),
        (
            LAYERED,
            {"MLCTL_KEEP_RELEASES": "8", "MLCTL_TIMEOUTS__CONNECT": "8"},
            {},
            8,
            "environment variables",
        ),
        (
            LAYERED,
            {"MLCTL_KEEP_RELEASES": "8", "MLCTL_TIMEOUTS__CONNECT": "8"},
            {"keep_releases": "9", "timeouts.connect": "9"},
            9,
            "flags",
        ),
    ],
    ids=["built-in", "defaults", "environment", "MLCTL_", "--set"],
)
def test_precedence_five_layers(write_inventory, text, environ, flags, value, source):
    cfg = inventory.resolve(inventory.load(write_inventory(text)), "test", environ, flags)
    assert cfg["keep_releases"] == value
    assert cfg.sources["keep_releases"] == source
    connect = 10.0 if value == 5 else float(value)  # timeouts.connect's built-in is 10
    assert cfg["timeouts"]["connect"] == connect
    assert cfg["timeouts"]["command"] == 900.0  # a sibling of an overridden nested key survives


def test_precedence_through_the_cli(mlctl, write_inventory):
    path = write_inventory(LAYERED)
    env = {"MLCTL_KEEP_RELEASES": "8", "MLCTL_TIMEOUTS__CONNECT": "8"}
    r = mlctl("-i", str(path), "test", "config", "--json", env=env)
    data = json.loads(r.stdout)
    assert (data["settings"]["keep_releases"], data["settings"]["timeouts"]["connect"]) == (8, 8.0)
    assert data["sources"]["timeouts.connect"] == "environment variables"
    # --set before or after the task name: the flag wins over the variable
    for args in (
        ["--set", "keep_releases=9", "test", "config", "--json"],
        ["test", "config", "--json", "--set", "keep_releases=9"],
    ):
        data = json.loads(mlctl("-i", str(path), *args, env=env).stdout)
        assert data["settings"]["keep_releases"] == 9
        assert data["sources"]["keep_releases"] == "flags"
        assert data["settings"]["timeouts"]["connect"] == 8.0


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        ({"MLCTL_KEEP_RELEASES": "abc"}, [], "MLCTL_KEEP_RELEASES: expected int, got 'abc'"),
        (
            {"MLCTL_TIMEOUTS__CONNECT": "soon"},
            [],
            "MLCTL_TIMEOUTS__CONNECT: expected float, got 'soon'",
        ),
        ({"MLCTL_PROTECTED": "maybe"}, [], "MLCTL_PROTECTED: expected bool, got 'maybe'"),
        (
            {"MLCTL_SERVICE": "upstart"},
            [],
            "MLCTL_SERVICE: must be one of systemd, pidfile (got 'upstart')",
        ),
        ({"MLCTL_KEEP_RELEASE": "3"}, [], "MLCTL_KEEP_RELEASE: unknown setting keep_release"),
        (
            {"MLCTL_DEPLOY_TO": "/"},
            [],
            "MLCTL_DEPLOY_TO: refusing to manage '/' (too broad: use a directory of its own)",
        ),
        (
            {"MLCTL_HOSTS": "a b"},
            [],
            "MLCTL_HOSTS: hosts[0]: invalid host 'a b' (expected an ssh alias or user@host:port)",
        ),
        ({}, ["--set", "keep_releases=many"], "--set keep_releases: expected int, got 'many'"),
        ({}, ["--set", "keep_releases"], "--set 'keep_releases': expected KEY=VALUE"),
        (
            {},
            ["--set", "deploy_to=/etc"],
            "--set deploy_to: refusing to manage '/etc' (too broad: use a directory of its own)",
        ),
    ],
)
def test_bad_override_one_line(mlctl, write_inventory, env, args, message):
    r = mlctl("-i", str(write_inventory()), *args, "test", "config", env=env)
    assert one_line(r.stderr) == f"error: {message}"
    assert r.returncode in (2, 3)
    assert r.returncode == (2 if "KEY=VALUE" in message else 3)


def test_control_variables_are_not_settings(write_inventory):
    """MLCTL_ENV selects an environment; it must not replace the `env:` settings map."""
    inv = inventory.load(write_inventory())
    environ = {
        "MLCTL_ENV": "live",
        "MLCTL_CONFIRM": "live",
        "MLCTL_USER_NAME": "alice",
        "MLCTL_LOG_DIR": "/tmp/x",
        "MLCTL_FARM_DIR": "/tmp/farm",
    }
    cfg = inventory.resolve(inv, "test", environ, {})
    assert cfg["env"] == {}


def test_free_form_keys_keep_their_case(write_inventory):
    inv = inventory.load(write_inventory())
    cfg = inventory.resolve(
        inv, "test", {"MLCTL_SECRETS__API_KEY": "s3cret-value", "MLCTL_ENV__DJANGO_DEBUG": "0"}, {}
    )
    assert cfg["secrets"] == {"API_KEY": "s3cret-value"}
    assert cfg["env"] == {"DJANGO_DEBUG": "0"}
    assert "s3cret-value" in cfg.secret_values()


def test_unknown_environment_in_process(write_inventory):
    with pytest.raises(UnknownEnvironment) as e:
        inventory.resolve(inventory.load(write_inventory()), "prod", {}, {})
    assert str(e.value) == "unknown environment 'prod' (known: dev, test, live)"
    assert e.value.exit_code == 3
