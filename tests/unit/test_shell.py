"""Command builders: exact strings with hostile values, and proof that /bin/sh runs them safely."""

from __future__ import annotations

import subprocess
import time

import pytest

from mlctl.commands import db, lock, release, service
from mlctl.config.layout import Layout
from mlctl.core.shell import MASK, Assign, Cmd, mask, script, seq, sudo, wrap

HOSTILE = [
    ("a;b", "'a;b'"),
    ("$(id)", "'$(id)'"),
    ("`id`", "'`id`'"),
    ("a\nb", "'a\nb'"),
    ("a b", "'a b'"),
    ("it's", "'it'\"'\"'s'"),
    ('say "hi"', "'say \"hi\"'"),
    ("-rf", "-rf"),  # quoting cannot stop a word from being read as an option
    ("", "''"),
    ("*", "'*'"),
    ("a|b&c>d", "'a|b&c>d'"),
]

# The .env is read line by line and exported as data, never sourced as shell.
LOAD_ENV = (
    'while IFS= read -r _l || [ -n "$_l" ]; do'
    ' _l="${_l#"${_l%%[![:space:]]*}"}";'
    ' case "$_l" in "export "*) _l="${_l#export }"; _l="${_l#"${_l%%[![:space:]]*}"}" ;; esac;'
    ' case "$_l" in *=*) ;; *) continue ;; esac;'
    ' _k="${_l%%=*}"; _k="${_k%"${_k##*[![:space:]]}"}"; _v="${_l#*=}";'
    ' case "$_k" in ""|[0-9]*|*[!A-Za-z0-9_]*) continue ;; esac;'
    ' _v="${_v#"${_v%%[![:space:]]*}"}"; _v="${_v%"${_v##*[![:space:]]}"}";'
    ' case "$_v" in \\"*\\"|\\\'*\\\') _v="${_v#?}"; _v="${_v%?}" ;; esac;'
    ' export "$_k=$_v"; done <'
)


@pytest.mark.parametrize(("value", "quoted"), HOSTILE, ids=[repr(v) for v, _ in HOSTILE])
def test_words_are_quoted(value, quoted):
    assert Cmd.of("echo", value).render() == f"echo {quoted}"
    assert Cmd.of("echo", value).display() == f"echo {quoted}"


def test_composition_keeps_operators_raw_and_operands_quoted():
    c = Cmd.of("cd", "/srv/my app").then(Cmd.of("ls", ";")).otherwise(Cmd.of("echo", "$(id)"))
    assert c.render() == "cd '/srv/my app' && ls ';' || echo '$(id)'"
    assert Cmd.of("cat", "a b").pipe(Cmd.of("wc", "-l")).render() == "cat 'a b' | wc -l"
    assert Cmd.of("cat").redirect("/x y").render() == "cat > '/x y'"
    assert Cmd.of("cat").redirect("/x", append=True).render() == "cat >> /x"
    assert Cmd.of("cat").stdin_from("`f`").render() == "cat < '`f`'"
    assert Cmd.of("true").quiet().render() == "true >/dev/null 2>&1"
    assert Cmd.of("ls").in_dir("/a;b").render() == "cd '/a;b' && ls"
    assert seq(Cmd.of("a"), Cmd.of("b"), Cmd.of("c")).render() == "a && b && c"
    assert script(Cmd.of("a"), Cmd.of("b c")).render() == "set -e; a ; 'b c' ;"


def test_sudo_wraps_the_whole_command_once():
    c = Cmd.of("cd", "/srv/a b").then(Cmd.of("echo", "$(id)"))
    q = "'\"'\"'"  # a single quote inside the single-quoted sh -c argument
    assert sudo(c).render() == f"sudo -n sh -c 'cd {q}/srv/a b{q} && echo {q}$(id){q}'"
    assert sudo(c, user="www-data").render().startswith("sudo -n -u www-data sh -c 'cd ")
    assert sudo(c).render().count("sudo") == 1
    assert "sudo cd" not in sudo(c).render()
    assert wrap(Cmd.of("true"), timeout=30.5).render() == "timeout -k 5 30 sh -c true"
    assert wrap(Cmd.of("true"), as_root=True, timeout=0.2).render() == (
        "sudo -n timeout -k 5 1 sh -c true"
    )
    assert wrap(Cmd.of("true"), user="app").render() == "sudo -n -u app sh -c true"
    assert wrap(Cmd.of("true")).render() == "sh -c true"


def test_mask_plain_text():
    assert mask("token abcd and abcdef", ["abcd", "abcdef"]) == f"token {MASK} and {MASK}"
    assert mask("a b", ["a", ""]) == "a b"  # too short to mask without wrecking the text


@pytest.mark.parametrize("name", ["1X", "A-B", "A B", "É", "X²", "", "A;B"])
def test_env_names_are_validated(name):
    with pytest.raises(ValueError):
        Assign(name, "v")


# ---------------------------------------------------------------- safety, not just strings

CANARY_VALUES = [
    "$(touch canary)",
    "`touch canary`",
    "x; touch canary",
    "x\ntouch canary",
    "x' ; touch canary ; '",
    'x" ; touch canary ; "',
    "x && touch canary",
    "-rf",
    "-n",
]


def sh(cmd: Cmd, cwd, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        ["/bin/sh", "-c", cmd.render()],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=20,
    )


@pytest.mark.parametrize("value", CANARY_VALUES)
def test_values_reach_the_program_verbatim(tmp_path, value):
    plain = Cmd.of("printf", "%s\n", value)
    nested = wrap(seq(Cmd.of("true"), plain).with_env({"V": value}), timeout=10)
    for cmd in (plain, nested, wrap(wrap(plain))):
        r = sh(cmd, tmp_path)
        assert r.returncode == 0, r.stderr
        assert r.stdout == value + "\n"
        assert not (tmp_path / "canary").exists()
    # what sudo would run (the same `sh -c '…'`, after `sudo -n`)
    assert sudo(plain).render().startswith("sudo -n sh -c ")
    r = subprocess.run(  # noqa: S602 — the shell is the point: it runs what sudo would
        sudo(plain).render()[len("sudo -n ") :],
        shell=True,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert r.stdout == value + "\n" and not (tmp_path / "canary").exists()


def test_env_values_reach_the_environment_verbatim(tmp_path):
    for value in CANARY_VALUES:
        cmd = seq(Cmd.of("true"), Cmd((Cmd.of("printenv", "V"),))).with_env({"V": value})
        assert sh(wrap(cmd, timeout=5), tmp_path).stdout == value + "\n"
    assert not (tmp_path / "canary").exists()


# ---------------------------------------------------------------- the builders under DEPLOY_TO

RID = "20240101120000-abcdef1"


def test_release_builders_exact():
    lay = Layout("/srv/my app")
    rel = f"'/srv/my app/releases/{RID}'"
    assert release.switch(lay, RID).render() == (
        f"set -e; test -d {rel} || {{ echo 'release {RID} is not on this host' >&2; exit 1; }} ; "
        f"ln -sfn releases/{RID} '/srv/my app/current.new-{RID}' ; "
        f"mv -Tf '/srv/my app/current.new-{RID}' '/srv/my app/current' ;"
    )
    assert release.remove_release(lay, RID).render() == f"rm -rf {rel}"
    assert release.link_venv(lay, RID, "/srv/my app/venvs/h").render() == (
        f"ln -sfn '/srv/my app/venvs/h' '/srv/my app/releases/{RID}/.venv'"
    )
    assert release.manage(f"/srv/app/releases/{RID}", "migrate", "--noinput").render() == (
        f"cd /srv/app/releases/{RID} && {LOAD_ENV} ./.env && "
        "./.venv/bin/python manage.py migrate --noinput"
    )
    assert release.write_file("/srv/a;b", "0640").render() == (
        "set -e; cat > '/srv/a;b.tmp' ; chmod 0640 '/srv/a;b.tmp' ; "
        "mv -f '/srv/a;b.tmp' '/srv/a;b' ;"
    )
    with pytest.raises(Exception, match="invalid release id"):
        release.remove_release(lay, "../../etc")


def test_scripts_splice_into_one_set_e_script():
    inner = script(Cmd.of("a"), Cmd.of("b c"))
    assert script(Cmd.of("x"), inner, Cmd.of("y")).render() == "set -e; x ; a ; 'b c' ; y ;"
    # Only mlctl's own `set -e;` marker splices: a word that merely reads the same is quoted.
    assert script(Cmd.of("set -e;")).render() == "set -e; 'set -e;' ;"


def test_record_builders_exact():
    lay = Layout("/srv/app")
    assert release.put_file("/srv/a b", "x'y\n", "0600").render() == (
        "set -e; printf %s 'x'\"'\"'y\n' > '/srv/a b.tmp' ; chmod 0600 '/srv/a b.tmp' ; "
        "mv -f '/srv/a b.tmp' '/srv/a b' ;"
    )
    meta = {"id": RID, "status": "good"}
    assert release.write_meta(lay, meta).render() == (
        "set -e; mkdir -p /srv/app/.mlctl/releases ; printf %s "
        f'\'{{\n "id": "{RID}",\n "status": "good"\n}}\n\' > '
        f"/srv/app/.mlctl/releases/{RID}.json.tmp ; chmod 0644 "
        f"/srv/app/.mlctl/releases/{RID}.json.tmp ; mv -f /srv/app/.mlctl/releases/{RID}.json.tmp "
        f"/srv/app/.mlctl/releases/{RID}.json ;"
    )
    assert release.append_history(lay, {"a": "$(x)"}).render() == (
        "set -e; mkdir -p /srv/app/.mlctl ; "
        "printf '%s\\n' '{\"a\": \"$(x)\"}' >> /srv/app/.mlctl/history.jsonl ;"
    )


def test_restart_and_probe_exact_and_its_exit_status(tmp_path):
    cmd = service.restart_and_probe(Cmd.of("systemctl", "restart", "u"), Cmd.of("probe", "r 1"))
    assert cmd.render() == (
        "probe 'r 1' & probe=$!; systemctl restart u "
        '|| { kill "$probe" 2>/dev/null; exit 1; }; wait "$probe"'
    )
    logged = service.restart_and_probe(
        Cmd.of("systemctl", "restart", "u"), Cmd.of("probe"), None, Cmd.of("journalctl")
    )
    assert logged.render() == (
        "probe & probe=$!; systemctl restart u "
        '|| { kill "$probe" 2>/dev/null; exit 1; }; wait "$probe" || { rc=$?; echo '
        "'--- the app'\"'\"'s log since the restart:' >&2; journalctl >&2; exit \"$rc\"; }"
    )

    explained = service.restart_and_probe(
        Cmd.of("false"), Cmd.of("sleep", "30"), service.unit_log_tail("gunicorn-app")
    )
    assert explained.render() == (
        "sleep 30 & probe=$!; false "
        '|| { kill "$probe" 2>/dev/null; journalctl _SYSTEMD_UNIT=gunicorn-app.service -n 3 '
        '-o cat >&2; exit 1; }; wait "$probe"'
    )

    def run(restart: str, *probe: str) -> int:
        built = service.restart_and_probe(Cmd.of("sh", "-c", restart), Cmd.of(*probe))
        return sh(script(built), tmp_path).returncode

    assert run("true", "true") == 0
    assert run("true", "sh", "-c", "exit 69") == 69  # the probe's verdict is the step's
    told = service.restart_and_probe(
        Cmd.of("true"), Cmd.of("sh", "-c", "exit 69"), None, Cmd.of("echo", "Boom: app")
    )
    p = sh(script(told), tmp_path)
    assert p.returncode == 69 and p.stderr.splitlines()[-2:] == [service.APP_LOG_MARK, "Boom: app"]
    # A failed restart exits 1 at once and stops the probe (which would poll for a long time):
    # sh's pipes close only when the killed probe has gone.
    start = time.monotonic()
    assert run("exit 5", "sleep", "30") == 1
    assert time.monotonic() - start < 10


def test_lock_and_db_builders_exact():
    lay = Layout("/srv/app")
    assert lock.release(lay, "run'1").render() == (
        'if grep -qF \'"run_id": "run\'"\'"\'1"\' /srv/app/.mlctl/lock/holder.json 2>/dev/null; '
        "then rm -rf /srv/app/.mlctl/lock ; fi"
    )
    assert lock.take_over(lay, "r1").render() == (
        "set -e; mv -T /srv/app/.mlctl/lock /srv/app/.mlctl/lock.stale-r1 ; "
        "rm -rf /srv/app/.mlctl/lock.stale-r1 ;"
    )
    assert db.snapshot("postgresql", "/srv/app/shared/.env", "/b/x $(id).dump").render() == (
        f"{LOAD_ENV} /srv/app/shared/.env && pg_dump -Fc --no-owner --no-acl "
        "-f '/b/x $(id).dump' && test -s '/b/x $(id).dump' && "
        "pg_restore --list '/b/x $(id).dump' >/dev/null 2>&1"
    )
    assert service.systemd_restart("gunicorn-app").render() == (
        "systemctl restart gunicorn-app.service"
    )
    assert service.nginx_test_and_reload().render() == "nginx -t -q && systemctl reload nginx"


def test_builders_run_safely_in_a_hostile_directory(tmp_path):
    """The real builders, run by /bin/sh under a DEPLOY_TO full of shell syntax."""
    root = tmp_path / "d ;x'y\"z $(touch canary) `touch canary`"
    lay = Layout(str(root))
    (root / "releases" / RID).mkdir(parents=True)
    (root / "shared").mkdir()
    r = sh(release.finish_tree(lay, RID, [".env"], ["media"]), tmp_path)
    assert r.returncode == 0, r.stderr
    rel = root / "releases" / RID
    assert (rel / "REVISION").read_text() == RID + "\n"
    assert (rel / "media").resolve() == (root / "shared" / "media").resolve()
    assert sh(release.switch(lay, RID), tmp_path).returncode == 0
    assert (root / "current").resolve() == rel.resolve()
    gone = "20240101120001-abcdef2"
    refused = sh(release.switch(lay, gone), tmp_path)
    assert refused.returncode == 1 and f"release {gone} is not on this host" in refused.stderr
    assert (root / "current").resolve() == rel.resolve()
    got = sh(lock.acquire(lay), tmp_path, stdin='{"run_id": "r1"}')
    assert got.returncode == 0, got.stderr
    held = sh(lock.acquire(lay), tmp_path, stdin='{"run_id": "r2"}')
    assert (held.returncode, held.stdout) == (lock.HELD, '{"run_id": "r1"}')
    assert sh(lock.release(lay, "r1"), tmp_path).returncode == 0
    assert not (root / ".mlctl" / "lock").exists()
    # mkdir failing for another reason is an error, not "held" (here: a file in the way)
    (root / ".mlctl" / "lock").write_text("")
    blocked = sh(lock.acquire(lay), tmp_path, stdin='{"run_id": "r3"}')
    assert blocked.returncode == 1 and "File exists" in blocked.stderr, blocked
    (root / ".mlctl" / "lock").unlink()
    assert sh(release.remove_release(lay, RID), tmp_path).returncode == 0
    assert not rel.exists() and root.is_dir()
    assert not (tmp_path / "canary").exists() and not (root / "canary").exists()
