"""What a venv installs: the -r/-c closure and lock files read from the commit, the venv key,
and wheels built here for packages that ship only a source distribution."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from mlctl.core.errors import PreflightFailed
from mlctl.project import installset, sdist, source, wheelhouse
from mlctl.project.installset import InstallSet


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def commit(repo: Path, files: dict[str, str]) -> source.Source:
    for rel, text in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    if not (repo / ".git").exists():
        git(repo, "init", "-q", "-b", "main")
        git(repo, "config", "user.email", "t@example.invalid")
        git(repo, "config", "user.name", "t")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "c")
    return source.resolve(str(repo), "", "HEAD")


SPLIT = {
    "requirements.txt": "-r requirements/production.txt\n",
    "requirements/production.txt": "-r base.txt  # shared\ngunicorn==27.0.1\n",
    "requirements/base.txt": "--constraint=../constraints.txt\nDjango==5.2.19\n",
    "constraints.txt": "sqlparse<1\n",
}


def test_includes_are_read_like_pip_reads_them():
    text = (
        "# -r commented.txt\n-r a.txt\n--requirement b.txt\n--requirement=c.txt\n-rd.txt\n"
        "-c e.txt\n--constraint \\\n  f.txt\nDjango==5.2  # -r not-this.txt\n-r https://x/y.txt\n"
    )
    assert installset.includes(text) == [
        ("-r", "a.txt"),
        ("-r", "b.txt"),
        ("-r", "c.txt"),
        ("-r", "d.txt"),
        ("-c", "e.txt"),
        ("-c", "f.txt"),
    ]


def test_the_closure_follows_includes_relative_to_the_including_file(tmp_path):
    src = commit(tmp_path, SPLIT)
    iset = src.install_set("requirements.txt")
    assert sorted(iset.files) == sorted(SPLIT)
    assert iset.top == "requirements.txt"
    assert iset.origin == "requirements.txt and 3 included file(s)"
    # Written out, pip finds every include where the top file says.
    top = iset.write(tmp_path / "out")
    assert (top.parent / "requirements/base.txt").read_text() == SPLIT["requirements/base.txt"]


def test_a_change_in_an_included_file_changes_the_venv_key(tmp_path):
    before = commit(tmp_path, SPLIT).install_set("requirements.txt").key("3.11", "linux-x86_64")
    after_src = commit(tmp_path, {"requirements/base.txt": "Django==5.2.19\ndocopt==0.6.2\n"})
    after = after_src.install_set("requirements.txt")
    assert after.key("3.11", "linux-x86_64") != before
    assert after.key("3.11", "linux-x86_64") == after.key("3.11", "linux-x86_64")
    assert after.key("3.13", "linux-x86_64") != after.key("3.11", "linux-x86_64")
    assert after.key("3.11", "linux-aarch64") != after.key("3.11", "linux-x86_64")


def test_a_missing_include_names_the_file_that_includes_it(tmp_path):
    src = commit(tmp_path, {"requirements.txt": "-r requirements/prod.txt\n"})
    with pytest.raises(PreflightFailed) as e:
        src.install_set("requirements.txt")
    assert str(e.value).startswith(
        "requirements file requirements/prod.txt (included by requirements.txt) "
        "is not in the deployed commit"
    )


def test_an_include_outside_the_project_directory_is_refused(tmp_path):
    src = commit(tmp_path, {"app/requirements.txt": "-r ../../elsewhere.txt\n"})
    src = source.resolve(str(tmp_path), "app", "HEAD")
    with pytest.raises(PreflightFailed, match="is outside the project directory"):
        src.install_set("requirements.txt")


def test_pipfile_lock_installs_its_default_packages_pinned_and_hashed(tmp_path):
    lock = {
        "default": {
            "django": {"version": "==5.2.19", "hashes": ["sha256:aa", "sha256:bb"]},
            "psycopg": {"version": "==3.3.9", "extras": ["binary"], "hashes": ["sha256:cc"]},
            "tzdata": {"version": "==2026.6", "markers": "sys_platform == 'win32'"},
        },
        "develop": {"pytest": {"version": "==8.0.0"}},
    }
    src = commit(tmp_path, {"Pipfile.lock": json.dumps(lock)})
    iset = src.install_set("Pipfile.lock")
    assert iset.files == {
        "requirements.txt": b"# made by mlctl from Pipfile.lock\n"
        b"django==5.2.19 --hash=sha256:aa --hash=sha256:bb\n"
        b"psycopg[binary]==3.3.9 --hash=sha256:cc\n"
        b"tzdata==2026.6 ; sys_platform == 'win32'\n"
    }


@pytest.mark.parametrize(
    "setting, expected",
    [
        ("poetry.lock", "poetry export -f requirements.txt"),
        ("pyproject.toml", "lock it (`uv lock`"),
    ],
)
def test_what_mlctl_cannot_install_exactly_says_what_to_do(tmp_path, setting, expected):
    src = commit(tmp_path, {setting: "x = 1\n"})
    with pytest.raises(PreflightFailed) as e:
        src.install_set(setting)
    assert expected in str(e.value)


def test_a_broken_uv_lock_names_uv_and_what_to_run(tmp_path):
    src = commit(tmp_path, {"pyproject.toml": "[project]\nname='a'\n", "uv.lock": "nonsense"})
    with pytest.raises(PreflightFailed) as e:
        src.install_set("uv.lock")
    assert str(e.value).startswith("uv.lock: uv export failed:")
    assert "run `uv lock` and commit uv.lock" in str(e.value)


# ---------------------------------------------------------------- wheels built here


def _fake_pip(monkeypatch, answers: list, calls: list):
    """pip download answers in turn (returncode, stderr); `pip wheel` makes a pure wheel."""

    def run(argv, **kwargs):
        calls.append(argv)
        if "download" in argv:
            code, err = answers.pop(0)
            return subprocess.CompletedProcess(argv, code, "", err)
        out = Path(argv[argv.index("--wheel-dir") + 1])
        (out / "docopt-0.6.2-py2.py3-none-any.whl").write_bytes(b"built")
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(wheelhouse.subprocess, "run", run)
    monkeypatch.setattr(sdist.subprocess, "run", run)


NO_MATCH = (
    "ERROR: Could not find a version that satisfies the requirement docopt==0.6.2\n"
    "ERROR: No matching distribution found for docopt==0.6.2\n"
)


def test_a_source_only_package_is_built_here_and_resolving_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("MLCTL_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(sdist, "find_interpreter", lambda v: f"/usr/bin/python{v}")
    monkeypatch.setattr(sdist, "_has_pip", lambda p: True)
    calls: list = []
    _fake_pip(monkeypatch, [(1, NO_MATCH), (0, "")], calls)
    iset = InstallSet("requirements.txt", {"requirements.txt": b"docopt==0.6.2\n"}, "r")
    d = wheelhouse.build("k", iset, "3.11", "x86_64", "2.36")
    assert (d / "docopt-0.6.2-py2.py3-none-any.whl").read_bytes() == b"built"
    build = calls[1]
    assert build[:4] == ["/usr/bin/python3.11", "-m", "pip", "wheel"] and "--no-deps" in build
    assert "--find-links" in calls[2] and not list(d.glob(".mlctl-build-*"))


def test_a_hashed_set_accepts_the_wheel_built_from_its_verified_source(tmp_path, monkeypatch):
    monkeypatch.setenv("MLCTL_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(sdist, "find_interpreter", lambda v: f"/usr/bin/python{v}")
    monkeypatch.setattr(sdist, "_has_pip", lambda p: True)
    requests: list = []
    calls: list = []
    _fake_pip(monkeypatch, [(1, NO_MATCH), (0, "")], calls)
    real_build = sdist.build_wheel

    def spy(spec, requirements, *rest):
        requests.append(Path(requirements).read_text())
        return real_build(spec, requirements, *rest)

    monkeypatch.setattr(sdist, "build_wheel", spy)
    text = b"--index-url https://mirror.invalid/simple\ndocopt==0.6.2 \\\n    --hash=sha256:ab\n"
    iset = InstallSet("requirements.txt", {"requirements.txt": text}, "r")
    d = wheelhouse.build("k", iset, "3.11", "x86_64", "2.36")
    assert requests == [
        "--index-url https://mirror.invalid/simple\ndocopt==0.6.2      --hash=sha256:ab\n"
    ]
    built = sdist.wheel_hash(d / "docopt-0.6.2-py2.py3-none-any.whl")
    assert f"--hash=sha256:ab --hash={built}" in (d / "requirements.txt").read_text()


def test_no_interpreter_of_the_hosts_python_names_the_package_and_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("MLCTL_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(sdist, "find_interpreter", lambda v: None)
    _fake_pip(monkeypatch, [(1, NO_MATCH)], [])
    iset = InstallSet("requirements.txt", {"requirements.txt": b"docopt==0.6.2\n"}, "r")
    with pytest.raises(PreflightFailed) as e:
        wheelhouse.build("k", iset, "3.9", "x86_64", "2.36")
    assert str(e.value) == (
        "docopt==0.6.2 has no wheel for Python 3.9 on x86_64 (glibc 2.36), and no python3.9 on "
        "this machine builds one — install Python 3.9 here (e.g. `uv python install 3.9` or "
        "pyenv), or set build.install: remote (the hosts build it: compiler and registry needed)"
    )
    assert not list(tmp_path.glob("wheelhouse/*"))


def test_a_wheel_built_here_must_fit_the_host(monkeypatch):
    monkeypatch.setattr(sdist, "local_glibc", lambda: "2.36")
    monkeypatch.setattr(sdist.platform, "machine", lambda: "x86_64")
    assert sdist.fits("a-1-py3-none-any.whl", "aarch64", "")
    assert sdist.fits("a-1-cp311-cp311-linux_x86_64.whl", "x86_64", "2.36")
    assert sdist.fits("a-1-cp311-cp311-linux_x86_64.whl", "x86_64", "2.41")
    assert not sdist.fits("a-1-cp311-cp311-linux_x86_64.whl", "x86_64", "2.31")  # older glibc
    assert not sdist.fits("a-1-cp311-cp311-linux_x86_64.whl", "aarch64", "2.36")
    assert not sdist.fits("a-1-cp311-cp311-linux_x86_64.whl", "x86_64", "")  # musl host


def test_the_interpreter_is_found_under_pyenv_when_the_path_has_only_a_shim(tmp_path, monkeypatch):
    shim = tmp_path / "shims" / "python3.12"
    real = tmp_path / "pyenv" / "versions" / "3.12.4" / "bin" / "python3.12"
    for path, body in ((shim, "exit 127"), (real, "echo 3.12")):
        path.parent.mkdir(parents=True)
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim.parent}:/usr/bin:/bin")
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))
    monkeypatch.setattr(sdist, "_bundled_uv", lambda: None)
    assert sdist.find_interpreter("3.12") == str(real)
    assert sdist.find_interpreter("3.99") is None


# ---------------------------------------------------------------- the server mlctl adds


def test_a_set_without_gunicorn_gets_the_pinned_server_in_a_file_of_its_own(tmp_path):
    """bakerydemo serves with uwsgi: its requirements (and their -r files) name no gunicorn."""
    split = {**SPLIT, "requirements/production.txt": "-r base.txt\nuwsgi>=2.0.17,<2.1\n"}
    iset = commit(tmp_path, split).install_set("requirements.txt")
    served = installset.with_server(iset, "gunicorn==27.0.1")
    assert served.extra == installset.SERVER and served.top == iset.top
    assert served.files[installset.SERVER] == b"gunicorn==27.0.1\n"
    assert {k: v for k, v in served.files.items() if k != installset.SERVER} == iset.files
    assert served.key("3.13", "x86_64") != iset.key("3.13", "x86_64")  # a venv of its own
    assert installset.with_server(iset, "gunicorn==23.0.0").key("3.13", "x86_64") != (
        served.key("3.13", "x86_64")
    )
    assert "gunicorn==27.0.1" in served.origin
    assert installset.with_server(iset, "") is iset  # build.server: "" adds nothing


def test_a_set_that_names_gunicorn_anywhere_is_left_as_it_is(tmp_path):
    iset = commit(tmp_path, SPLIT).install_set("requirements.txt")  # in an included file
    assert installset.with_server(iset, "gunicorn==27.0.1") is iset
    hashed = InstallSet("requirements.txt", {"requirements.txt": b"Gunicorn==23.0.0 \\\n"
                        b"    --hash=sha256:ab\n"}, "uv.lock (uv export)")  # fmt: skip
    assert installset.with_server(hashed, "gunicorn==27.0.1") is hashed


def test_the_server_file_is_resolved_into_the_same_wheelhouse(tmp_path, monkeypatch):
    monkeypatch.setenv("MLCTL_STATE_DIR", str(tmp_path))
    calls: list = []
    _fake_pip(monkeypatch, [(0, ""), (0, "")], calls)
    iset = InstallSet("requirements.txt", {"requirements.txt": b"Django==5.2.19\n"}, "r")
    served = installset.with_server(iset, "gunicorn==27.0.1")
    d = wheelhouse.build("k", served, "3.13", "x86_64", "2.41")
    tops = [c[c.index("-r") + 1] for c in calls]
    assert tops == [str(d.with_name(f"k.tmp-{os.getpid()}") / n) for n in
                    ("requirements.txt", installset.SERVER)]  # fmt: skip
    assert all(c[c.index("--dest") + 1] == c[c.index("--find-links") + 1] for c in calls)
    assert (d / installset.SERVER).read_text() == "gunicorn==27.0.1\n"


def test_parallel_hosts_share_one_resolve_of_the_install_set(tmp_path, monkeypatch):
    """Two hosts' threads asked at once: one uv export (a second raced in sysconfig)."""
    import threading
    import time

    src = commit(tmp_path, {"requirements.txt": "Django==5.2.19\n"})
    calls: list = []

    def slow_resolve(read, setting):
        calls.append(setting)
        time.sleep(0.2)
        return InstallSet(setting, {setting: b"x"}, setting)

    monkeypatch.setattr(installset, "resolve", slow_resolve)
    got: list = []
    threads = [
        threading.Thread(target=lambda: got.append(src.install_set("requirements.txt")))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["requirements.txt"] and got[0] is got[1] is got[2]


def test_a_lock_export_is_downloaded_and_installed_as_it_is_without_resolving_again(
    tmp_path, monkeypatch
):
    """djangopackages' uv.lock: github3-py needs pyjwt[crypto]; resolving the hashed export
    again fails in pip ("all requirements must have their versions pinned") on that extra."""
    from mlctl.commands import release as relcmd

    monkeypatch.setenv("MLCTL_STATE_DIR", str(tmp_path))
    calls: list = []
    _fake_pip(monkeypatch, [(0, ""), (0, "")], calls)
    text = b"pyjwt==2.13.0 \\\n    --hash=sha256:ab\n"
    lock = InstallSet("requirements.txt", {"requirements.txt": text}, "uv.lock", complete=True)
    served = installset.with_server(lock, "gunicorn==27.0.1")
    assert served.complete
    wheelhouse.build("k", served, "3.13", "x86_64", "2.41")
    assert ["--no-deps" in c for c in calls] == [True, False]  # the server file resolves
    cmd = relcmd.build_venv("py", "/v/H", "/w", "/w/r.txt", "R", None, True).render()
    assert "-q --no-index --find-links /w --no-deps -r /w/r.txt ;" in cmd
    plain = installset.pipfile_lock(lambda rel: b'{"default": {}}', "Pipfile.lock")
    assert plain.complete and not InstallSet("r", {}, "r").complete
