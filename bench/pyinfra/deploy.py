"""pyinfra: the same deploy as bench/floor.sh, bench/ansible/deploy.yml and bench/capistrano.

Release into releases/<id>, the shared .env/media/logs linked, the venv reused while
requirements.txt is unchanged (else built from a wheelhouse resolved on this machine),
collectstatic, migrate when the migrations changed, `current` switched atomically, gunicorn
restarted, then a health check (/healthz names the new commit, / answers below 500); a failed
check points `current` back at the previous release and restarts again.

Environment: REPO, COMMIT, RELEASE_ID, WORK (local scratch), DEPLOY_TO, UNIT; PYVER and PLATFORMS
for a new venv.
"""

import hashlib
import os
import shlex
import subprocess
import tempfile

from pyinfra import host
from pyinfra.facts.server import Command
from pyinfra.operations import files, server

REPO, COMMIT, RID = os.environ["REPO"], os.environ["COMMIT"], os.environ["RELEASE_ID"]
WORK = os.environ["WORK"]
D = os.environ.get("DEPLOY_TO", "/srv/djangoapp")
UNIT = os.environ.get("UNIT", "gunicorn-djangoapp")
R = f"{D}/releases/{RID}"
MIGRATIONS = ["notes/migrations"]


def local(*argv: str, **kw) -> bytes:
    return subprocess.run(argv, check=True, stdout=subprocess.PIPE, **kw).stdout


def archive() -> str:
    """The commit as a gzipped tar on the control machine. The file runs once per host, the
    hosts side by side: each makes it in a file of its own and renames it into place."""
    path = f"{WORK}/release-{RID}.tar.gz"
    if not os.path.exists(path):
        tar = local("git", "-C", REPO, "archive", "--format=tar", COMMIT)
        fd, part = tempfile.mkstemp(dir=WORK)
        with os.fdopen(fd, "wb") as fh:
            fh.write(subprocess.run(["gzip", "-1"], input=tar, stdout=subprocess.PIPE).stdout)
        os.replace(part, path)
    return path


def wheelhouse(requirements: bytes) -> str:
    """requirements.txt resolved into wheels for the hosts' Python, as a tar (like archive())."""
    path = f"{WORK}/wheels-{COMMIT[:12]}.tar"
    if not os.path.exists(path):
        tmp = tempfile.mkdtemp(dir=WORK)
        with open(f"{tmp}/requirements.txt", "wb") as fh:
            fh.write(requirements)
        pyver = os.environ["PYVER"]
        plats = [a for p in os.environ["PLATFORMS"].split() for a in ("--platform", p)]
        local(
            "python3",
            "-m",
            "pip",
            "download",
            "--disable-pip-version-check",
            "-q",
            "--only-binary=:all:",
            "--dest",
            tmp,
            "-r",
            f"{tmp}/requirements.txt",
            "--python-version",
            pyver,
            "--implementation",
            "cp",
            "--abi",
            "cp" + pyver.replace(".", ""),
            *plats,
        )
        local("tar", "-cf", f"{tmp}.tar", "-C", tmp, ".")
        os.replace(f"{tmp}.tar", path)
    return path


def manage(*args: str) -> str:
    return f"cd {R} && set -a && . ./.env && set +a && ./.venv/bin/python manage.py " + " ".join(
        args
    )


# What the host runs now: the current release, its venv and its requirements' hash.
current, current_venv, current_req = host.get_fact(
    Command,
    f"readlink {D}/current; readlink {D}/current/.venv; "
    f"sha256sum < {D}/current/requirements.txt | cut -c1-16",
).split()
requirements = local("git", "-C", REPO, "show", f"{COMMIT}:requirements.txt")
req_hash = hashlib.sha256(requirements).hexdigest()[:16]
venv = current_venv if req_hash == current_req else f"{D}/venvs/{req_hash}"

files.put(name="Upload the release archive", src=archive(), dest=f"/tmp/release-{RID}.tar.gz")
server.shell(
    name="Extract the release",
    commands=[
        f"mkdir -p {R}",
        f"tar -xzf /tmp/release-{RID}.tar.gz -C {R} --no-same-owner",
        f"rm -f /tmp/release-{RID}.tar.gz",
        f"echo {RID} > {R}/REVISION",
    ],
)
if venv != current_venv:
    files.put(name="Upload the wheelhouse", src=wheelhouse(requirements), dest=f"{venv}.tar")
    server.shell(
        name="Build the venv from the wheelhouse",
        commands=[
            f"mkdir -p {venv}.wheels && tar -xf {venv}.tar -C {venv}.wheels",
            f"/usr/bin/python3 -m venv {venv}",
            f"{venv}/bin/pip install -q --disable-pip-version-check --no-index "
            f"--find-links {venv}.wheels -r {R}/requirements.txt",
            f"rm -rf {venv}.wheels {venv}.tar",
        ],
    )
for name, target in (
    (".venv", venv),
    (".env", f"{D}/shared/.env"),
    ("media", f"{D}/shared/media"),
    ("logs", f"{D}/shared/logs"),
):
    files.link(name=f"Link {name}", path=f"{R}/{name}", target=target, force=True)

collect = manage("collectstatic", "--noinput", "-v", "0")
server.shell(name="Collect static files", commands=[collect])
same = " && ".join(f"diff -qr -x __pycache__ {D}/current/{m} {R}/{m}" for m in MIGRATIONS)
server.shell(
    name="Migrate when the migrations changed",
    commands=[f"{same} >/dev/null || {{ {manage('migrate', '--noinput', '-v', '0')}; }}"],
)
server.shell(
    name="Switch current atomically",
    commands=[f"ln -sfn {R} {D}/current.new && mv -Tf {D}/current.new {D}/current"],
)
# On a two-slot host the live slot: see bench/app-restart.sh.
restart = f"/usr/local/sbin/bench-restart-app {D} {UNIT}"
server.shell(name="Restart gunicorn", commands=[restart])

revert = (
    f"ln -sfn {shlex.quote(current)} {D}/current.new && mv -Tf {D}/current.new {D}/current && "
    f"{restart}"
)
server.shell(
    name="Health: /healthz names the new release, / answers below 500; else switch back",
    commands=[
        f"i=0; until curl -fsS --max-time 5 http://127.0.0.1/healthz | grep -qF {RID}; do "
        f"i=$((i+1)); [ $i -lt 300 ] || {{ {revert}; echo 'health: {RID} not served' >&2; "
        "exit 1; }; "
        "sleep 0.1; done",
        "code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 http://127.0.0.1/); "
        f'[ "$code" -ge 200 ] && [ "$code" -lt 500 ] || {{ {revert}; '
        'echo "health: GET / answered $code" >&2; exit 1; }',
    ],
)
