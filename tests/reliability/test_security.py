"""Security: host keys, secrets never shown, root refused on live, modes, confirmation, history."""

from __future__ import annotations

import json
import subprocess
import threading

import pytest

from .harness import D

pytestmark = [pytest.mark.reliability, pytest.mark.hosts]

SENTINEL = "RelSentinel-7f3a9c1e-DO-NOT-PRINT"


def last_line(p) -> str:
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def journal_lines(world, run_id_prefix: str = "") -> list[dict]:
    path = world.log_dir / "mlctl.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(x) for x in lines]


def new_remote_steps(world, before: int) -> list[dict]:
    return [r for r in journal_lines(world)[before:] if r.get("command")]


@pytest.mark.parametrize("which", ["unknown", "changed"])
def test_unknown_or_changed_host_key_refuses_the_connection(case, which):
    kh = case.tmp / f"known_hosts.{which}"
    if which == "unknown":
        kh.write_text("")
    else:
        key = case.tmp / "other_key"
        key.unlink(missing_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        pub = (key.with_suffix(".pub")).read_text().split()
        kh.write_text("".join(f"{h.address} {pub[0]} {pub[1]}\n" for h in case.hosts))
    before = len(journal_lines(case))
    p = case.fails("test", "deploy", "--set", f"known_hosts={kh}")
    assert p.returncode == 5, p.stderr
    assert ("unknown host key" if which == "unknown" else "does not match") in last_line(p)
    assert not new_remote_steps(case, before), "a command ran on an unverified host"


def test_secrets_never_appear_with_verbose_failing_run(case):
    """Sentinel values (an inventory secret, the generated SECRET_KEY and database password)
    during a failing run with -v: not in stdout, stderr, the local log, the hosts' history,
    journal or process list."""
    h1 = case.hosts[0]
    secret = ("--set", f"secrets.REL_SENTINEL={SENTINEL}")
    case.sh(h1, f"cp -p {D}/shared/.env /root/env.sec.bak")
    env = dict(
        line.split("=", 1)
        for line in case.sh(h1, f"cat {D}/shared/.env").splitlines()
        if "=" in line
    )
    values = [SENTINEL, env["SECRET_KEY"], env["PGPASSWORD"]]
    seen: list[str] = []
    stop = threading.Event()

    def watch_ps():
        while not stop.is_set():
            seen.append(case.sh(h1, "ps -eo args", check=False))

    try:
        case.ok("test", "setup", "--host", h1.address, *secret)
        watcher = threading.Thread(target=watch_ps, daemon=True)
        watcher.start()
        leak = "grep -E 'PGPASSWORD|SECRET_KEY|REL_SENTINEL' .env >&2; exit 3"
        p = case.mlctl(
            "-v",
            "test",
            "deploy",
            "--host",
            h1.address,
            *secret,
            "--set",
            f"hooks.after_build={leak}",
        )
        stop.set()
        watcher.join(30)
        assert p.returncode != 0 and "after_build" in last_line(p), p.stderr
        remote = case.sh(
            h1, f"cat {D}/.mlctl/history.jsonl; journalctl --no-pager -q -o cat 2>/dev/null"
        )
        local = "".join(f.read_text() for f in case.log_dir.glob("*") if f.is_file())
        places = {"stdout": p.stdout, "stderr": p.stderr, "local log": local, "remote": remote}
        places["process list"] = "\n".join(seen)
        for name, text in places.items():
            for v in values:
                assert v not in text, f"a secret ({v[:6]}…) appears in {name}"
        assert len(seen) > 3
    finally:
        stop.set()
        case.sh(h1, f"cp -p /root/env.sec.bak {D}/shared/.env")


def test_connecting_to_live_as_root_is_refused(case):
    before = len(journal_lines(case))
    p = case.fails("live", "deploy", "--yes", "--set", "user=root", env={"MLCTL_CONFIRM": "live"})
    assert p.returncode == 4 and "as root" in last_line(p), p.stderr
    assert not new_remote_steps(case, before)


@pytest.mark.parametrize(
    "args,env",
    [((), {"MLCTL_CONFIRM": "live"}), (("--yes",), {}), (("--yes",), {"MLCTL_CONFIRM": "test"})],
    ids=["no-yes", "no-token", "wrong-token"],
)
def test_live_deploy_without_terminal_and_token_is_refused(case, args, env):
    before = len(journal_lines(case))
    p = case.fails("live", "deploy", *args, env=env)
    assert p.returncode == 4 and "confirmation" in last_line(p), p.stderr
    assert not new_remote_steps(case, before)


def test_modes_after_deploy(case):
    for h in case.hosts:
        assert case.sh(h, f"stat -c '%a %U %G' {D}/shared/.env") == "640 root www-data"
        writable = case.sh(
            h,
            f"find -L {D}/current {D}/shared {D}/releases -xdev -perm -o+w "
            "! -type l 2>/dev/null | head",
        )
        assert not writable, f"{h}: world-writable: {writable}"
        www = "runuser -u www-data -- "
        case.sh(h, f"{www} touch {D}/shared/media/.rel-probe && rm {D}/shared/media/.rel-probe")
        for target in (
            "current/.rel-probe",
            "current/notes/.rel-probe",
            "current/staticfiles/.rel-probe",
            "current/.venv/.rel-probe",
        ):
            r = case.farm.ssh(h, f"{www} touch {D}/{target}")
            assert r.returncode != 0, f"{h}: www-data can write {target}"
        assert case.farm.ssh(h, f"{www} cat {D}/shared/.env >/dev/null").returncode == 0
        assert case.farm.ssh(h, f"runuser -u nobody -- cat {D}/shared/.env").returncode != 0
