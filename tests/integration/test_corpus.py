"""Adoption of real third-party Django projects (../shared/corpus/), as their owners would do it.

Each project is unpacked, put in git and committed; `mlctl init` writes its inventory; then only
the host lines and the values `init` marked `EDIT` change (in the inventory, never in the
project's files), and `setup`, `deploy`, `check`, a template change deployed and served, and
`rollback` run on Debian 13 hosts (Python 3.13, PostgreSQL 17) booted for that project alone:
every project's nginx site claims the default server, so two never share a host. cookie_shop
deploys to two hosts. The home page and a static file must answer 200 through nginx.

What the test writes into each inventory, and why `init` could not know it:
- the hosts, `known_hosts` and `identity_file`: the farm's addresses and key files;
- cookie_shop `DJANGO_ADMIN_URL`: the URL prefix of the admin site is the owner's choice;
  `MAILGUN_API_KEY`, `MAILGUN_DOMAIN`: keys of an outside service (dummies: never called here);
- djangopackages: nothing beyond the host lines: its settings require no variable without a
  default;
- bakerydemo `PRIMARY_HOST` (not marked EDIT, so it is a human's edit init still misses): its
  production settings set WAGTAILADMIN_BASE_URL only when the variable exists, and Wagtail's
  wagtailadmin.W003 then fails `check --deploy`; the site's public host name is the owner's;
- dev: the PostgreSQL EDIT lines (cookie_shop, djangopackages: migrations that need PostgreSQL)
  point at a throwaway local server the test starts (tests/integration/helpers.local_postgres),
  and the port is a free one (flags, not edits): the machine's own, not the project's.
Deploys pass `--skip-tests`: the test gate runs the project's own tests with the project's own
dependencies on the control machine (the project's venv), which this suite does not build for
each project; the gate itself is tested in tests/unit and tests/integration/test_init*.
Timings per project and step go to $MLCTL_CORPUS_RESULTS (default /tmp/mlctl-corpus-results.json).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.hosts.farm import Farm, placed
from tests.hosts.fixtures import _in_ci, booted

from .helpers import ROOT, free_port, git, local_postgres, run

pytestmark = pytest.mark.hosts

CORPUS = ROOT.parent / "shared" / "corpus"
BIN = Path(sys.executable).parent
RESULTS = Path(os.environ.get("MLCTL_CORPUS_RESULTS", "/tmp/mlctl-corpus-results.json"))

# Per project: hosts in its test environment, the EDIT values the owner writes, the template
# whose change is deployed, and the page that shows it.
PROJECTS = {
    "cookie_shop": {
        "hosts": 2,
        "values": {
            "DJANGO_ADMIN_URL": "admin/",
            "MAILGUN_API_KEY": "key-not-used-in-tests",
            "MAILGUN_DOMAIN": "mg.example.invalid",
        },
        "template": "cookie_shop/templates/base.html",
    },
    "bakerydemo": {
        "hosts": 1,
        "values": {},
        # Not marked EDIT: production.py reads it only `if "PRIMARY_HOST" in os.environ`, yet
        # Wagtail's wagtailadmin.W003 fails `check --deploy` without WAGTAILADMIN_BASE_URL.
        "env": {"PRIMARY_HOST": "bakery.example.invalid"},
        "template": "bakerydemo/templates/base.html",
        # Its home is Wagtail's welcome page until the owner loads the demo's pages
        # (load_initial_data); its 404 page renders the project's base.html.
        "page": ("/corpus-no-such-page/", 404),
    },
    "djangopackages": {"hosts": 1, "values": {}, "template": "templates/base.html"},
}
MARK = "<!-- corpus-change-v2 -->"


def corpus_tarball(name: str) -> Path:
    path = CORPUS / f"{name}.tar.gz"
    if not path.is_file():
        reason = f"the corpus is missing: {path} (see ../shared/corpus/README.md)"
        if _in_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return path


def unpack(name: str, parent: Path) -> Path:
    with tarfile.open(corpus_tarball(name)) as tar:
        tar.extractall(parent, filter="data")
    project = parent / name
    git(project, "init", "-q", "-b", "main")
    git(project, "config", "user.email", "owner@corpus.invalid")
    git(project, "config", "user.name", "owner")
    commit(project, "as published")
    return project


def commit(project: Path, message: str) -> str:
    git(project, "add", "-A")
    git(project, "commit", "-qm", message)
    return git(project, "rev-parse", "HEAD")


def fill_inventory(path: Path, farm, values: dict, env: dict | None = None) -> list[str]:
    """The owner's edits: the host lines and every value init marked EDIT. Returns the keys of
    the EDIT values that were filled, and fails on an EDIT value the table does not know."""
    text = path.read_text()
    if farm is not None:  # dev needs no host lines
        addresses = ", ".join(h.address for h in farm.hosts)
        text = text.replace("hosts: [test1.example.internal]", f"hosts: [{addresses}]", 1)
        text = text.replace(
            "  # known_hosts: ~/.ssh/known_hosts", f"  known_hosts: {farm.known_hosts}"
        )
        text = text.replace(
            "  # identity_file: ~/.ssh/id_ed25519", f"  identity_file: {farm.identity_file}"
        )
    filled = []

    def value(m: re.Match) -> str:
        key = m.group("key")
        assert key in values, f"init asks for {key}, which the test does not know: {m.group(0)}"
        filled.append(key)
        return f'{m.group("indent")}{key}: {json.dumps(values[key])}{m.group("rest")}'

    pattern = r'(?m)^(?P<indent> +)(?P<key>[A-Z][A-Z0-9_]*): ""(?P<rest>  # EDIT.*)$'
    text = re.sub(pattern, value, text)
    env_line = "  env:  # plain settings written to the servers' shared .env\n"
    for key, extra in (env or {}).items():  # values init did not ask for (see the docstring)
        assert env_line in text
        text = text.replace(env_line, f"{env_line}    {key}: {json.dumps(extra)}\n", 1)
    path.write_text(text)
    return filled


def get(url: str, timeout: float = 30) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def static_url(farm, host, name: str) -> str:
    """A collected static file of the release: one from the manifest when there is one."""
    from .helpers import ssh

    found = ssh(
        farm,
        host,
        f"cd /srv/{name}/current && f=$(find . -name staticfiles.json -path '*static*' | head -1); "
        'if [ -n "$f" ]; then python3 -c "import json,sys; '
        "d=json.load(open(sys.argv[1])); print(next(v for k, v in sorted(d['paths'].items()) "
        'if k.endswith(\'.css\')))" "$f"; else echo admin/css/base.css; fi',
    )
    return f"http://{host.address}/static/{found}"


class Timings:
    """Seconds per project and step, written for the closing table."""

    def __init__(self, project: str):
        self.project = project

    def run(self, step: str, fn, *args, **kw):
        started = time.monotonic()
        try:
            return fn(*args, **kw)
        finally:
            self.record(step, time.monotonic() - started)

    def record(self, step: str, seconds: float) -> None:
        data = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
        data.setdefault(self.project, {})[step] = round(seconds, 1)
        RESULTS.write_text(json.dumps(data, indent=1))


def mlctl_env(logs: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLCTL_")}
    env.update(MLCTL_LOG_DIR=str(logs), NO_COLOR="1", COLUMNS="200")
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def mlctl(project: Path, *args: str, check: bool = True, timeout: float = 1200):
    env = mlctl_env(project.parent / "logs")
    return run([sys.executable, "-m", "mlctl.cli", *args], project, env, timeout, check)


def adopt(name: str, parent: Path, timings: Timings) -> Path:
    """Unpack, commit, `mlctl init`: the project as its owner has it before the first deploy."""
    project = timings.run("unpack+git", unpack, name, parent)
    timings.run("init", mlctl, project, "init")
    return project


def change_template(project: Path, relpath: str) -> str:
    path = project / relpath
    text = path.read_text()
    assert "</body>" in text, relpath
    path.write_text(text.replace("</body>", f"{MARK}\n</body>", 1))
    return commit(project, "a visible change")


def stop_dev(project: Path) -> None:
    """Stop the dev gunicorn the way mlctl's pidfile stop does: TERM, wait up to 10 s."""
    pidfile = project / "var" / "dev" / "run" / "gunicorn.pid"
    if not pidfile.is_file():
        return
    pid = int(pidfile.read_text().strip())
    try:
        if str(project) not in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
            return
        os.kill(pid, signal.SIGTERM)
    except (OSError, ProcessLookupError):
        return
    for _ in range(100):
        try:
            if "State:\tZ" in Path(f"/proc/{pid}/status").read_text():
                return
        except OSError:
            return
        time.sleep(0.1)


@pytest.fixture(params=sorted(PROJECTS), scope="module")
def corpus_farm(request, tmp_path_factory):
    """(project name, its own booted Debian 13 farm): one farm at a time, the same place for each.

    198.51.100.32/27 (hosts .43, .44) is outside every other farm's range (default .11-.13,
    mlrel .64/26, mlinit .128/26, mlbench and mldeb13 .192/26)."""
    name = request.param
    corpus_tarball(name)
    prefix, network, _ = placed("mlcorp", "198.51.100.32/27", "")
    workdir = tmp_path_factory.mktemp(f"farm-{name}")
    farm = Farm(PROJECTS[name]["hosts"], workdir=workdir, prefix=prefix, network=network,
                image="debian13")  # fmt: skip
    started = time.monotonic()
    for booted_farm in booted(farm):
        Timings(name).record("boot", time.monotonic() - started)
        yield name, booted_farm


def test_adopt_setup_deploy_change_rollback(corpus_farm, tmp_path):
    name, farm = corpus_farm
    spec, timings = PROJECTS[name], Timings(name)
    project = adopt(name, tmp_path, timings)
    inventory = project / "environments.yaml"
    filled = fill_inventory(inventory, farm, spec["values"], spec.get("env"))
    assert sorted(filled) == sorted(spec["values"]), filled
    v1 = commit(project, "Deploy with mlctl")

    timings.run("setup", mlctl, project, "test", "setup")
    timings.run("deploy", mlctl, project, "test", "deploy", "--skip-tests", "-v")
    for host in farm.hosts:
        assert release(farm, host, name).endswith(v1[:12]), host
        status, body = get(f"http://{host.address}/")
        assert status == 200, f"{host}: home page {status}: {body[-2000:]}"
        assert MARK not in body
        url = static_url(farm, host, name)
        assert get(url)[0] == 200, url
    p = timings.run("check", mlctl, project, "test", "check", check=False)
    assert p.returncode in (0, 1), p.stdout + p.stderr

    path, expected = spec.get("page", ("/", 200))  # a page that renders the changed template
    v2 = change_template(project, spec["template"])
    timings.run("deploy change", mlctl, project, "test", "deploy", "--skip-tests", "-v")
    for host in farm.hosts:
        assert release(farm, host, name).endswith(v2[:12]), host
        status, body = get(f"http://{host.address}{path}")
        assert status == expected and MARK in body, f"{host}: {status}"

    timings.run("rollback", mlctl, project, "test", "rollback", "--yes")
    for host in farm.hosts:
        assert release(farm, host, name).endswith(v1[:12]), host
        status, body = get(f"http://{host.address}{path}")
        assert status == expected and MARK not in body, f"{host}: {status}"
        assert get(f"http://{host.address}/")[0] == 200, host
    print(f"corpus timings: {RESULTS}")


@pytest.mark.parametrize("name", sorted(PROJECTS))
def test_dev_deploy_on_this_machine(name, tmp_path):
    """`mlctl dev deploy` with the interpreter init chose; djangopackages on a local PostgreSQL."""
    timings = Timings(name)
    project = adopt(name, tmp_path, timings)
    fill_inventory(
        project / "environments.yaml", None, PROJECTS[name]["values"], PROJECTS[name].get("env")
    )
    dev = yaml.safe_load((project / "environments.yaml").read_text())["environments"]["dev"]
    assert re.search(r"python3\.1[23]$", dev["python"]), dev["python"]
    port = free_port()  # not the generated port: another project may hold it on this machine
    flags = ["--set", f"bind=127.0.0.1:{port}"]
    with contextlib.ExitStack() as stack:
        if dev["database"]["engine"] == "postgresql":
            db = dev["database"]
            pg = stack.enter_context(local_postgres(db["user"], db["name"], "pw-dev"))
            flags += ["--set", "database.host=127.0.0.1", "--set", f"database.port={pg}"]
            flags += ["--set", "database.password=pw-dev"]
        commit(project, "Deploy with mlctl")
        try:
            timings.run("dev deploy", mlctl, project, "dev", "deploy", "--skip-tests", *flags)
            status, body = get(f"http://127.0.0.1:{port}/")
            assert status == 200, f"dev home page {status}: {body[-2000:]}"
        finally:
            stop_dev(project)
    print(f"corpus timings: {RESULTS}")


def release(farm, host, name: str) -> str:
    from .helpers import ssh

    return ssh(farm, host, f"readlink /srv/{name}/current").split("/")[-1]
