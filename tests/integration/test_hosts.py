"""The test host farm itself: what deploy tests may rely on about the hosts.

Every test of the hosts runs on both images: the session `farm` (three hosts from
the machine's own root) and the session `farm13` (two Debian 13 hosts), through the
module's parametrized `farm` fixture below. The crash tests boot their own one-host
farms under a different prefix and subnet, so they can run while the session farm is up.
"""

from __future__ import annotations

import getpass
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paramiko
import pytest
import yaml
from fabric import Connection

from tests.hosts import Farm, FarmError, cleanup_leftovers, network
from tests.hosts.farm import cgroup_tops, placed, read_state
from tests.hosts.fixtures import require_boot
from tests.hosts.system import find_processes, is_alive, mounts_under

pytestmark = pytest.mark.hosts

REPO_ROOT = Path(__file__).resolve().parents[2]
CRASH_PREFIX, CRASH_NETWORK, _ = placed("mlcrash", "203.0.113.0/24", "")
OUTSIDE_ADDRESS = "192.0.2.1"  # anything outside the farm subnet must be unreachable


@pytest.fixture(scope="module", params=["machine", "debian13"])
def farm(request):
    """The session farm of each image in turn (shadows the session `farm` in this module)."""
    return request.getfixturevalue("farm13" if request.param == "debian13" else "farm")


def pinned_ssh(farm, address, command, user="deploy", known_hosts=None):
    """Plain OpenSSH, no config file: only the pinned known_hosts and the farm key."""
    options = [
        "StrictHostKeyChecking=yes",
        f"UserKnownHostsFile={known_hosts or farm.known_hosts}",
        "GlobalKnownHostsFile=/dev/null",
        "BatchMode=yes",
        "IdentitiesOnly=yes",
        "ConnectTimeout=5",
    ]
    argv = ["ssh", "-F", "/dev/null", "-i", str(farm.identity_file)]
    argv += [arg for option in options for arg in ("-o", option)]
    argv += [f"{user}@{address}", command]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
    )


def on_all_hosts(farm, run_one):
    with ThreadPoolExecutor(max_workers=len(farm.hosts)) as pool:
        return dict(zip(farm.hosts, pool.map(run_one, farm.hosts), strict=True))


FACTS_SCRIPT = r"""
echo "pid1=$(cat /proc/1/comm)"
echo "hostname=$(hostname)"
echo "system=$(systemctl is-system-running)"
echo "nginx=$(systemctl is-active nginx)"
cluster=$(pg_lsclusters -h | awk 'NR == 1 {print $1 "-" $2}')
echo "pg_cluster=$cluster"
echo "postgresql=$(systemctl is-active "postgresql@$cluster")"
echo "os=$(. /etc/os-release && echo "$ID $VERSION_ID")"
echo "python_version=$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
echo "www_data=$(getent passwd www-data | cut -d: -f1)"
echo "pg_query=$(cd / && runuser -u postgres -- psql -Atc 'select 40 + 2')"
echo "pg_listen=$(ss -Hltn 'sport = :5432' | awk '{print $4}' | sort | tr '\n' ' ')"
echo "default_route=$(ip route show default; ip -6 route show default)"
echo "path=$PATH"
echo "python=$(command -v python3)"
echo "nginx_http=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1/)"
"""


@pytest.fixture(scope="module")
def facts(farm):
    """key=value facts gathered from every host as root, one ssh per host.

    Other modules deploy onto the same session hosts, possibly earlier, so the
    assertions only cover what the farm guarantees whatever ran before.
    """

    def gather(host):
        result = farm.ssh(host, FACTS_SCRIPT, check=True)
        return dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)

    return on_all_hosts(farm, gather)


# --- access -------------------------------------------------------------------


def test_deploy_user_logs_in_with_pinned_host_key(farm):
    results = on_all_hosts(farm, lambda h: pinned_ssh(farm, h.address, "true"))
    for host, result in results.items():
        assert result.returncode == 0, f"{host}: {result.stderr}"


def test_deploy_user_has_passwordless_sudo(farm):
    results = on_all_hosts(farm, lambda h: pinned_ssh(farm, h.address, "sudo -n true"))
    for host, result in results.items():
        assert result.returncode == 0, f"{host}: {result.stderr}"


def test_ssh_config_aliases_reach_the_right_host(farm):
    for host in farm.hosts:
        argv = ["ssh", "-F", str(farm.ssh_config), host.name, "id -un; hostname"]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
        assert result.stdout.split() == ["deploy", host.name]


def test_password_authentication_is_off(farm):
    argv = [
        "ssh",
        "-F",
        str(farm.ssh_config),
        "-o",
        "PreferredAuthentications=password",
        farm.hosts[0].name,
        "true",
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert result.returncode == 255
    assert "Permission denied (publickey)" in result.stderr


def test_fabric_connects_with_the_pinned_known_hosts(farm):
    host = farm.hosts[0]
    with _fabric(farm, host.address, farm.known_hosts) as conn:
        result = conn.run("sudo -n id -un", hide=True, in_stream=False)
        assert result.stdout.strip() == "root"


# --- host key pinning -----------------------------------------------------------


def test_wrong_host_key_is_refused(farm, tmp_path):
    h1, h2 = farm.hosts[:2]
    keys = dict(line.split(" ", 1) for line in farm.known_hosts.read_text().splitlines())
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"{h1.address} {keys[h2.address]}\n")  # h2's key claimed for h1

    result = pinned_ssh(farm, h1.address, "true", known_hosts=wrong)
    assert result.returncode == 255
    assert "Host key verification failed" in result.stderr

    with pytest.raises(paramiko.BadHostKeyException):
        with _fabric(farm, h1.address, wrong) as conn:
            conn.run("true", hide=True, in_stream=False)


def test_unknown_host_key_is_refused(farm, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    result = pinned_ssh(farm, farm.hosts[0].address, "true", known_hosts=empty)
    assert result.returncode == 255
    assert "Host key verification failed" in result.stderr


def _fabric(farm, address, known_hosts):
    conn = Connection(
        address,
        user="deploy",
        connect_timeout=10,
        connect_kwargs={
            "key_filename": str(farm.identity_file),
            "look_for_keys": False,
            "allow_agent": False,
        },
    )
    conn.client.load_host_keys(str(known_hosts))
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return conn


# --- what runs on the hosts -------------------------------------------------------


def test_systemd_is_pid_1_and_boot_finished(facts):
    for host, fact in facts.items():
        assert fact["pid1"] == "systemd", host
        assert fact["system"] in ("running", "degraded"), host  # boot has finished
        assert fact["hostname"] == host.name


def test_nginx_and_postgresql_are_active(facts):
    for host, fact in facts.items():
        assert (fact["nginx"], fact["postgresql"]) == ("active", "active"), host
        assert 100 <= int(fact["nginx_http"]) < 600, host  # any HTTP answer: nginx serves
        assert fact["pg_query"] == "42", host


def expected_release(farm) -> dict:
    """What the image runs: Debian 13's own versions, or whatever this machine has installed."""
    if farm.image.name == "debian13":
        return {"os": "debian 13", "python_version": "3.13", "pg_cluster": "17-main"}
    os_release = dict(
        line.split("=", 1)
        for line in Path("/etc/os-release").read_text().splitlines()
        if "=" in line
    )
    python = subprocess.run(
        ["/usr/bin/python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    )
    clusters = sorted(Path("/etc/postgresql").glob("*/*/postgresql.conf"))
    return {
        "os": f"{os_release['ID']} {os_release['VERSION_ID'].strip(chr(34))}",
        "python_version": python.stdout.strip(),
        "pg_cluster": f"{clusters[0].parent.parent.name}-{clusters[0].parent.name}",
    }


def test_hosts_run_the_images_release(farm, facts):
    expected = expected_release(farm)
    for host, fact in facts.items():
        assert {key: fact[key] for key in expected} == expected, host


def test_postgresql_listens_on_localhost(facts):
    for host, fact in facts.items():
        assert "127.0.0.1:5432" in fact["pg_listen"].split(), host


def test_www_data_exists(facts):
    for host, fact in facts.items():
        assert fact["www_data"] == "www-data", host


def test_root_shell_uses_system_python_not_the_machines_dotfiles(facts):
    for host, fact in facts.items():
        assert "pyenv" not in fact["path"] and ".cargo" not in fact["path"], host
        assert fact["python"] == "/usr/bin/python3", host


# --- network ------------------------------------------------------------------------

REACH_SCRIPT = """
import socket, sys
for address in sys.argv[1:]:
    try:
        with socket.create_connection((address, 22), timeout=3) as s:
            print(address, s.recv(64).decode().split("-")[0])
    except OSError as exc:
        print(address, exc.errno)
"""


def test_hosts_reach_each_other_but_nothing_outside(farm, facts):
    def probe(host):
        targets = [h.address for h in farm.hosts] + [farm.bridge_address, OUTSIDE_ADDRESS]
        command = f"python3 - {' '.join(targets)} <<'EOF'\n{REACH_SCRIPT}EOF"
        return dict(
            line.split() for line in farm.ssh(host, command, check=True).stdout.splitlines()
        )

    for host, seen in on_all_hosts(farm, probe).items():
        for other in farm.hosts:
            assert seen[other.address] == "SSH", (host, seen)
        # The machine side answers (a banner if it runs sshd, else a refusal):
        # reachable. Anything else has no route at all: ENETUNREACH.
        assert seen[farm.bridge_address] in ("SSH", "111"), (host, seen)
        assert seen[OUTSIDE_ADDRESS] == "101", (host, seen)
        assert facts[host]["default_route"] == "", host


def test_inventory_lists_the_farm(farm):
    data = yaml.safe_load(farm.inventory_path.read_text())
    addresses = [h.address for h in farm.hosts]
    assert data["project"]["source"] == {"repo": str(REPO_ROOT), "subdir": "examples/djangoapp"}
    assert data["defaults"]["known_hosts"] == str(farm.known_hosts)
    assert data["defaults"]["identity_file"] == str(farm.identity_file)
    assert data["defaults"]["python"] == "/usr/bin/python3"
    assert data["environments"]["test"] == {"hosts": addresses[:1]}
    assert data["environments"]["live"] == {
        "hosts": addresses[1:],
        "protected": True,
        "allowed_users": [getpass.getuser()],
    }


# --- crashes ------------------------------------------------------------------------


def farm_cli(workdir: Path, *args: str, **popen) -> subprocess.Popen:
    env = dict(
        os.environ,
        MLCTL_FARM_DIR=str(workdir),
        MLCTL_FARM_PREFIX=CRASH_PREFIX,
        MLCTL_FARM_NETWORK=CRASH_NETWORK,
    )
    return subprocess.Popen(
        [sys.executable, "-m", "tests.hosts", *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def run_cli(workdir: Path, *args: str) -> tuple[int, str, str]:
    proc = farm_cli(workdir, *args)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def booting(workdir: Path) -> bool:
    """All nspawns started, readiness not yet reached: the middle of a boot."""
    state = read_state(workdir) or {}
    return state.get("status") == "booting" and bool(crash_nspawns())


def crash_nspawns() -> list[int]:
    machine = re.compile(rf"--machine={CRASH_PREFIX}-h\d+")
    pids = find_processes(lambda argv: any(machine.fullmatch(a) for a in argv))
    return [pid for pid in pids if is_alive(pid)]


def leftovers(workdir: Path) -> dict:
    return {
        "netns": network.list_netns(CRASH_PREFIX),
        "links": network.list_links(CRASH_PREFIX),
        "mounts": mounts_under(workdir),
        "nspawn": crash_nspawns(),
        "cgroups": [str(top) for top in cgroup_tops(CRASH_PREFIX) if top.exists()],
    }


NOTHING = {"netns": [], "links": [], "mounts": [], "nspawn": [], "cgroups": []}


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return value


@pytest.fixture
def crash_workdir(tmp_path):
    require_boot()
    workdir = tmp_path / "farm"
    yield workdir
    cleanup_leftovers(CRASH_PREFIX, workdir)  # whatever the test's outcome


def test_up_after_a_killed_up_starts_clean_and_down_leaves_nothing(crash_workdir):
    doomed = farm_cli(crash_workdir, "up", "1")
    try:
        wait_for(lambda: booting(crash_workdir), 30, "the host to start booting")
    finally:
        doomed.kill()
        doomed.communicate()
    left = leftovers(crash_workdir)
    assert left["netns"] and left["mounts"] and left["nspawn"], left  # a real mess

    code, out, err = run_cli(crash_workdir, "up", "1")
    assert code == 0, err
    assert out.splitlines()[-1] == str(crash_workdir / "environments.yaml")
    assert Farm.attach(crash_workdir).ssh("h1", "true").returncode == 0

    code, out, err = run_cli(crash_workdir, "down")
    assert code == 0, err
    assert leftovers(crash_workdir) == NOTHING


def test_failed_up_tears_down_what_it_created(crash_workdir):
    farm = Farm(1, crash_workdir, prefix=CRASH_PREFIX, network=CRASH_NETWORK, boot_timeout=0.3)
    with pytest.raises(FarmError, match="not ready"):
        farm.up()
    assert leftovers(crash_workdir) == NOTHING
