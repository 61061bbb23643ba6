"""Protected-environment guards: allowed users, typed name, --yes + MLCTL_CONFIRM, root."""

from __future__ import annotations

import time

import pytest

from mlctl.config import inventory
from mlctl.core.errors import ConnectError, GuardRefused
from mlctl.tasks import guards
from mlctl.transport.session import Session
from tests.unit.conftest import BASE, one_line


@pytest.fixture
def envs(write_inventory):
    inv = inventory.load(write_inventory())
    return lambda name, **flags: inventory.resolve(inv, name, {}, flags)


def never_ask(prompt, color):
    raise AssertionError(f"must not prompt: {prompt}")


def test_refused_without_a_terminal(envs, monkeypatch):
    monkeypatch.setenv("MLCTL_USER_NAME", "alice")
    with pytest.raises(GuardRefused) as e:
        guards.confirm(envs("live"), "deploy", interactive=False, ask=never_ask, environ={})
    assert str(e.value) == (
        "deploy on protected environment live needs confirmation — "
        "without a terminal pass --yes and set MLCTL_CONFIRM=live"
    )
    assert e.value.exit_code == 4


@pytest.mark.parametrize("confirm_var", [None, "test", "LIVE", ""])
def test_yes_alone_is_not_enough(envs, monkeypatch, confirm_var):
    monkeypatch.setenv("MLCTL_USER_NAME", "alice")
    environ = {} if confirm_var is None else {"MLCTL_CONFIRM": confirm_var}
    with pytest.raises(GuardRefused):
        guards.confirm(
            envs("live"), "deploy", yes=True, interactive=False, ask=never_ask, environ=environ
        )


def test_yes_and_confirm_variable_accepted(envs, monkeypatch):
    monkeypatch.setenv("MLCTL_USER_NAME", "alice")
    guards.confirm(
        envs("live"),
        "deploy",
        yes=True,
        interactive=False,
        ask=never_ask,
        environ={"MLCTL_CONFIRM": "live"},
    )


def test_user_not_allowed(envs, monkeypatch):
    monkeypatch.setenv("MLCTL_USER_NAME", "mallory")
    with pytest.raises(GuardRefused) as e:
        guards.confirm(
            envs("live"),
            "rollback",
            yes=True,
            interactive=False,
            ask=never_ask,
            environ={"MLCTL_CONFIRM": "live"},
        )
    assert str(e.value) == "user 'mallory' may not rollback live (allowed: alice)"


@pytest.mark.parametrize("typed", ["test", "LIVE", "", "live now", "lve"])
def test_wrong_typed_name(envs, monkeypatch, typed):
    monkeypatch.setenv("MLCTL_USER_NAME", "alice")
    prompts = []

    def ask(prompt, color):
        prompts.append((prompt, color))
        return typed

    with pytest.raises(GuardRefused) as e:
        guards.confirm(envs("live"), "deploy", interactive=True, ask=ask, environ={})
    assert str(e.value) == "confirmation did not match 'live'; nothing was changed"
    assert prompts == [
        ("DEPLOY LIVE (w1.example.internal, w2.example.internal) — type 'live' " "to go on:", "red")
    ]


def test_right_typed_name(envs, monkeypatch):
    monkeypatch.setenv("MLCTL_USER_NAME", "alice")
    asked = []
    guards.confirm(
        envs("live"),
        "migrate",
        interactive=True,
        ask=lambda p, c: asked.append(p) or " live\n",
        environ={},
    )
    assert len(asked) == 1


@pytest.mark.parametrize("action", sorted(guards.GUARDED))
def test_non_protected_never_asks(envs, monkeypatch, action):
    monkeypatch.setenv("MLCTL_USER_NAME", "mallory")
    for name in ("dev", "test"):
        guards.confirm(envs(name), action, interactive=True, ask=never_ask, environ={})
        guards.confirm(envs(name), action, interactive=False, ask=never_ask, environ={})


def test_read_only_actions_on_protected_never_ask(envs, monkeypatch):
    monkeypatch.setenv("MLCTL_USER_NAME", "mallory")
    for action in ("status", "diag", "check", "logs", "releases"):
        guards.confirm(envs("live"), action, interactive=False, ask=never_ask, environ={})


def test_protected_by_variable(envs, monkeypatch):
    """MLCTL_PROTECTED / --set protected=true turn the guard on for any environment."""
    monkeypatch.setenv("MLCTL_USER_NAME", "mallory")
    with pytest.raises(GuardRefused):
        guards.confirm(
            envs("test", protected="true"), "deploy", interactive=False, ask=never_ask, environ={}
        )


# ---------------------------------------------------------------- through the real CLI


def test_cli_deploy_live_without_terminal(mlctl, write_inventory):
    r = mlctl("-i", str(write_inventory()), "live", "deploy", env={"MLCTL_USER_NAME": "alice"})
    assert one_line(r.stderr) == (
        "error: deploy on protected environment live needs confirmation "
        "— without a terminal pass --yes and set MLCTL_CONFIRM=live"
    )
    assert r.returncode == 4


def test_cli_skip_tests_refused_on_protected(mlctl, write_inventory):
    r = mlctl(
        "-i",
        str(write_inventory()),
        "live",
        "deploy",
        "--skip-tests",
        "--yes",
        env={"MLCTL_USER_NAME": "alice", "MLCTL_CONFIRM": "live"},
    )
    assert one_line(r.stderr) == "error: --skip-tests is refused on protected environment live"
    assert r.returncode == 4


def test_cli_user_not_allowed(mlctl, write_inventory):
    r = mlctl(
        "-i",
        str(write_inventory()),
        "live",
        "rollback",
        "--yes",
        env={"MLCTL_USER_NAME": "mallory", "MLCTL_CONFIRM": "live"},
    )
    assert one_line(r.stderr) == "error: user 'mallory' may not rollback live (allowed: alice)"
    assert r.returncode == 4


# ---------------------------------------------------------------- root on protected environments

ROOT = BASE.replace(
    "      - w1.example.internal\n      - w2.example.internal\n",
    "      - root@192.0.2.1\n",
).replace(
    "  user: deploy\n",
    "  user: deploy\n  ssh_config: ssh_config\n  known_hosts: known_hosts\n"
    "  timeouts: {connect: 1}\n",
)


@pytest.mark.parametrize(
    "text",
    [
        ROOT,
        ROOT.replace("      - root@192.0.2.1\n", "      - 192.0.2.1\n    user: root\n"),
        ROOT.replace("      - root@192.0.2.1\n", "      - web9\n").replace(
            "  user: deploy\n", ""
        ),  # the user comes from ssh_config
    ],
    ids=["user@host", "inventory user", "ssh_config User"],
)
def test_root_refused_before_any_network_io(write_inventory, tmp_path, text):
    (tmp_path / "ssh_config").write_text("Host web9\n  HostName 192.0.2.1\n  User root\n")
    cfg = inventory.resolve(inventory.load(write_inventory(text)), "live", {}, {})
    sess = Session(cfg, "deploy", log_dir=str(tmp_path / "logs"))
    start = time.monotonic()
    with pytest.raises(GuardRefused) as e:
        sess.connect()
    assert time.monotonic() - start < 0.5
    assert "connecting as root to protected environment live is refused" in str(e.value)
    assert str(e.value).endswith("— set a deploy user, or allow_root: true")
    assert all(h.c is None for h in sess.hosts)


def test_root_allowed_when_the_inventory_says_so(write_inventory, tmp_path):
    text = ROOT + "    allow_root: true\n"
    cfg = inventory.resolve(inventory.load(write_inventory(text)), "live", {}, {})
    sess = Session(cfg, "deploy", log_dir=str(tmp_path / "logs"))
    start = time.monotonic()
    with pytest.raises(ConnectError):  # it got as far as the network: the guard let it through
        sess.connect()
    assert time.monotonic() - start < 3.5
