"""`mlctl init`: what it finds in a Django project, what it writes, and that the result works."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlctl.cli.registry import TASKS
from mlctl.config import inventory
from mlctl.project import project_facts
from mlctl.tasks import init, init_files, init_values

from .conftest import BIN, clean_environ, one_line

TEMPLATES = Path(init.__file__).parents[1] / "templates"
WRITTEN = (
    "environments.yaml",
    "fabfile.py",
    "tasks.py",
    "Makefile",
    ".pre-commit-config.yaml",
    "WORKFLOW.md",
    "mysite/settings_deploy.py",
    "mysite/wsgi_deploy.py",
    "mysite/healthz.py",
)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def stock(tmp_path_factory) -> Path:
    """What `django-admin startproject mysite` makes (the real command), made once."""
    parent = tmp_path_factory.mktemp("stock")
    subprocess.run([str(BIN / "django-admin"), "startproject", "mysite"], cwd=parent, check=True)
    return parent / "mysite"


def startproject(parent: Path, stock: Path) -> Path:
    """A copy of the stock project plus requirements and git."""
    project = parent / "mysite"
    shutil.copytree(stock, project)
    (project / "requirements.txt").write_text("Django==5.2.19\ngunicorn==27.0.1\npsycopg[binary]\n")
    git(project, "init", "-q", "-b", "main")
    return project


@pytest.fixture
def project(tmp_path, stock):
    return startproject(tmp_path, stock)


@pytest.fixture
def run_init(tmp_path):
    def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "mlctl.cli", "init", *args],
            cwd=cwd or tmp_path,
            env=clean_environ(tmp_path),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )

    return run


def snapshot(root: Path) -> dict:
    return {
        p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }


# ---------------------------------------------------------------- writing


def test_init_writes_every_file_and_the_next_three_commands(project, run_init):
    p = run_init(str(project))
    assert p.returncode == 0, p.stderr
    for name in WRITTEN:
        assert (project / name).is_file(), name
        assert f"wrote {name}" in p.stderr
    assert not (project / ".github").exists() and not (project / ".gitlab-ci.yml").exists()
    steps = re.findall(r"^\s+\d\. (.*)$", p.stderr, re.M)
    assert len(steps) == 3, p.stderr
    assert "environments.yaml" in steps[0] and "git commit" in steps[0]
    assert steps[1:] == ["cd mysite && mlctl test setup", "cd mysite && mlctl test deploy"]
    for text in (project / name for name in WRITTEN):
        assert not init_files.PLACEHOLDER.search(text.read_text()), text


def test_generated_inventory_validates_with_the_loader(project, run_init, mlctl):
    assert run_init(str(project)).returncode == 0
    path = project / "environments.yaml"
    p = mlctl("--inventory", str(path), "dev", "config", "--json")
    assert p.returncode == 0, p.stderr
    inv = inventory.load(path)
    assert inv.environments == ["dev", "test", "live"]
    assert inv.data["project"] == {
        "name": "mysite",
        "source": {"repo": ".", "subdir": ""},
        "settings_module": "mysite.settings_deploy",
        "wsgi": "mysite.wsgi_deploy:application",
        "requirements": "requirements.txt",
        "tests": "python manage.py test",
    }
    dev = inventory.resolve(inv, "dev", {})
    port = init_values.dev_port("mysite")
    assert dev.local and dev["service"] == "pidfile" and dev["bind"] == f"127.0.0.1:{port}"
    assert dev["database"]["engine"] == "sqlite"
    assert dev["health"]["url"] == f"http://127.0.0.1:{port}/healthz"  # derived from bind
    assert dev.project["source"]["repo"] == str(project)
    test = inventory.resolve(inv, "test", {})
    assert test["require_tests"] and test["branch"] == "main"
    assert test["env"] == {"DJANGO_SETTINGS_MODULE": "mysite.settings_deploy"}
    assert test["database"]["engine"] == "postgresql" and test["deploy_to"] == "/srv/mysite"
    live = inventory.resolve(inv, "live", {})
    assert live["protected"] and live["allowed_users"] and live["confirm"] == "typed"
    text = path.read_text()
    assert text.count("# EDIT") >= 5  # hosts of test and live, user, known_hosts, identity_file
    for env in ("test", "live"):
        assert "mlctl" not in " ".join(inventory.resolve(inv, env, {})["hosts"])


def test_second_run_changes_nothing_and_says_so(project, run_init):
    assert run_init(str(project)).returncode == 0
    before = snapshot(project)
    p = run_init(str(project))
    assert p.returncode == 0, p.stderr
    assert "nothing changed" in p.stderr and "wrote" not in p.stderr
    assert snapshot(project) == before


def test_existing_files_are_skipped_unless_force(project, run_init):
    (project / "Makefile").write_text("all:\n\techo mine\n")
    (project / "WORKFLOW.md").write_text("# ours\n")
    p = run_init(str(project))
    assert p.returncode == 0
    assert "skipped Makefile (exists; --force overwrites it)" in p.stderr
    assert "skipped WORKFLOW.md" in p.stderr
    assert (project / "Makefile").read_text() == "all:\n\techo mine\n"
    p = run_init(str(project))
    assert "nothing changed" in p.stderr and "skipped Makefile" in p.stderr
    p = run_init(str(project), "--force")
    assert p.returncode == 0 and "wrote Makefile" in p.stderr and "wrote WORKFLOW.md" in p.stderr
    assert "$(MLCTL) test deploy" in (project / "Makefile").read_text()


def test_path_without_manage_py_fails_with_one_line(tmp_path, run_init):
    (tmp_path / "empty").mkdir()
    p = run_init(str(tmp_path / "empty"))
    assert p.returncode == 2
    assert "not a Django project" in one_line(p.stderr)
    p = run_init(str(tmp_path / "missing"))
    assert p.returncode == 2 and "not a directory" in one_line(p.stderr)
    assert not list((tmp_path / "empty").iterdir())


def test_default_path_is_the_current_directory(project, run_init):
    p = run_init(cwd=project)
    assert p.returncode == 0, p.stderr
    assert (project / "environments.yaml").is_file()


def test_nested_project_gets_subdir_and_files_at_the_target(tmp_path, run_init, mlctl):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "trunk")
    subprocess.run([str(BIN / "django-admin"), "startproject", "shopsite"], cwd=repo, check=True)
    (repo / "shopsite" / "requirements.txt").write_text("Django\ngunicorn\npsycopg2-binary\n")
    p = run_init(str(repo))
    assert p.returncode == 0, p.stderr
    inv = inventory.load(repo / "environments.yaml")
    assert inv.data["project"]["source"] == {"repo": ".", "subdir": "shopsite"}
    assert inv.data["project"]["name"] == "shopsite"
    assert inventory.resolve(inv, "test", {})["branch"] == "trunk"
    assert (repo / "shopsite" / "shopsite" / "settings_deploy.py").is_file()
    assert "cd shopsite && $(PYTHON) manage.py test" in (repo / "Makefile").read_text()
    assert mlctl("--inventory", str(repo / "environments.yaml"), "test", "config").returncode == 0


def test_name_is_sanitized_and_generic_packages_use_the_directory(tmp_path):
    assert project_facts.sanitize_name("My Site!") == "my-site"
    assert project_facts.sanitize_name("9lives_app") == "lives_app"
    assert project_facts.sanitize_name("___") == "app"
    assert re.fullmatch(r"[a-z][a-z0-9_-]{0,40}", project_facts.sanitize_name("x" * 80))
    root = tmp_path / "Acme Shop"
    root.mkdir()
    subprocess.run([str(BIN / "django-admin"), "startproject", "config", "."], cwd=root, check=True)
    project = project_facts.inspect(root)
    assert project.settings_module == "config.settings" and project.name == "acme-shop"


def test_pyproject_dependencies_become_a_requirements_file(tmp_path, stock, run_init):
    project = tmp_path / "mysite"
    shutil.copytree(stock, project)
    (project / "pyproject.toml").write_text(
        '[project]\nname = "mysite"\nversion = "1"\ndependencies = ["Django>=5.2,<6", "requests"]\n'
    )
    p = run_init(str(project))
    assert p.returncode == 0, p.stderr
    text = (project / "requirements.txt").read_text()
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert lines == ["Django>=5.2,<6", "requests", "gunicorn", "psycopg[binary]"]
    assert "pyproject.toml" in text and "wrote requirements.txt" in p.stderr
    assert "made from pyproject.toml" in p.stderr


def test_missing_server_packages_are_pointed_out(project, run_init):
    (project / "requirements.txt").write_text("Django==5.2.19\n")
    p = run_init(str(project))
    assert "the requirements name no gunicorn: mlctl installs gunicorn==27.0.1" in p.stderr
    assert "add psycopg[binary] to requirements.txt" in p.stderr


def test_server_packages_are_read_from_the_whole_closure_of_the_requirements(project, run_init):
    """bakerydemo: requirements.txt is `-r requirements/production.txt`, which names psycopg
    (and uwsgi, no gunicorn) and includes base.txt."""
    (project / "requirements.txt").write_text("-r requirements/production.txt\n")
    (project / "requirements").mkdir()
    (project / "requirements/production.txt").write_text(
        "-r base.txt\nuwsgi>=2.0.17,<2.1\npsycopg[binary]>=3.3.3,<3.4\n"
    )
    (project / "requirements/base.txt").write_text("Django==5.2.19\n")
    p = run_init(str(project))
    assert "add psycopg" not in p.stderr and "add gunicorn" not in p.stderr
    assert "the requirements name no gunicorn: mlctl installs gunicorn==27.0.1" in p.stderr


def test_pytest_projects_gate_on_pytest(project):
    assert project_facts.inspect(project).tests == "python manage.py test"
    (project / "pytest.ini").write_text("[pytest]\nDJANGO_SETTINGS_MODULE = mysite.settings\n")
    assert project_facts.inspect(project).tests == "python -m pytest -q"


def test_settings_facts_are_found(project):
    settings = project / "mysite" / "settings.py"
    settings.write_text(
        settings.read_text()
        + "\nSTATIC_ROOT = BASE_DIR / 'collected'\nimport dj_database_url\n"
        + "DATABASES = {'default': dj_database_url.config()}\n"
        + "WSGI_APPLICATION = 'mysite.wsgi.application'\n"
    )
    p = project_facts.inspect(project)
    assert p.wsgi == "mysite.wsgi:application"
    assert "database sqlite3 via DATABASE_URL" in p.facts
    assert any("STATIC_ROOT" in n and "staticfiles" in n for n in p.notes)


# ---------------------------------------------------------------- the deploy settings


def test_deploy_settings_pass_check_deploy_and_read_the_env_file(project, run_init, tmp_path):
    assert run_init(str(project)).returncode == 0
    key = "k3y-" + "abcdefghij" * 6
    (project / ".env").write_text(
        f"SECRET_KEY={key}\nDEBUG=0\nALLOWED_HOSTS=web1.example.internal,127.0.0.1\n"
        f"DATABASE_URL=sqlite:///{tmp_path}/db.sqlite3\nMEDIA_ROOT={tmp_path}/media\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "SECRET_KEY")}
    env["DJANGO_SETTINGS_MODULE"] = "mysite.settings_deploy"

    def manage(*args):
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
        )

    p = manage("check", "--deploy", "--fail-level", "WARNING")
    assert p.returncode == 0, p.stdout + p.stderr
    code = (
        "from django.conf import settings as s; import json; print(json.dumps([s.DEBUG, "
        "s.SECRET_KEY, s.ALLOWED_HOSTS, s.DATABASES['default']['NAME'], s.STATIC_ROOT, "
        "s.MEDIA_ROOT, s.MEDIA_URL, s.MIDDLEWARE[0], s.ROOT_URLCONF]))"
    )
    out = manage("shell", "-c", code)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [
        False,
        key,
        ["web1.example.internal", "127.0.0.1"],
        f"{tmp_path}/db.sqlite3",
        str(project / "staticfiles"),
        f"{tmp_path}/media",
        "/media/",
        "mysite.healthz.HealthMiddleware",
        "mysite.urls",
    ]
    env["DATABASE_URL"] = "postgresql://app%40x:p%2Fw@db.internal:5433/shop?sslmode=require"
    code = "from django.conf import settings as s; import json; print(json.dumps(s.DATABASES))"
    db = json.loads(manage("shell", "-c", code).stdout.strip().splitlines()[-1])["default"]
    assert (db["ENGINE"], db["NAME"], db["USER"], db["PASSWORD"], db["HOST"], db["PORT"]) == (
        "django.db.backends.postgresql",
        "shop",
        "app@x",
        "p/w",
        "db.internal",
        "5433",
    )
    assert db["OPTIONS"] == {"sslmode": "require", "connect_timeout": "5"}
    # Without the deploy settings the stock settings fail the same check: that is why they exist.
    env["DJANGO_SETTINGS_MODULE"] = "mysite.settings"
    assert manage("check", "--deploy", "--fail-level", "WARNING").returncode != 0


def test_wsgi_deploy_serves_healthz_with_the_release(project, run_init, tmp_path):
    assert run_init(str(project)).returncode == 0
    (project / "REVISION").write_text("20250102030405-abcdef012345\n")
    (project / ".env").write_text(
        "SECRET_KEY=" + "s" * 60 + f"\nDATABASE_URL=sqlite:///{tmp_path}/h.sqlite3\n"
        "ALLOWED_HOSTS=localhost\n"
    )
    code = (
        "import sys, io, json; sys.path.insert(0, '.'); import mysite.wsgi_deploy as w; "
        "from django.conf import settings; out = {}; "
        "env = {'REQUEST_METHOD': 'GET', 'PATH_INFO': '/healthz', 'SERVER_NAME': '10.0.0.1', "
        "'SERVER_PORT': '80', 'wsgi.input': io.BytesIO(), 'wsgi.url_scheme': 'http', "
        "'HTTP_HOST': '10.0.0.1'}; "
        "body = b''.join(w.application(env, lambda s, h: out.update(status=s))); "
        "print(json.dumps([settings.SETTINGS_MODULE, out['status'], json.loads(body)]))"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    p = subprocess.run(
        [sys.executable, "-c", code], cwd=project, env=env, capture_output=True, text=True
    )
    assert p.returncode == 0, p.stderr
    assert yaml.safe_load(p.stdout) == [
        "mysite.settings_deploy",
        "200 OK",
        {"release": "20250102030405-abcdef012345", "database": "ok", "status": "ok"},
    ]


# ---------------------------------------------------------------- the other files


def test_makefile_has_the_shortcuts_and_runs_the_project_tests(project, run_init):
    assert run_init(str(project)).returncode == 0
    text = (project / "Makefile").read_text()
    for target in "dev test live migrate bounce diag rollback check status logs tests".split():
        assert re.search(rf"^(\S+ )*{target}( \S+)*:", text, re.M), target
    assert "demo" not in text and "bench" not in text
    p = subprocess.run(
        ["make", "--no-print-directory", "-n", "tests", "diag", "ENV=live"],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["python3 manage.py test", "mlctl live diag"]


def test_fabfile_tasks_and_precommit(project, run_init):
    assert run_init(str(project)).returncode == 0
    for name in ("fabfile.py", "tasks.py"):
        assert (project / name).read_text() == (Path(init.__file__).parents[3] / name).read_text()
    config = yaml.safe_load((project / ".pre-commit-config.yaml").read_text())
    hooks = {h["id"]: h for repo in config["repos"] for h in repo["hooks"]}
    assert all(repo["repo"] == "local" for repo in config["repos"])
    assert hooks["mlctl-inventory"]["entry"].startswith("mlctl --inventory environments.yaml")
    assert re.match(hooks["mlctl-inventory"]["files"], "environments.yaml")
    assert hooks["tests"]["entry"] == "python manage.py test"
    assert hooks["tests"]["stages"] == ["pre-push"]
    workflow = (project / "WORKFLOW.md").read_text()
    assert workflow.startswith("# Workflow: deploying and operating mysite with mlctl")
    assert "mysite.settings_deploy" in workflow and "examples/djangoapp" not in workflow


THEIR_HOOKS = """\
# Our hooks.
repos:
  - repo: https://github.com/psf/black
    rev: 24.1.0
    hooks:
      - id: black
        args: [--quiet]
"""


def test_an_existing_precommit_config_gains_the_missing_hooks_once(project, run_init):
    config = project / ".pre-commit-config.yaml"
    config.write_text(THEIR_HOOKS)
    p = run_init(str(project))
    assert p.returncode == 0, p.stderr
    added = (
        "trailing-whitespace, end-of-file-fixer, check-yaml, isort, ruff, mlctl-inventory, tests"
    )
    assert f"added hooks {added} to .pre-commit-config.yaml (its 1 hook(s) kept)" in p.stderr
    assert "skipped .pre-commit-config.yaml" not in p.stderr
    assert "pre-commit run --all-files, once: the first run may reformat many files" in p.stderr
    text = config.read_text()
    assert text.startswith("default_install_hook_types: [pre-commit, pre-push]\n" + THEIR_HOOKS)
    repos = yaml.safe_load(text)["repos"]
    assert repos[0] == yaml.safe_load(THEIR_HOOKS)["repos"][0]
    assert [h["id"] for h in repos[1]["hooks"]] == added.split(", ")
    again = run_init(str(project))
    assert "nothing changed" in again.stderr and config.read_text() == text
    # --force rewrites init's own files, never the project's hooks.
    forced = run_init(str(project), "--force")
    assert forced.returncode == 0 and config.read_text() == text


def test_the_project_tool_settings_shape_the_hooks_and_stay_untouched(project, run_init):
    pyproject = "[tool.black]\nline-length = 100\n\n[tool.ruff.lint]\nselect = ['E', 'F', 'I']\n"
    (project / "pyproject.toml").write_text(pyproject)
    p = run_init(str(project))
    assert p.returncode == 0, p.stderr
    assert "not added isort (ruff sorts the imports: rule I in pyproject.toml)" in p.stderr
    config = yaml.safe_load((project / ".pre-commit-config.yaml").read_text())
    hooks = {h["id"]: h for repo in config["repos"] for h in repo["hooks"]}
    assert "isort" not in hooks  # ruff's rule I sorts the imports
    assert hooks["black"]["entry"] == "black"  # which reads [tool.black] itself
    assert (project / "pyproject.toml").read_text() == pyproject
    (project / ".isort.cfg").write_text("[settings]\nprofile = google\n")
    (project / "pyproject.toml").write_text("[tool.black]\nline-length = 100\n")
    (project / ".pre-commit-config.yaml").unlink()
    assert run_init(str(project)).returncode == 0
    config = yaml.safe_load((project / ".pre-commit-config.yaml").read_text())
    hooks = {h["id"]: h for repo in config["repos"] for h in repo["hooks"]}
    assert hooks["isort"]["entry"] == "isort --filter-files"  # the project's own profile


def test_an_unreadable_precommit_config_is_refused_with_one_line(project, run_init):
    (project / ".pre-commit-config.yaml").write_text("repos:\n  - repo: [\n")
    p = run_init(str(project))
    assert p.returncode == 2
    line = one_line(p.stderr)
    assert ".pre-commit-config.yaml: not valid YAML (line 3)" in line and "fix it" in line
    assert not (project / "environments.yaml").exists()


@pytest.mark.parametrize("ci", ["github", "gitlab"])
def test_ci_templates_are_valid_yaml_and_deploy_with_fab(project, run_init, ci):
    p = run_init(str(project), "--ci", ci)
    assert p.returncode == 0, p.stderr
    path = project / (".github/workflows/deploy.yml" if ci == "github" else ".gitlab-ci.yml")
    text = path.read_text()
    data = yaml.safe_load(text)
    assert not init_files.PLACEHOLDER.search(text)
    assert 'fab test deploy --ref "$' in text
    assert "MLCTL_LOG_DIR" in text and "ci-logs" in text
    assert "DEPLOY_SSH_KEY" in text and "DEPLOY_KNOWN_HOSTS" in text
    assert not re.search(r"\bMLCTL_(SSH|KEY|SECRET)", text)  # MLCTL_* would be inventory keys
    if ci == "github":
        jobs = data["jobs"]
        assert jobs["deploy-test"]["needs"] == "tests"
        assert data[True]["push"]["branches"] == ["main"]  # YAML 1.1 reads `on:` as true
        steps = jobs["deploy-test"]["steps"]
        upload = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact")][0]
        assert upload["if"] == "always()" and upload["with"]["path"] == "ci-logs/"
        assert any(s.get("run") == "python manage.py test" for s in jobs["tests"]["steps"])
        assert "${{ secrets.DEPLOY_SSH_KEY }}" in text
    else:
        assert data["stages"] == ["test", "deploy"]
        job = data["deploy-test"]
        assert job["needs"] == ["tests"] and job["artifacts"]["when"] == "always"
        assert job["artifacts"]["paths"] == ["ci-logs/"]
        assert job["variables"]["MLCTL_IDENTITY_FILE"] == "$DEPLOY_SSH_KEY"
        assert "cd . && python manage.py test" in data["tests"]["script"]
    # The CI environment's MLCTL_* variables are valid overrides for the generated inventory.
    env = {"MLCTL_IDENTITY_FILE": "/tmp/key", "MLCTL_KNOWN_HOSTS": "/tmp/kh", "MLCTL_LOG_DIR": "x"}
    cfg = inventory.resolve(inventory.load(project / "environments.yaml"), "test", env)
    assert cfg["identity_file"] == "/tmp/key" and cfg["known_hosts"] == "/tmp/kh"


# ---------------------------------------------------------------- shell completion


def _flags(spec) -> list[str]:
    out = []
    for o in spec.opts:
        if not o.positional:
            out.append("--" + o.name.replace("_", "-"))
            out += [o.short] if o.short else []
    return out


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_scripts_name_every_task_and_option(shell):
    text = (TEMPLATES / f"completion.{shell}").read_text()
    for spec in TASKS:
        case = re.search(rf"^\s+{spec.name}\) opts=(.*) ;;$", text, re.M)
        assert case, f"{shell}: no options case for {spec.name}"
        assert case.group(1).strip('"()').split() == _flags(spec), spec.name
    words = re.search(r'local tasks="([^"]+)"', text) if shell == "bash" else None
    if words:
        assert words.group(1).split() == [t.name for t in TASKS]
    else:
        assert re.findall(r"^\s+'([a-z]+):", text, re.M) == [t.name for t in TASKS]


def test_bash_completion_completes_tasks_environments_and_options(project, run_init):
    assert run_init(str(project)).returncode == 0
    script = TEMPLATES / "completion.bash"

    def complete(*words: str) -> list[str]:
        words_array = " ".join(f"'{w}'" for w in words)
        code = (
            f"source {script}; COMP_WORDS=({words_array}); COMP_CWORD={len(words) - 1}; "
            '_mlctl; printf "%s\\n" "${COMPREPLY[@]}"'
        )
        p = subprocess.run(["bash", "-c", code], cwd=project, capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        return p.stdout.split()

    assert complete("mlctl", "") == [t.name for t in TASKS] + ["dev", "test", "live"]
    assert complete("mlctl", "li") == ["live"]
    assert complete("mlctl", "live", "roll") == ["rollback"]
    assert complete("mlctl", "live", "rollback", "--db", "re") == ["reverse", "restore"]
    assert "--dry-run" in complete("mlctl", "test", "deploy", "--")


def test_generated_python_passes_default_black_and_ruff(project, run_init):
    assert run_init(str(project)).returncode == 0
    files = [str(project / name) for name in WRITTEN if name.endswith(".py")]
    for tool in ("black", "ruff"):
        if not (BIN / tool).exists():
            pytest.skip(f"{tool} is not installed")
    black = subprocess.run(
        [str(BIN / "black"), "--check", "-q", *files], capture_output=True, text=True
    )
    assert black.returncode == 0, black.stderr
    ruff = subprocess.run(
        [str(BIN / "ruff"), "check", "--isolated", "-q", *files], capture_output=True, text=True
    )
    assert ruff.returncode == 0, ruff.stdout
