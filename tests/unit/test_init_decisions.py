"""The decisions `mlctl init` makes from what it found, as pure functions: which settings module
the servers run and why, which install set (lock, requirements file, made) and what it says of
it, what is written over an existing file, what the settings' readings ask of the user."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlctl.core.errors import UsageError
from mlctl.project import django_layout, project_facts, project_requirements
from mlctl.project.django_layout import SettingsDefaults, pick_settings
from mlctl.project.settings_scan import Read, scan
from mlctl.tasks import init_files, init_values


def exists(*modules: str):
    return lambda module: module in modules


# ---------------------------------------------------------------- the settings module


def test_the_wsgi_default_wins_when_it_is_not_development():
    d = SettingsDefaults("config.settings.local", "config.settings.production", "config/wsgi.py")
    module, why = pick_settings(d, exists("config.settings.production"))
    assert module == "config.settings.production"
    assert why == (
        "config/wsgi.py's default, what the project serves; manage.py's config.settings.local "
        "is for development"
    )


def test_a_development_wsgi_default_does_not_win():
    d = SettingsDefaults("config.settings", "config.local", "config/wsgi.py")
    assert pick_settings(d, exists("config.settings", "config.local")) == (
        "config.settings",
        "manage.py's default",
    )


def test_a_wsgi_default_that_does_not_exist_does_not_win():
    d = SettingsDefaults("site.settings", "site.settings_prod", "site/wsgi.py")
    assert pick_settings(d, exists("site.settings"))[0] == "site.settings"


def test_a_production_module_next_to_the_default_is_chosen_in_the_order_of_the_leaves():
    d = SettingsDefaults("config.settings.dev", "config.settings.dev", "config/wsgi.py")
    module, why = pick_settings(d, exists("config.settings.live", "config.settings.prod"))
    assert module == "config.settings.prod"  # prod comes before live in PRODUCTION_LEAVES
    assert why == (
        "the production module next to config.settings.dev, the default of manage.py and "
        "config/wsgi.py"
    )


def test_a_production_default_is_kept_and_not_replaced_by_a_sibling():
    d = SettingsDefaults("shop.settings.production", None)
    assert pick_settings(d, exists("shop.settings.production", "shop.settings.prod")) == (
        "shop.settings.production",
        "manage.py's default",
    )


def test_a_development_default_without_a_production_module_is_said_so():
    module, why = pick_settings(SettingsDefaults("app.settings.local", None), exists())
    assert module == "app.settings.local"
    assert why == (
        "manage.py's default (it looks like development settings and no production module "
        "was found)"
    )


def test_a_top_level_settings_module_has_no_sibling_to_look_for():
    # package "" never names a module: no ".production" is asked for
    asked = []
    module, _ = pick_settings(SettingsDefaults("settings", None), lambda m: asked.append(m))
    assert module == "settings" and asked == []


def test_a_missing_settings_module_is_one_usage_error(tmp_path):
    with pytest.raises(UsageError, match=r"settings module x\.settings not found under"):
        django_layout.settings_file_of(tmp_path, "x.settings")


# ---------------------------------------------------------------- the install set


def test_server_notes_name_what_the_servers_lack():
    gunicorn, psycopg = project_requirements.server_notes(set(), "requirements.txt")
    assert gunicorn.startswith("the requirements name no gunicorn: mlctl installs gunicorn==")
    assert psycopg.startswith("add psycopg[binary] to requirements.txt: test and live use")
    assert project_requirements.server_notes({"gunicorn", "psycopg2-binary"}, "r.txt") == []


def test_a_lock_is_never_edited_the_notes_point_at_the_project_dependencies():
    notes = project_requirements.lock_notes("uv.lock", {"gunicorn"})
    assert notes == [
        "add psycopg[binary] to the project's dependencies and lock again (uv.lock): test and "
        "live use PostgreSQL (or set database: sqlite in environments.yaml)"
    ]
    poetry = project_requirements.lock_notes("poetry.lock", {"gunicorn", "psycopg"})
    assert len(poetry) == 1 and poetry[0].startswith("EDIT: mlctl cannot install poetry.lock")


def test_made_requirements_add_the_server_packages_only_when_missing():
    text, note = project_requirements.made_requirements(["Django>=5.2"], "pyproject.toml x")
    assert [ln for ln in text.splitlines() if not ln.startswith("#")] == [
        "Django>=5.2",
        "gunicorn",
        "psycopg[binary]",
    ]
    assert text.startswith("# Written by `mlctl init` from pyproject.toml x.\n")
    assert note.startswith("requirements.txt was made from pyproject.toml x:")
    text, _ = project_requirements.made_requirements(["Django", "gunicorn", "psycopg2"], "o")
    assert [ln for ln in text.splitlines() if not ln.startswith("#")] == [
        "Django",
        "gunicorn",
        "psycopg2",
    ]


def test_a_lock_wins_over_a_requirements_file_and_nothing_is_written(tmp_path):
    (tmp_path / "requirements.txt").write_text("Django\n")
    (tmp_path / "uv.lock").write_text('[[package]]\nname = "gunicorn"\n')
    found = project_requirements.find_requirements(tmp_path)
    assert (found.path, found.text) == ("uv.lock", None)
    assert found.facts == ["requirements uv.lock (installed exactly as locked)"]
    assert len(found.notes) == 1 and "psycopg" in found.notes[0]


def test_the_first_requirements_file_in_order_is_used(tmp_path):
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements/base.txt").write_text("Django\n")
    (tmp_path / "requirements/production.txt").write_text("-r base.txt\ngunicorn\npsycopg\n")
    found = project_requirements.find_requirements(tmp_path)
    assert (found.path, found.text, found.notes) == ("requirements/production.txt", None, [])


def test_an_unreadable_pyproject_falls_back_to_django(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[project\n")
    found = project_requirements.find_requirements(tmp_path)
    assert found.path == "requirements.txt" and found.facts == ["no requirements file"]
    assert found.text and found.text.splitlines()[2].startswith("Django")


def test_unlisted_imports_are_named_with_their_distribution():
    found = scan(
        {"s.py": "import environ\nimport psycopg2\nimport os\nfrom PIL import Image\n"}.get, "s"
    )
    named = project_requirements.requirement_names("django-environ==0.11\npsycopg[binary]\n")
    assert project_requirements.unlisted_packages(found, named) == [("PIL", "Pillow")]
    assert project_requirements.unlisted_notes(found, "", "requirements.txt") == []


# ---------------------------------------------------------------- what the settings ask


def test_required_variables_that_fill_overridden_settings_become_aliases():
    found = scan(
        {
            "s.py": "import os\nSECRET_KEY = os.environ['DJANGO_SECRET_KEY']\n"
            "API = os.environ['SHOP_API_TOKEN']\nREGION = os.environ['REGION']\n"
            "DEBUG = os.environ['DJANGO_DEBUG']\nX = os.environ['DATABASE_URL']\n"
        }.get,
        "s",
    )
    required, aliases = project_facts.required_env(found)
    assert [r.name for r in required] == ["SHOP_API_TOKEN", "REGION"]
    assert aliases == {"DJANGO_SECRET_KEY": "SECRET_KEY"}
    assert project_facts.required_notes(required) == [
        "SHOP_API_TOKEN is required by s (no default): set it under secrets: in "
        "environments.yaml (its EDIT line)",
        "REGION is required by s (no default): set it under env: in environments.yaml (its "
        "EDIT line)",
    ]


def test_the_database_fact_and_the_note_for_an_unmanaged_engine():
    assert project_facts.database_notes("'ENGINE': 'django.db.backends.sqlite3'") == (
        "database sqlite3",
        [],
    )
    assert project_facts.database_notes("dj_database_url.config()") == (
        "database DATABASE_URL",
        [],
    )
    fact, notes = project_facts.database_notes("django.db.backends.mysql env.db()")
    assert fact == "database mysql via DATABASE_URL" and notes[0].startswith(
        "the settings use mysql;"
    )


def test_static_settings_that_disagree_with_nginx_are_noted():
    found = scan({"s.py": "STATIC_ROOT = '/var/www/static'\nSTATIC_URL = '/assets/'\n"}.get, "s")
    fact, notes = project_facts.static_notes(found)
    assert fact == "STATIC_ROOT /var/www/static"
    assert notes[0].startswith("STATIC_ROOT is /var/www/static in s; on servers")
    assert (
        notes[1]
        == "STATIC_URL is '/assets/': mlctl's nginx site serves /static/ (change one of them)"
    )
    assert project_facts.static_notes(scan({"s.py": ""}.get, "s")) == ("STATIC_ROOT unset", [])


def test_the_project_name_skips_generic_packages(tmp_path):
    repo, manage = tmp_path / "Big Shop", tmp_path / "Big Shop" / "src"
    assert project_facts.project_name("shop.settings", manage, repo) == "shop"
    assert project_facts.project_name("config.settings", manage, repo) == "big-shop"
    # no repository to take a name from: the generic directory's name stays
    assert project_facts.project_name("config.settings", manage, None) == "src"


def test_manage_py_outside_the_repository_is_refused_and_no_repository_is_noted(tmp_path):
    with pytest.raises(UsageError, match="is outside the git repository"):
        project_facts.git_notes(tmp_path, tmp_path / "a", tmp_path / "b")
    (note,) = project_facts.git_notes(tmp_path, tmp_path, None)
    assert note.endswith("mlctl deploys commits (git init && git add -A && git commit)")
    assert project_facts.git_notes(tmp_path, tmp_path / "a", tmp_path) == []


# ---------------------------------------------------------------- what init writes


@pytest.mark.parametrize(
    "existing, force, merged, action",
    [
        (None, False, False, "write"),
        ("same", False, False, "same"),
        ("same", True, True, "same"),
        ("other", False, False, "skip"),
        ("other", True, False, "write"),
        ("other", False, True, "write"),  # the pre-commit configuration is merged
    ],
)
def test_an_existing_file_is_only_overwritten_with_force_or_when_merged(
    existing, force, merged, action
):
    assert init_files.file_action(existing, "same", force, merged) == action


def _project(tmp_path: Path, **changes) -> project_facts.Project:
    (tmp_path / "site").mkdir(exist_ok=True)
    fields = dict(
        target=tmp_path,
        manage_dir=tmp_path,
        git_root=tmp_path,
        settings_module="site.settings",
        settings_file=tmp_path / "site" / "settings.py",
        wsgi="site.wsgi:application",
        name="site",
        requirements="uv.lock",
        requirements_text=None,
        python_need=(">=3.11", "pyproject.toml"),
        tests="python -m pytest -q",
        branch="main",
    )
    return project_facts.Project(**{**fields, **changes})


def test_with_a_lock_init_writes_no_requirements_and_ci_exports_the_lock(tmp_path):
    p = _project(tmp_path)
    assert "uv.lock" not in init_files.render_files(p) and "requirements.txt" not in (
        init_files.render_files(p)
    )
    v = init_values.values_of(p)
    assert v["requirements"] == "uv.lock"
    assert v["install_from_root"].startswith("python -m pip install uv && uv export --frozen")
    assert v["requires_python_line"].startswith('requires_python: ">=3.11"  # from pyproject.toml;')


def test_paths_and_commands_follow_a_project_below_the_repository(tmp_path):
    repo = tmp_path
    (repo / "web" / "site").mkdir(parents=True)
    p = _project(
        repo / "web",
        manage_dir=repo / "web",
        git_root=repo,
        settings_file=repo / "web" / "site" / "settings.py",
        requirements="requirements.txt",
    )
    v = init_values.values_of(p)
    assert (v["repo"], v["subdir"], v["inventory_path"]) == ("..", "web", "web/environments.yaml")
    assert v["tests_hook"] == "sh -c 'cd web && python -m pytest -q'"
    assert v["tests_make"] == "$(PYTHON) -m pytest -q" and v["manage_cmd"] == "python manage.py"
    assert v["install_from_root"] == "python -m pip install -r web/requirements.txt"
    assert v["ci_logs_from_root"] == "web/ci-logs/" and v["depth"] == 1


def test_a_project_without_wsgi_module_gets_django_s_default_application(tmp_path):
    v = init_values.settings_values(_project(tmp_path, wsgi=""))
    assert v["wsgi"] == "Django's default application"
    assert v["wsgi_expr"] == 'importlib.import_module("django.core.wsgi").get_wsgi_application()'


def test_the_dev_database_is_postgresql_only_when_the_project_needs_it():
    assert init_values.dev_database("shop", "") == (
        "    database:\n      engine: sqlite\n      name: db.sqlite3\n"
    )
    pg = init_values.dev_database("shop", "django.contrib.postgres in models.py")
    assert "(django.contrib.postgres in models.py)" in pg and "name: shop_dev  # EDIT" in pg


def test_yaml_scalars_read_back_as_the_same_string():
    assert init_values.yaml_scalar("config/settings") == "config/settings"
    assert init_values.yaml_scalar("yes") == '"yes"' and init_values.yaml_scalar("a b") == '"a b"'


def test_required_secrets_go_to_the_secrets_block(tmp_path):
    p = _project(
        tmp_path,
        required_env=[
            Read("SHOP_TOKEN", "site.settings", "T"),
            Read("REGION", "site.settings", ""),
        ],
    )
    v = init_values.environment_values(p)
    assert v["env_lines"] == '    REGION: ""  # EDIT: site.settings raises without it\n'
    assert v["secrets_block"].endswith(
        '    SHOP_TOKEN: ""  # EDIT: site.settings raises without it\n'
    )
