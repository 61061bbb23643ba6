"""The test hosts' Debian 13 image: package sources read from apt, the cache and its lock.

The build itself is mmdebstrap's; here a stand-in on PATH records how often it ran, so the
cache's rules (build once, rename into place whole, never keep a half-built tree) are checked
without a mirror. tests/integration/test_hosts.py boots the real image.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from tests.hosts import image as images

KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"

DEB822 = f"""\
Types: deb
# a comment
URIs: http://mirror.invalid/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: {KEYRING}

Types: deb deb-src
URIs: http://security.invalid/debian-security
Suites: bookworm-security
Components: main
Signed-By: {KEYRING}

Types: deb
URIs: https://vendor.invalid/node
Suites: nodistro
Components: main

Types: deb
Enabled: no
URIs: http://disabled.invalid/debian
Suites: bookworm
Components: main

Types: deb-src
URIs: http://sources.invalid/debian
Suites: bookworm
Components: main
"""


def apt_dir(tmp_path: Path, sources: str = "", one_line: str = "") -> Path:
    root = tmp_path / "apt"
    (root / "sources.list.d").mkdir(parents=True)
    if sources:
        (root / "sources.list.d" / "debian.sources").write_text(sources)
    if one_line:
        (root / "sources.list").write_text(one_line)
    return root


def test_deb822_sources_are_the_machines_own_with_the_release_renamed(tmp_path):
    lines = images.package_sources("trixie", apt_dir(tmp_path, DEB822), release="bookworm")
    assert lines == [
        f"deb [signed-by={KEYRING}] http://mirror.invalid/debian trixie main contrib",
        f"deb [signed-by={KEYRING}] http://mirror.invalid/debian trixie-updates main contrib",
        f"deb [signed-by={KEYRING}] http://security.invalid/debian-security trixie-security main",
    ]


def test_one_line_sources_list_is_read_too(tmp_path):
    text = (
        "# deb http://old.invalid/debian bookworm main\n"
        "deb-src http://mirror.invalid/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://mirror.invalid/debian bookworm main # x\n"
        "deb http://mirror.invalid/debian-security bookworm-security main\n"
        "deb http://other.invalid/ubuntu jammy main\n"
    )
    lines = images.package_sources("trixie", apt_dir(tmp_path, one_line=text), release="bookworm")
    assert lines == [
        "deb [signed-by=/k.gpg] http://mirror.invalid/debian trixie main",
        "deb http://mirror.invalid/debian-security trixie-security main",
    ]


def test_no_source_for_the_machines_release_is_one_clear_error(tmp_path):
    text = "deb http://other.invalid/ubuntu jammy main\n"
    with pytest.raises(images.ImageError, match="no apt source .* release 'bookworm'"):
        images.package_sources("trixie", apt_dir(tmp_path, one_line=text), release="bookworm")


def test_the_cache_key_follows_packages_and_sources():
    sources = ["deb http://mirror.invalid/debian trixie main"]
    base = images.get("debian13")
    more = images.Image(base.name, base.suite, (*base.packages, "rsync"))
    assert base.key(sources) == images.get("debian13").key(list(sources))
    assert base.key(sources) != more.key(sources)
    assert base.key(sources) != base.key(["deb http://elsewhere.invalid/debian trixie main"])


def test_the_machine_image_is_the_machines_root():
    assert images.get("machine").ensure() == Path("/")
    with pytest.raises(images.ImageError, match="no image 'debian14'"):
        images.get("debian14")


# --- the cache ------------------------------------------------------------------------------

FAKE_MMDEBSTRAP = """#!/bin/sh
# Stand-in for mmdebstrap: OPTIONS... SUITE TARGET SOURCES...
suite= target=
for arg; do
  case $arg in --*) ;; *) if [ -z "$suite" ]; then suite=$arg; \
    elif [ -z "$target" ]; then target=$arg; fi ;; esac
done
echo "$suite $*" >> "$FAKE_CALLS"
sleep 0.3
if [ -n "$FAKE_FAIL" ]; then
  mkdir -p "$target/etc"; echo "E: cannot reach the mirror" >&2; exit 1
fi
mkdir -p "$target/etc/postgresql/17/main" "$target/etc/ssh"
touch "$target/etc/postgresql/17/main/postgresql.conf" "$target/etc/ssh/ssh_host_ed25519_key"
"""


@pytest.fixture
def fake_build(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "mmdebstrap"
    tool.write_text(FAKE_MMDEBSTRAP)
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    calls = tmp_path / "calls"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_CALLS", str(calls))
    monkeypatch.setattr(images, "package_sources", lambda suite: [f"deb http://m.invalid {suite}"])
    return calls, tmp_path / "cache"


def test_two_builds_at_once_build_one_tree_and_both_use_it(fake_build):
    calls, cache = fake_build
    image = images.get("debian13")
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(images.build(image, cache)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 2 and results[0] == results[1]
    tree = results[0]
    assert tree.name == f"debian13-{image.key(['deb http://m.invalid trixie'])}"
    assert calls.read_text().count("\n") == 1  # the second build waited and reused the first
    assert images.is_complete(tree)
    assert not list((tree / "etc/ssh").glob("ssh_host_*"))  # every host gets its own key
    assert not list(cache.glob(".*.build-*"))
    assert images.build(image, cache) == tree and calls.read_text().count("\n") == 1


def test_a_failed_build_leaves_no_tree_and_names_its_log(fake_build, monkeypatch):
    calls, cache = fake_build
    monkeypatch.setenv("FAKE_FAIL", "1")
    image = images.get("debian13")
    with pytest.raises(
        images.ImageError, match=r"mmdebstrap exited 1 \(log: .*\): E: cannot reach"
    ):
        images.build(image, cache)
    assert not images.is_complete(images.cached_path(image, cache))
    assert [p.name for p in cache.iterdir() if not p.name.endswith((".lock", ".log"))] == []

    monkeypatch.delenv("FAKE_FAIL")
    assert images.is_complete(images.build(image, cache))


def test_a_killed_builds_leftovers_are_removed_by_the_next_build(fake_build):
    calls, cache = fake_build
    image = images.get("debian13")
    final = images.cached_path(image, cache)
    half = cache / f".{final.name}.build-killed"
    (half / "etc").mkdir(parents=True)
    (final / "etc").mkdir(parents=True)  # a tree without its marker is not an image
    (final / "etc/half-written").write_text("")
    assert images.build(image, cache) == final
    assert images.is_complete(final) and not (final / "etc/half-written").exists()
    assert not half.exists()
