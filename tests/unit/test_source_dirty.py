"""Which files of the work tree are not committed: named whole, whatever their status column."""

from __future__ import annotations

import subprocess

from mlctl.project import source


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_dirty_files_are_named_whole(tmp_path):
    git(tmp_path, "init", "-q")
    for name in ("scripts.sh", "staged.txt"):
        (tmp_path / name).write_text("v1\n")
    git(tmp_path, "add", "-A")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-qm", "v1")
    (tmp_path / "scripts.sh").write_text("v2\n")  # " M scripts.sh": status starts with a space
    (tmp_path / "staged.txt").write_text("v2\n")
    git(tmp_path, "add", "staged.txt")  # "M  staged.txt"
    (tmp_path / "untracked.txt").write_text("")
    assert sorted(source.dirty_files(str(tmp_path))) == ["scripts.sh", "staged.txt"]
