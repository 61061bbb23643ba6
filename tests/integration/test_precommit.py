"""The pre-commit hooks `mlctl init` writes, run by pre-commit in real repositories (issue 17).

A fresh `django-admin startproject` gets the whole set; the corpus projects (../shared/corpus/) keep
their own `.pre-commit-config.yaml`, to which init adds the hooks they lack. Every hook init writes
installs its tool from the package registry, in a pre-commit cache shared by this session's tests.

The corpus projects' own hooks come from git hosting, which this machine cannot reach, and
pre-commit clones every remote repository of a config before it runs any hook (SKIP does not
prevent that). So the hooks init added to a corpus project run from a config holding exactly them:
the merged file's top-level settings (exclude, default_language_version, ...) and the `repo: local`
block init appended, byte for byte as the merged file says.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from .helpers import ROOT, git, run

BIN = Path(sys.executable).parent
CORPUS = ROOT.parent / "shared" / "corpus"
SETTINGS_FILES = ("pyproject.toml", "setup.cfg", "tox.ini", "ruff.toml", ".ruff.toml", ".isort.cfg")
BAD_VIEW = "import sys\nimport os\ndef index( request ):  \n    return  os.name\n"


@pytest.fixture(scope="session")
def hooks_env(tmp_path_factory) -> dict:
    """A developer's environment with mlctl and pre-commit; one pre-commit cache per session."""
    if not (BIN / "pre-commit").exists():
        pytest.fail("pre-commit is missing: pip install -e '.[dev]'", pytrace=False)
    home = tmp_path_factory.mktemp("pre-commit-home")
    gitconfig = home / "gitconfig"  # the caller's git settings (core.hooksPath...) stay out
    gitconfig.write_text("[user]\n\temail = tests@mlctl.invalid\n\tname = tests\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLCTL_", "GIT_"))}
    env.update(
        PRE_COMMIT_HOME=str(home),
        GIT_CONFIG_GLOBAL=str(gitconfig),
        GIT_CONFIG_NOSYSTEM="1",
        MLCTL_STATE_DIR=str(home / "state"),
        NO_COLOR="1",
        COLUMNS="200",
    )
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def sh(env: dict, cwd: Path, *argv, check: bool = True) -> subprocess.CompletedProcess:
    p = run(argv, cwd, env, timeout=900, check=False)
    p.out = p.stdout + p.stderr
    if check:
        assert p.returncode == 0, f"{' '.join(map(str, argv))} exited {p.returncode}:\n{p.out}"
    return p


def pre_commit(env: dict, repo: Path, *args, check: bool = False):
    return sh(env, repo, BIN / "pre-commit", *args, check=check)


def mlctl_init(env: dict, repo: Path) -> str:
    return sh(env, repo, sys.executable, "-m", "mlctl.cli", "init").out


def commit(env: dict, repo: Path, message: str, check: bool = True):
    sh(env, repo, "git", "add", "-A")
    return sh(env, repo, "git", "commit", "-qm", message, check=check)


def verdicts(output: str) -> dict[str, str]:
    """pre-commit's result line of each hook, by hook name."""
    return dict(
        re.findall(r"^(\S[^\n]*?)\.{3,}(?:\([^)]*\))?(Passed|Failed|Skipped)$", output, re.M)
    )


# ---------------------------------------------------------------- a fresh startproject


@pytest.fixture
def startproject(tmp_path, hooks_env) -> Path:
    # Without a black on PATH, as many make theirs: Django formats a new project with black if it
    # finds one.
    plain = {**hooks_env, "PATH": "/usr/bin:/bin"}
    sh(plain, tmp_path, BIN / "django-admin", "startproject", "mysite")
    project = tmp_path / "mysite"
    (project / "requirements.txt").write_text("Django==5.2.19\ngunicorn==27.0.1\npsycopg[binary]\n")
    sh(hooks_env, project, "git", "init", "-q", "-b", "main")
    commit(hooks_env, project, "startproject mysite")
    return project


def test_startproject_gets_every_hook_and_a_badly_formatted_commit_is_refused(
    startproject, hooks_env
):
    project, env = startproject, hooks_env
    out = mlctl_init(env, project)
    assert "wrote .pre-commit-config.yaml" in out
    assert re.search(
        r"^Hooks: pre-commit install && pre-commit run --all-files, once: the first run may "
        r"reformat many files; review them and commit them on their own$",
        out,
        re.M,
    ), out
    config = yaml.safe_load((project / ".pre-commit-config.yaml").read_text())
    ids = [h["id"] for repo in config["repos"] for h in repo["hooks"]]
    assert ids == [
        "trailing-whitespace",
        "end-of-file-fixer",
        "check-yaml",
        "isort",
        "black",
        "ruff",
        "mlctl-inventory",
        "tests",
    ]
    commit(env, project, "Deploy with mlctl")
    p = pre_commit(env, project, "install", check=True)
    assert "pre-commit installed at .git/hooks/pre-commit" in p.out
    assert "pre-commit installed at .git/hooks/pre-push" in p.out

    # The first run, as init's closing line says: it reformats startproject's files, once.
    unformatted = "'django.contrib.admin'" in (project / "mysite" / "settings.py").read_text()
    first = pre_commit(env, project, "run", "--all-files")
    if unformatted:
        assert verdicts(first.out)["black"] == "Failed", first.out
        assert "reformatted manage.py" in first.out
    second = pre_commit(env, project, "run", "--all-files")
    assert second.returncode == 0, second.out  # the hooks agree with each other and init's files
    commit(env, project, "Apply the pre-commit hooks")  # through the hooks: they pass
    head = git(project, "rev-parse", "HEAD")

    (project / "mysite" / "views.py").write_text(BAD_VIEW)
    refused = commit(env, project, "A badly formatted view", check=False)
    assert refused.returncode != 0 and git(project, "rev-parse", "HEAD") == head
    assert verdicts(refused.out) == {
        "trailing whitespace": "Failed",
        "end of file": "Passed",
        "yaml syntax": "Skipped",
        "isort": "Failed",
        "black": "Failed",
        "ruff": "Failed",
        "mlctl inventory is valid": "Skipped",
    }, refused.out
    assert "F401" in refused.out and "`sys` imported but unused" in refused.out
    # The fixers rewrote the file; what ruff reports is for its author to fix.
    assert (project / "mysite" / "views.py").read_text() == (
        "import os\nimport sys\n\n\ndef index(request):\n    return os.name\n"
    )
    assert commit(env, project, "Still an unused import", check=False).returncode != 0
    (project / "mysite" / "views.py").write_text(
        "import os\n\n\ndef index(request):\n    return os.name\n"
    )
    commit(env, project, "A view")
    assert git(project, "rev-parse", "HEAD") != head


BAD = {  # hook id: (file, a text the hook refuses, the text it leaves when it fixes it)
    "trailing-whitespace": ("notes.txt", "one  \ntwo\n", "one\ntwo\n"),
    "end-of-file-fixer": ("notes.txt", "one\ntwo", "one\ntwo\n"),
    "check-yaml": ("data.yaml", "a: [1, 2\n", None),
    "isort": ("mysite/imports.py", "import sys\nimport os\n\nprint(os, sys)\n", None),
    "black": ("mysite/spacing.py", "x = ( 1 )\n", "x = 1\n"),
    "ruff": ("mysite/unused.py", "import os\n", None),
}


def test_each_hook_init_writes_runs_and_refuses_what_it_checks(startproject, hooks_env):
    project, env = startproject, hooks_env
    mlctl_init(env, project)
    pre_commit(env, project, "run", "--all-files")  # the first run's reformatting
    commit(env, project, "Deploy with mlctl, formatted")
    for hook_id, (name, bad, fixed) in BAD.items():
        ok = pre_commit(env, project, "run", hook_id, "--all-files")
        assert ok.returncode == 0 and "Passed" in ok.out, f"{hook_id}: {ok.out}"
        path = project / name
        path.write_text(bad)
        sh(env, project, "git", "add", name)  # pre-commit sees a fix as a change to the index
        refused = pre_commit(env, project, "run", hook_id, "--files", name)
        assert refused.returncode == 1 and "Failed" in refused.out, f"{hook_id}: {refused.out}"
        if fixed is not None:
            assert path.read_text() == fixed, hook_id
        path.unlink()
        sh(env, project, "git", "rm", "-q", "--cached", name)

    inventory = project / "environments.yaml"
    good = inventory.read_text()
    ok = pre_commit(env, project, "run", "mlctl-inventory", "--all-files")
    assert ok.returncode == 0 and "mlctl inventory is valid" in ok.out, ok.out
    inventory.write_text(good + "bogus: 1\n")
    refused = pre_commit(env, project, "run", "mlctl-inventory", "--files", "environments.yaml")
    assert refused.returncode == 1 and "bogus: unknown key" in refused.out, refused.out
    inventory.write_text(good)

    # The project's tests run on push: a failing test refuses the push, a passing one lets it go.
    remote = project.parent / "remote.git"
    sh(env, project.parent, "git", "init", "-q", "--bare", remote)
    sh(env, project, "git", "remote", "add", "origin", remote)
    pre_commit(env, project, "install", check=True)
    tests = project / "mysite" / "tests.py"
    tests.write_text(
        "from django.test import SimpleTestCase\n\n\nclass T(SimpleTestCase):\n"
        "    def test_sum(self):\n        self.assertEqual(1 + 1, 3)\n"
    )
    commit(env, project, "A failing test")
    push = sh(env, project, "git", "push", "-q", "origin", "main", check=False)
    assert push.returncode != 0, push.out
    # On push pre-commit also runs again every hook without a stage of its own: they pass.
    ran = verdicts(push.out)
    assert ran.pop("project tests") == "Failed" and set(ran.values()) <= {"Passed", "Skipped"}
    assert "FAILED (failures=1)" in push.out
    assert sh(env, remote, "git", "branch", "--list").out.strip() == ""  # nothing pushed
    tests.write_text(tests.read_text().replace("1 + 1, 3", "1 + 1, 2"))
    commit(env, project, "The test fixed")
    push = sh(env, project, "git", "push", "-q", "origin", "main")
    assert verdicts(push.out)["project tests"] == "Passed", push.out


# ---------------------------------------------------------------- the corpus


def corpus_project(name: str, parent: Path, env: dict) -> Path:
    """The corpus project unpacked, git init, committed; skipped (failed under CI) if missing."""
    tarball = CORPUS / f"{name}.tar.gz"
    if not tarball.is_file():
        why = f"{tarball} is missing (the real projects of ../shared/corpus/, see its README)"
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    with tarfile.open(tarball) as tar:
        tar.extractall(parent, filter="data")
    project = parent / name
    sh(env, project, "git", "init", "-q", "-b", "main")
    commit(env, project, f"{name} as published")
    return project


def tool_settings(project: Path) -> dict[str, bytes]:
    return {n: (project / n).read_bytes() for n in SETTINGS_FILES if (project / n).is_file()}


# What init adds to each corpus project, and why it leaves out the rest (their config's own hooks
# and settings): all three format with ruff-format, which Black would fight.
CORPUS_ADDS = {
    "bakerydemo": ["check-yaml", "mlctl-inventory", "tests"],
    "cookie_shop": ["mlctl-inventory", "tests"],
    "djangopackages": ["check-yaml", "isort", "mlctl-inventory", "tests"],
}


@pytest.mark.parametrize("name", sorted(CORPUS_ADDS))
def test_corpus_config_keeps_every_hook_and_setting_and_gains_the_missing_ones(
    name, tmp_path, hooks_env
):
    env = hooks_env
    project = corpus_project(name, tmp_path, env)
    config = project / ".pre-commit-config.yaml"
    before, settings = config.read_text(), tool_settings(project)
    assert settings  # each has [tool.ruff] or ruff.toml
    out = mlctl_init(env, project)
    added = CORPUS_ADDS[name]
    assert f"added hooks {', '.join(added)} to .pre-commit-config.yaml" in out, out
    assert "black (the project's ruff-format hook does that job)" in out
    after = config.read_text()
    diff = list(difflib.ndiff(before.splitlines(), after.splitlines()))
    assert not [line for line in diff if line.startswith("- ")], "a line of theirs changed"
    old, new = yaml.safe_load(before), yaml.safe_load(after)
    assert new["repos"][:-1] == old["repos"]  # every hook of theirs, in its order
    assert [h["id"] for h in new["repos"][-1]["hooks"]] == added
    assert {k: v for k, v in new.items() if k not in ("repos", "default_install_hook_types")} == {
        k: v for k, v in old.items() if k != "repos"
    }
    assert tool_settings(project) == settings
    pre_commit(env, project, "validate-config", ".pre-commit-config.yaml", check=True)
    p = pre_commit(env, project, "install", check=True)  # installing needs no clone
    assert "pre-commit installed at .git/hooks/pre-push" in p.out
    again = mlctl_init(env, project)
    assert "nothing changed" in again and config.read_text() == after


def interpreter_path(version: str, env: dict) -> str | None:
    """A PATH entry holding `version` (python3.12): None when PATH has one already."""
    on_path = shutil.which(version, path=env["PATH"])
    if on_path and sh(env, Path("/"), on_path, "--version", check=False).returncode == 0:
        return None  # (a pyenv shim of a version not selected exits 127)
    pyenv = shutil.which("pyenv", path=env["PATH"])
    if pyenv:
        root = Path(sh(env, Path("/"), pyenv, "root").out.strip())
        for found in sorted(root.glob(f"versions/{version.removeprefix('python')}*/bin/{version}")):
            return str(found.parent)
    pytest.skip(f"{version} is not installed: djangopackages' hooks run under it")


def test_corpus_project_runs_the_added_hooks_and_refuses_a_badly_formatted_commit(
    tmp_path, hooks_env
):
    env = dict(hooks_env)
    project = corpus_project("djangopackages", tmp_path, env)
    mlctl_init(env, project)
    commit(env, project, "Deploy with mlctl")
    merged = yaml.safe_load((project / ".pre-commit-config.yaml").read_text())
    python = merged["default_language_version"]["python"]
    extra = interpreter_path(python, env)
    if extra:
        env["PATH"] = f"{BIN}{os.pathsep}{extra}{os.pathsep}{env['PATH']}"
    added = tmp_path / "added-hooks.yaml"  # the hooks init added, as the merged file has them
    added.write_text(yaml.safe_dump({**merged, "repos": merged["repos"][-1:]}, sort_keys=False))
    c = ("-c", str(added))

    # The first run: isort sorts the imports of many files. The project's formatter
    # (ruff-format) agrees with what isort's Black profile leaves.
    formatted = sh(env, project, BIN / "ruff", "format", "--check", ".", check=False)
    first = pre_commit(env, project, "run", *c, "--all-files")
    assert verdicts(first.out) == {
        "yaml syntax": "Passed",
        "isort": "Failed",
        "mlctl inventory is valid": "Passed",
    }, first.out
    changed = git(project, "diff", "--name-only").splitlines()
    assert len(changed) > 5 and all(name.endswith(".py") for name in changed), changed
    assert git(project, "ls-files", "--others", "--exclude-standard") == ""
    after = sh(env, project, BIN / "ruff", "format", "--check", ".", check=False)
    assert after.returncode == formatted.returncode == 0, after.out
    second = pre_commit(env, project, "run", *c, "--all-files")
    assert second.returncode == 0, second.out
    commit(env, project, "Sort the imports")

    # Each added hook by its id (the tests at the pre-push stage): they run the project's pytest,
    # which imports the project's settings; its dependencies are not installed here.
    for hook_id, name in [
        ("check-yaml", "yaml syntax"),
        ("isort", "isort"),
        ("mlctl-inventory", "mlctl inventory is valid"),
    ]:
        p = pre_commit(env, project, "run", *c, hook_id, "--all-files")
        assert p.returncode == 0 and verdicts(p.out) == {name: "Passed"}, p.out
    tests = pre_commit(env, project, "run", *c, "tests", "--hook-stage", "pre-push", "--all-files")
    assert verdicts(tests.out) == {"project tests": "Failed"}, tests.out
    assert "No module named 'environ'" in tests.out  # django-environ, a djangopackages dependency

    # A commit of a badly formatted file is refused, by the hooks as git runs them.
    pre_commit(env, project, "install", *c, check=True)
    head = git(project, "rev-parse", "HEAD")
    (project / "package" / "bad_view.py").write_text("import sys\nimport os\n\nprint(os, sys)\n")
    refused = commit(env, project, "A badly formatted file", check=False)
    assert refused.returncode != 0 and git(project, "rev-parse", "HEAD") == head
    assert verdicts(refused.out)["isort"] == "Failed", refused.out
    assert commit(env, project, "The file as isort left it").returncode == 0
