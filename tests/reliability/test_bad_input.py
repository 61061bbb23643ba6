"""Bad input: shell metacharacters, dangerous paths, the wrong server, broken code — refused or
harmless; nothing outside releases/ is ever deleted and broken code never becomes current."""

from __future__ import annotations

import pytest

from .harness import D

pytestmark = [pytest.mark.reliability, pytest.mark.hosts]

PWNED = "/var/tmp/rel-pwned"


def evil(tag: str) -> str:
    """Every metacharacter the issue names: ; $(...) backticks newline spaces, and quotes."""
    return (
        f"x; touch {PWNED}-{tag}-semi $(touch {PWNED}-{tag}-dollar) `touch {PWNED}-{tag}-tick`"
        f"\ntouch {PWNED}-{tag}-newline 'q\" z"
    )


def no_canary(world) -> None:
    for h in world.hosts:
        found = world.sh(h, f"ls {PWNED}* 2>/dev/null || true")
        assert not found, f"{h}: a shell metacharacter was executed: {found}"


def last_line(p) -> str:
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def test_metacharacters_in_inventory_strings_never_run(case):
    h1 = case.hosts[0].address
    one = ("--host", h1)
    runs = [
        ("deploy", *one, "--set", f"health.url=http://127.0.0.1/{evil('url')}"),
        ("deploy", *one, "--set", f"app_user={evil('appuser')}"),
        ("deploy", *one, "--set", f"python={evil('python')}"),
        ("deploy", *one, "--set", f"deploy_to=/srv/rel x; touch {PWNED}-deployto 'q\" z"),
        ("deploy", *one, "--set", f"shared_files=.env,{evil('shared')}"),
        ("deploy", *one, "--set", f"shared_dirs=media,logs,{evil('dirs')}"),
        ("check", *one, "--set", f"health.host_header={evil('hosthdr')}"),
        ("diag", *one, "--set", f"deploy_to=/srv/a b; touch {PWNED}-diag"),
        ("lock", *one, "--set", f"deploy_to=/srv/a b; touch {PWNED}-lock"),
    ]
    for args in runs:
        p = case.mlctl("test", *args, "--set", "timeouts.health=2")
        assert "Traceback" not in p.stderr, p.stderr
        no_canary(case)
    data = case.inventory_data()
    data["project"]["settings_module"] = evil("settings")
    data["project"]["requirements"] = evil("req")
    inv = case.write_inventory(data, case.tmp / "evil.yaml")
    p = case.mlctl("test", "deploy", *one, inv=inv)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    no_canary(case)


def test_metacharacters_in_env_values_are_not_evaluated_when_sourced(case):
    """A value in the shared .env (from `env:` or `secrets:`) is data, never shell code."""
    h1 = case.hosts[0]
    case.sh(h1, f"cp -p {D}/shared/.env /root/env.bak")
    try:
        case.ok("test", "setup", "--host", h1.address, "--set", f"env.REL_EVIL={evil('env')}")
        assert "REL_EVIL" in case.sh(h1, f"cat {D}/shared/.env")
        case.ok("test", "migrate", "--host", h1.address)
        case.ok("test", "snapshot", "--host", h1.address)
        no_canary(case)
    finally:
        case.sh(h1, f"cp -p /root/env.bak {D}/shared/.env")
        case.sh(h1, f"rm -f {D}/backups/db/manual-*")


@pytest.mark.parametrize("bad", ["/", "", "..", "~", "/srv/../", "/srv/djangoapp/..", "~/app"])
def test_dangerous_deploy_to_is_refused_before_connecting(case, bad):
    before = case.sh(case.hosts[0], f"ls -a / {D} {D}/releases | md5sum")
    p = case.fails("test", "deploy", "--set", f"deploy_to={bad}")
    assert p.returncode == 3 and "deploy_to" in last_line(p), p.stderr
    assert case.sh(case.hosts[0], f"ls -a / {D} {D}/releases | md5sum") == before


@pytest.mark.parametrize(
    "rid", ["../../etc", "20260101000000-abcdef0/../..", "../releases", "/", ".", ""]
)
def test_release_id_with_dot_dot_is_refused(case, rid):
    before = case.sh(case.hosts[0], f"ls -a / {D} {D}/releases | md5sum")
    p = case.fails("test", "rollback", "--to", rid, "--db", "code-only")
    assert "release" in last_line(p), p.stderr
    assert case.sh(case.hosts[0], f"ls -a / {D} {D}/releases | md5sum") == before


@pytest.mark.parametrize("key", ["shared_dirs", "shared_files"])
def test_shared_entry_escaping_the_release_is_refused_from_flags(case, key):
    """`--set`/MLCTL_* values get the same checks as the inventory's: no rm -rf outside."""
    outside = "/var/tmp/rel-outside"
    case.each(lambda h: case.sh(h, f"mkdir -p {outside} && touch {outside}/keep"))
    p = case.fails(
        "test",
        "deploy",
        "--host",
        case.hosts[0].address,
        "--set",
        f"{key}=media,logs,../../../../../var/tmp/rel-outside",
    )
    assert "Traceback" not in p.stderr
    for h in case.hosts:
        assert case.sh(h, f"ls {outside}") == "keep", f"{h}: {outside} was touched"


def test_unknown_key_or_missing_hosts_fail_before_connecting(case):
    data = case.inventory_data()
    data["environments"]["test"]["deploy_too"] = "/srv/x"
    p = case.fails("test", "deploy", inv=case.write_inventory(data, case.tmp / "typo.yaml"))
    assert "deploy_too: unknown key" in last_line(p), p.stderr
    data = case.inventory_data()
    data["environments"]["test"]["hosts"] = []
    p = case.fails("test", "deploy", inv=case.write_inventory(data, case.tmp / "nohosts.yaml"))
    assert "hosts" in last_line(p) and p.returncode == 3, p.stderr


def test_host_whose_marker_says_live_is_refused_by_test(case):
    h2 = case.hosts[1]
    case.sh(h2, f"echo live > {D}/.mlctl/marker")
    try:
        p = case.fails("test", "deploy")
        assert h2.address in last_line(p) and "belongs to 'live'" in last_line(p), p.stderr
    finally:
        case.sh(h2, f"echo test > {D}/.mlctl/marker")


SETTINGS = "djangoapp/settings.py"
BROKEN_CODE = {
    "syntax error": {"notes/views.py": "def broken(:\n    pass\n"},
    "check --deploy fails": {"append": "\nSILENCED_SYSTEM_CHECKS = []\n"},
    "conflicting migrations": {
        f"notes/migrations/0003_{side}.py": (
            "from django.db import migrations\n\n\nclass Migration(migrations.Migration):\n"
            '    dependencies = [("notes", "0002_seed_notes")]\n    operations = []\n'
        )
        for side in ("left", "right")
    },
}


@pytest.mark.parametrize("kind", list(BROKEN_CODE))
def test_broken_code_never_becomes_current(case, kind):
    files = dict(BROKEN_CODE[kind])
    if "append" in files:
        files = {SETTINGS: case.read(SETTINGS) + files.pop("append")}
    elif "notes/views.py" in files:
        files = {"notes/views.py": case.read("notes/views.py") + files["notes/views.py"]}
    with case.changed(files, kind) as commit:
        p = case.fails("test", "deploy", "--host", case.hosts[0].address)
        assert p.returncode in (6, 10), p.stderr
        for h in case.hosts:
            assert not [r for r in case.releases(h) if r.endswith(commit[:12])]
