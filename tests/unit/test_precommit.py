"""The pre-commit hooks init writes: fitted to the project's settings, merged into its config."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml

from mlctl.project import precommit
from mlctl.project.precommit import ToolSettings

NONE = ToolSettings()


def wanted(settings: ToolSettings = NONE, tests: str = "python manage.py test"):
    return precommit.hooks(settings, "environments.yaml", r"environments\.yaml", tests)


def text_of(hook_id: str, settings: ToolSettings = NONE) -> str:
    return next(h.text for h in wanted(settings) if h.id == hook_id)


# ---------------------------------------------------------------- settings


def test_no_settings_files_configure_nothing():
    assert precommit.tool_settings([]) == NONE
    assert NONE.line_length is None


def test_pyproject_black_isort_and_ruff_tables_are_found():
    pyproject = (
        "[tool.black]\nline-length = 100\n\n[tool.isort]\nprofile = 'django'\n\n"
        "[tool.ruff]\nline-length = 110\n\n[tool.ruff.lint]\nselect = ['E', 'F']\n"
    )
    s = precommit.tool_settings([("pyproject.toml", pyproject)])
    assert s == ToolSettings(
        isort="pyproject.toml",
        black="pyproject.toml",
        black_line_length=100,
        ruff="pyproject.toml",
        ruff_line_length=110,
    )
    assert s.line_length == 100  # Black's width, which the code is formatted to


def test_ruff_rule_i_in_any_spelling_means_ruff_sorts_imports():
    def sorts(text: str, name: str = "ruff.toml") -> bool:
        return precommit.tool_settings([(name, text)]).ruff_sorts_imports

    assert sorts('[lint]\nselect = ["E", "I"]\n')
    assert sorts('select = ["I001"]\n')  # the older top-level spelling
    assert sorts('[lint]\nextend-select = ["ALL"]\n')
    assert sorts('[tool.ruff]\nlint.select = ["F", "I"]\n', "pyproject.toml")  # cookiecutter's
    # Other linters whose codes begin with I are not isort.
    assert not sorts('[lint]\nselect = ["ICN", "INP", "INT", "ISC"]\n')
    assert not sorts('[tool.ruff]\nselect = ["E", "F"]\n', "pyproject.toml")


def test_isort_sections_of_setup_cfg_tox_ini_and_isort_cfg_count():
    for name, text in [
        ("setup.cfg", "[metadata]\nname = x\n\n[isort]\nline_length = 79\n"),
        ("setup.cfg", "[tool:isort]\nprofile = google\n"),
        ("tox.ini", "[isort]\nforce_single_line = true\n"),
        (".isort.cfg", "[settings]\n"),
    ]:
        assert precommit.tool_settings([(name, text)]).isort == name
    assert precommit.tool_settings([("setup.cfg", "[flake8]\nmax-line-length = 100\n")]) == NONE


def test_the_first_file_that_configures_a_tool_wins_and_bad_toml_configures_nothing():
    s = precommit.tool_settings(
        [
            ("pyproject.toml", "[tool.ruff\n"),  # unreadable
            ("ruff.toml", "line-length = 120\n"),
            ("app/pyproject.toml", "[tool.ruff]\nline-length = 79\n[tool.black]\n"),
        ]
    )
    assert (s.ruff, s.ruff_line_length) == ("ruff.toml", 120)
    assert (s.black, s.black_line_length) == ("app/pyproject.toml", None)
    assert s.line_length is None  # [tool.black] without a width: Black's default


# ---------------------------------------------------------------- the hooks


def test_every_hook_in_its_order_with_one_pinned_version_each():
    hooks = wanted()
    assert [h.id for h in hooks] == [
        "trailing-whitespace",
        "end-of-file-fixer",
        "check-yaml",
        "isort",
        "black",
        "ruff",
        "mlctl-inventory",
        "tests",
    ]
    assert [h.stage for h in hooks].count("pre-push") == 1 and hooks[-1].stage == "pre-push"
    for h in hooks:
        (data,) = yaml.safe_load(h.text)
        deps = data.get("additional_dependencies", [])
        assert data["language"] == ("python" if deps else "system"), h.id
        assert all(d.count("==") == 1 for d in deps), h.id


def test_isort_takes_the_black_profile_only_when_nothing_configures_isort():
    assert text_of("isort") == (
        "- id: isort\n"
        "  name: isort\n"
        "  entry: isort --filter-files --profile black\n"
        "  language: python\n"
        '  additional_dependencies: ["isort==9.0.2"]\n'
        "  types_or: [python, pyi]\n"
        "  require_serial: true\n"
    )
    configured = ToolSettings(isort="setup.cfg", black="pyproject.toml", black_line_length=100)
    assert "  entry: isort --filter-files\n" in text_of("isort", configured)
    # The project's width reaches isort's Black profile (Black's own is 88).
    wide = ToolSettings(black="pyproject.toml", black_line_length=100)
    assert "  entry: isort --filter-files --profile black --line-length 100\n" in text_of(
        "isort", wide
    )
    ruff_wide = ToolSettings(ruff="ruff.toml", ruff_line_length=120)
    assert "--profile black --line-length 120\n" in text_of("isort", ruff_wide)


def test_black_reads_its_own_table_else_follows_ruffs_width():
    assert "  entry: black\n" in text_of("black")
    ruff_wide = ToolSettings(ruff="ruff.toml", ruff_line_length=120)
    assert "  entry: black --line-length 120\n" in text_of("black", ruff_wide)
    both = ToolSettings(black="pyproject.toml", ruff="ruff.toml", ruff_line_length=120)
    assert "  entry: black\n" in text_of("black", both)
    assert "  entry: black\n" in text_of("black", ToolSettings(ruff_line_length=88))


def test_covered_names_the_hook_or_setting_that_does_the_job():
    assert precommit.covered("black", {"black"}, NONE) == ""
    assert precommit.covered("black", {"ruff-format"}, NONE) == (
        "the project's ruff-format hook does that job"
    )
    assert precommit.covered("ruff", {"ruff-check"}, NONE) == (
        "the project's ruff-check hook does that job"
    )
    sorts = ToolSettings(ruff="pyproject.toml", ruff_sorts_imports=True)
    assert (
        precommit.covered("isort", set(), sorts)
        == "ruff sorts the imports: rule I in pyproject.toml"
    )
    assert precommit.covered("isort", {"ruff"}, NONE) is None
    assert precommit.covered("tests", {"flake8"}, NONE) is None


# ---------------------------------------------------------------- a new file

NEW = """\
# pre-commit hooks of shop (written by `mlctl init`): `pre-commit install` once per clone.
# Local hooks: their tools install from the package registry (no git hosting needed).
default_install_hook_types: [pre-commit, pre-push]
repos:
  - repo: local
    hooks:
      - id: trailing-whitespace
        name: trailing whitespace
        entry: trailing-whitespace-fixer
        language: python
        additional_dependencies: ["pre-commit-hooks==5.0.0"]
        types: [text]
      - id: end-of-file-fixer
        name: end of file
        entry: end-of-file-fixer
        language: python
        additional_dependencies: ["pre-commit-hooks==5.0.0"]
        types: [text]
      - id: check-yaml
        name: yaml syntax
        entry: check-yaml --unsafe --allow-multiple-documents
        language: python
        additional_dependencies: ["pre-commit-hooks==5.0.0"]
        types: [yaml]
      - id: isort
        name: isort
        entry: isort --filter-files --profile black
        language: python
        additional_dependencies: ["isort==9.0.2"]
        types_or: [python, pyi]
        require_serial: true
      - id: black
        name: black
        entry: black
        language: python
        additional_dependencies: ["black==26.10.1"]
        types_or: [python, pyi]
        require_serial: true
      - id: ruff
        name: ruff
        entry: ruff check --force-exclude
        language: python
        additional_dependencies: ["ruff==0.17.6"]
        types_or: [python, pyi]
        require_serial: true
      - id: mlctl-inventory
        name: mlctl inventory is valid
        entry: mlctl --inventory environments.yaml dev config --json
        language: system
        files: ^environments\\.yaml$
        pass_filenames: false
      - id: tests
        name: project tests
        entry: python manage.py test
        language: system
        pass_filenames: false
        always_run: true
        stages: [pre-push]
"""


def test_a_project_without_a_config_gets_every_hook():
    plan = precommit.plan(None, wanted(), NONE, "shop")
    assert plan.text == NEW
    assert plan.added == [h.id for h in wanted()] and plan.kept == [] and not plan.rewritten
    assert precommit.plan(plan.text, wanted(), NONE, "shop").text == NEW  # twice: no change


def test_a_new_file_leaves_out_isort_when_ruff_sorts_the_imports():
    sorts = ToolSettings(ruff="ruff.toml", ruff_sorts_imports=True)
    plan = precommit.plan(None, wanted(sorts), sorts, "shop")
    assert "isort" not in plan.added and "- id: isort" not in plan.text
    assert plan.not_added == ["isort (ruff sorts the imports: rule I in ruff.toml)"]


# ---------------------------------------------------------------- merging

EXISTING = """\
exclude: '^docs/'
default_language_version:
  python: python3

repos:
  - repo: https://github.com/pre-commit/pre-commit-hooks
    rev: v6.0.0
    hooks:
      - id: trailing-whitespace
      - id: end-of-file-fixer
      # - id: check-json  (kept off: our fixtures are JSON5)

  # Formatting and lint.
  - repo: https://github.com/astral-sh/ruff-pre-commit
    rev: 'v0.15.8'
    hooks:
      - id: ruff-check
        args: [--fix]
      - id: ruff-format

# pre-commit.ci settings
ci:
  autoupdate_schedule: weekly
"""

ADDED = """\
  # Added by `mlctl init`: local hooks, their tools install from the package registry.
  - repo: local
    hooks:
      - id: check-yaml
        name: yaml syntax
        entry: check-yaml --unsafe --allow-multiple-documents
        language: python
        additional_dependencies: ["pre-commit-hooks==5.0.0"]
        types: [yaml]
      - id: isort
        name: isort
        entry: isort --filter-files --profile black
        language: python
        additional_dependencies: ["isort==9.0.2"]
        types_or: [python, pyi]
        require_serial: true
      - id: mlctl-inventory
        name: mlctl inventory is valid
        entry: mlctl --inventory environments.yaml dev config --json
        language: system
        files: ^environments\\.yaml$
        pass_filenames: false
      - id: tests
        name: project tests
        entry: python manage.py test
        language: system
        pass_filenames: false
        always_run: true
        stages: [pre-push]
"""


def test_merge_keeps_every_line_and_adds_the_missing_hooks_at_the_end_of_repos():
    plan = precommit.plan(EXISTING, wanted(), NONE, "shop")
    head, _, tail = EXISTING.partition("\n# pre-commit.ci settings\n")
    assert plan.text == (
        head.replace("\nrepos:\n", "\ndefault_install_hook_types: [pre-commit, pre-push]\nrepos:\n")
        + ADDED
        + "\n# pre-commit.ci settings\n"
        + tail
    )
    assert plan.kept == ["trailing-whitespace", "end-of-file-fixer", "ruff-check", "ruff-format"]
    assert plan.added == ["check-yaml", "isort", "mlctl-inventory", "tests"]
    assert plan.not_added == [
        "black (the project's ruff-format hook does that job)",
        "ruff (the project's ruff-check hook does that job)",
    ]
    before, after = yaml.safe_load(EXISTING), yaml.safe_load(plan.text)
    assert after["repos"][:-1] == before["repos"]  # existing hooks, in their order
    assert {k: v for k, v in after.items() if k not in ("repos", "default_install_hook_types")} == {
        k: v for k, v in before.items() if k != "repos"
    }


def test_merging_twice_changes_nothing():
    once = precommit.plan(EXISTING, wanted(), NONE, "shop").text
    again = precommit.plan(once, wanted(), NONE, "shop")
    assert again.text == once and again.added == [] and not again.rewritten
    ids = precommit.hook_ids(yaml.safe_load(once))
    assert len(ids) == len(set(ids))  # each hook once


def test_project_settings_decide_what_is_added():
    sorts = ToolSettings(ruff="ruff.toml", ruff_sorts_imports=True, ruff_line_length=100)
    plan = precommit.plan(EXISTING, wanted(sorts), sorts, "shop")
    assert plan.added == ["check-yaml", "mlctl-inventory", "tests"]
    assert "isort (ruff sorts the imports: rule I in ruff.toml)" in plan.not_added
    config = EXISTING.replace("      - id: ruff-format\n", "")
    plan = precommit.plan(config, wanted(sorts), sorts, "shop")
    assert plan.added == ["check-yaml", "black", "mlctl-inventory", "tests"]
    assert "        entry: black --line-length 100\n" in plan.text


def test_an_existing_stage_list_is_kept_and_items_at_column_0_keep_their_indent():
    config = (
        "default_install_hook_types: [pre-commit]\n"
        "repos:\n"
        "- repo: https://github.com/psf/black\n"
        "  rev: 24.1.0\n"
        "  hooks:\n"
        "  - id: black\n"
    )
    plan = precommit.plan(config, wanted(), NONE, "shop")
    assert plan.text.startswith(config + "# Added by `mlctl init`")
    assert "\n- repo: local\n  hooks:\n    - id: trailing-whitespace\n" in plan.text
    assert plan.text.count("default_install_hook_types") == 1 and not plan.rewritten
    assert plan.push_not_installed  # init says how to install the tests' stage
    assert not precommit.plan(None, wanted(), NONE, "shop").push_not_installed
    assert not precommit.plan(EXISTING, wanted(), NONE, "shop").push_not_installed
    assert yaml.safe_load(plan.text)["repos"][0] == yaml.safe_load(config)["repos"][0]


def test_a_file_without_a_final_newline_and_a_comment_above_repos():
    config = (
        "# our hooks\nrepos:\n  - repo: local\n    hooks:\n      - id: tests\n"
        "        name: t\n        entry: make test\n        language: system"
    )
    plan = precommit.plan(config, wanted(), NONE, "shop")
    assert plan.text.startswith(config + "\n  # Added by `mlctl init`")
    assert "tests" not in plan.added  # the project's own tests hook stays the only one
    assert "default_install_hook_types" not in plan.text  # no added hook runs on push
    other = config.replace("id: tests", "id: lint")
    plan = precommit.plan(other, wanted(), NONE, "shop")
    assert plan.text.startswith(
        "default_install_hook_types: [pre-commit, pre-push]\n# our hooks\nrepos:\n"
    )


def test_a_flow_style_repos_list_is_written_anew_with_the_same_data():
    config = "repos: [{repo: meta, hooks: [{id: check-useless-excludes}]}]  # mine\n"
    plan = precommit.plan(config, wanted(), NONE, "shop")
    assert plan.rewritten and "# mine" not in plan.text
    data = yaml.safe_load(plan.text)
    assert data["repos"][0] == {"repo": "meta", "hooks": [{"id": "check-useless-excludes"}]}
    assert [h["id"] for h in data["repos"][1]["hooks"]] == plan.added
    assert data["default_install_hook_types"] == ["pre-commit", "pre-push"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("repos:\n  - repo: x\n   hooks: [\n", "not valid YAML (line 3)"),
        ("- repo: local\n", "no `repos:` list"),
        ("repos:\n", "no `repos:` list"),
        ("repos:\n  - repo: x\n    hooks: {id: a}\n", "a repos entry without a `hooks:` list"),
    ],
)
def test_unreadable_configs_are_refused_with_the_reason(text, message):
    with pytest.raises(precommit.ConfigError) as e:
        precommit.plan(text, wanted(), NONE, "shop")
    assert str(e.value) == message


def test_the_pins_are_mlctls_own():
    """The tools a project's hooks install are the versions mlctl is developed with."""
    root = Path(precommit.__file__).parents[3]
    dev = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    ours = yaml.safe_load((root / ".pre-commit-config.yaml").read_text())
    own_hooks = {
        d
        for repo in ours["repos"]
        for h in repo["hooks"]
        for d in h.get("additional_dependencies", [])
    }
    for tool, version in precommit.PINS.items():
        pin = f"{tool}=={version}"
        assert pin in own_hooks, pin
        assert pin in dev["dev"] or tool == "pre-commit-hooks", pin
