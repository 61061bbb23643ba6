"""Two projects on one real host: each answers on its own name (one over plain HTTP, one over
HTTPS), each is deployed and rolled back without touching the other's files, `nginx -t` passes
after every step, a name neither claims gets mlctl's neutral default site, and a third project
claiming a name already served is refused."""

from __future__ import annotations

import http.client
import json
import ssl
from pathlib import Path

import pytest
import yaml

from .helpers import add_pinned_field, make_repo, mlctl
from .tlskit import TestCA, http_get, https_get, own_host

pytestmark = pytest.mark.hosts

A, B = "a.test", "b.test"


def inventory(farm, repo: Path, path: Path, project: str, **test) -> Path:
    """The farm's inventory for `project`: its own deploy_to and database, and `test` settings."""
    data = yaml.safe_load(Path(farm.inventory_path).read_text())
    data["project"].update(name=project, source={"repo": str(repo), "subdir": ""})
    data["defaults"]["thresholds"] = {"load_per_cpu": 100.0}
    data["defaults"]["deploy_to"] = f"/srv/{project}"
    data["defaults"]["database"] = {"engine": "postgresql", "name": project, "user": project}
    data["environments"]["test"].update(test)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    for farm in own_host():
        work = tmp_path_factory.mktemp("multisite")
        ca = TestCA(work)
        cert, key = ca.leaf([B], "b")
        tls = {"mode": "files", "cert": str(cert), "key": str(key), "ca_file": str(ca.path)}
        repo_a, repo_b = make_repo(work / "repo-a"), make_repo(work / "repo-b")
        inv_a = inventory(farm, repo_a, work / "a.yaml", "sitea", server_name=A)
        inv_b = inventory(farm, repo_b, work / "b.yaml", "siteb", server_name=B, tls=tls)
        out = {"farm": farm, "h": farm.hosts[0], "ca": ca, "work": work}
        out.update(repo_a=repo_a, inv_a=inv_a, inv_b=inv_b)
        for inv in (inv_a, inv_b):
            mlctl(inv, "test", "setup")
            nginx_ok(out)
            mlctl(inv, "test", "deploy", "--skip-tests")
            nginx_ok(out)
        yield out


def root(farm, h, command: str) -> str:
    r = farm.ssh(h, command)
    assert r.returncode == 0, f"{command}: {r.stderr}"
    return r.stdout.strip()


def nginx_ok(s) -> None:
    root(s["farm"], s["h"], "nginx -t -q")


def release_of(s, project: str) -> str:
    return root(s["farm"], s["h"], f"readlink /srv/{project}/current").rsplit("/", 1)[-1]


def files_of(s, project: str) -> str:
    """Digests of everything of one project's on the host: site, units, .env, current link."""
    return root(
        s["farm"],
        s["h"],
        f"sha256sum /etc/nginx/sites-available/{project} /etc/systemd/system/gunicorn-{project}.*"
        f" /srv/{project}/shared/.env; readlink /srv/{project}/current;"
        f" systemctl show -p ActiveEnterTimestampMonotonic gunicorn-{project}.service",
    )


def answer_a(s) -> dict:
    conn = http.client.HTTPConnection(s["h"].address, 80, timeout=10)
    conn.request("GET", "/healthz", headers={"Host": A})
    resp = conn.getresponse()
    assert resp.status == 200
    return json.loads(resp.read())


def answer_b(s) -> dict:
    status, _, body, _ = https_get(s["h"].address, B, "/healthz", s["ca"].path)
    assert status == 200
    return json.loads(body)


def test_each_project_answers_on_its_own_name(sites):
    assert answer_a(sites)["release"] == release_of(sites, "sitea")
    assert answer_b(sites)["release"] == release_of(sites, "siteb")
    assert http_get(sites["h"].address, B, "/")[0] == 301  # b.test's port 80 redirects
    enabled = root(sites["farm"], sites["h"], "ls /etc/nginx/sites-enabled").split()
    assert sorted(enabled) == ["mlctl-default", "sitea", "siteb"]
    assert "default_server" not in root(
        sites["farm"], sites["h"], "cat /etc/nginx/sites-enabled/site*"
    )


def test_an_unknown_name_gets_the_neutral_default_site(sites):
    conn = http.client.HTTPConnection(sites["h"].address, 80, timeout=10)
    conn.request("GET", "/", headers={"Host": "unknown.test"})
    with pytest.raises(http.client.RemoteDisconnected):  # 444: closed, no project's page
        conn.getresponse()
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME|HANDSHAKE|ALERT"):
        https_get(sites["h"].address, "unknown.test", "/", sites["ca"].path)


def test_deploy_and_rollback_of_one_project_leave_the_other_alone(sites):
    b_before = files_of(sites, "siteb")
    first = release_of(sites, "sitea")
    add_pinned_field(sites["repo_a"])
    mlctl(sites["inv_a"], "test", "deploy", "--skip-tests")
    nginx_ok(sites)
    second = release_of(sites, "sitea")
    assert second != first and answer_a(sites)["release"] == second
    assert files_of(sites, "siteb") == b_before
    mlctl(sites["inv_a"], "test", "rollback", "--yes")
    nginx_ok(sites)
    assert release_of(sites, "sitea") == first and answer_a(sites)["release"] == first
    assert files_of(sites, "siteb") == b_before
    a_before = files_of(sites, "sitea")
    mlctl(sites["inv_b"], "test", "bounce")
    nginx_ok(sites)
    assert files_of(sites, "sitea") == a_before
    assert answer_b(sites)["release"] == release_of(sites, "siteb")


def test_setup_refuses_a_name_another_project_serves(sites):
    repo = make_repo(sites["work"] / "repo-c")
    inv = inventory(
        sites["farm"], repo, sites["work"] / "c.yaml", "sitec", server_name=f"c.test {A}"
    )
    p = mlctl(inv, "test", "setup", check=False)
    assert p.returncode != 0
    lines = [ln for ln in p.stderr.splitlines() if "already served" in ln]
    assert len(lines) == 1 and f"server name {A}" in lines[0] and "'sitea'" in lines[0], p.stderr
    assert (
        root(sites["farm"], sites["h"], "ls /etc/nginx/sites-enabled /srv").split().count("sitec")
        == 0
    )
    assert answer_a(sites)["status"] == "ok"
