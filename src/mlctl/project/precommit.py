"""The pre-commit hooks `mlctl init` writes, fitted to the project and merged into its own config.

The hooks: trailing whitespace, end of file, YAML syntax, isort, Black, Ruff, the inventory check
and the project's tests (on push). Every one is a local hook whose tool installs from the package
registry at one pinned version, so no git hosting is needed to run them.

A project that already has a `.pre-commit-config.yaml` keeps it: every line of it stays, and the
hooks it lacks are appended as one more `repo: local`. A job the project's config already does is
not added twice: the same hook id, or another tool's hook doing that job (ruff-format formats like
Black, yet not identically, so the two would undo each other's changes on every commit; ruff's
rule I sorts imports as isort does). The tools read the project's own settings (`[tool.black]`,
`[tool.isort]`, `[tool.ruff]`, ruff.toml, setup.cfg, .isort.cfg); the hooks only fill the gaps:
isort gets the Black profile when nothing configures isort, and the formatters follow the line
length the project chose.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field

import yaml

PINS = {"pre-commit-hooks": "5.0.0", "isort": "9.0.2", "black": "26.10.1", "ruff": "0.17.6"}
BLACK_LINE_LENGTH = 88
INSTALL_TYPES = "default_install_hook_types: [pre-commit, pre-push]\n"
# Other tools' hook ids that do a hook's job (a hook's own id always counts).
SAME_JOB = {
    "black": ("black-jupyter", "ruff-format"),
    "ruff": ("ruff-check",),
    "tests": ("pytest",),
}
# Configuration files the tools read, in the order each tool prefers them within one directory.
SETTINGS_FILES = (".isort.cfg", ".ruff.toml", "ruff.toml", "pyproject.toml", "setup.cfg", "tox.ini")


class ConfigError(ValueError):
    """The project's .pre-commit-config.yaml cannot be read as a pre-commit configuration."""


# ---------------------------------------------------------------- the project's tool settings


@dataclass(frozen=True)
class ToolSettings:
    """What the project's own files configure; each tool field names the file ("" when none)."""

    isort: str = ""
    black: str = ""
    black_line_length: int | None = None
    ruff: str = ""
    ruff_line_length: int | None = None
    ruff_sorts_imports: bool = False  # rule I (or ALL) is selected

    @property
    def line_length(self) -> int | None:
        """The width the code is formatted to (None: Black's default)."""
        return self.black_line_length if self.black else self.ruff_line_length


def tool_settings(files: list[tuple[str, str]]) -> ToolSettings:
    """The settings found in (name, text) pairs, the first file that configures a tool winning."""
    found: dict = {}
    for name, text in files:
        base = name.rsplit("/", 1)[-1]
        if base == ".isort.cfg":
            found.setdefault("isort", name)
        elif base in ("setup.cfg", "tox.ini"):
            if re.search(r"^\[(tool:)?isort\]", text, re.M):
                found.setdefault("isort", name)
        elif base.endswith(".toml"):
            try:
                data = tomllib.loads(text)
            except tomllib.TOMLDecodeError:
                continue  # a file the tools cannot read either configures nothing
            tool = data.get("tool", {}) if base == "pyproject.toml" else {"ruff": data}
            if isinstance(tool.get("isort"), dict):
                found.setdefault("isort", name)
            if isinstance(tool.get("black"), dict) and "black" not in found:
                found["black"] = name
                found["black_line_length"] = _int(tool["black"], "line-length", "line_length")
            if isinstance(tool.get("ruff"), dict) and "ruff" not in found:
                ruff = tool["ruff"]
                found["ruff"] = name
                found["ruff_line_length"] = _int(ruff, "line-length")
                found["ruff_sorts_imports"] = any(
                    code == "ALL" or re.fullmatch(r"I\d*", code) for code in _rule_codes(ruff)
                )
    return ToolSettings(**found)


def _int(table: dict, *keys: str) -> int | None:
    for key in keys:
        if isinstance(table.get(key), int):
            return table[key]
    return None


def _rule_codes(ruff: dict) -> list[str]:
    lint = ruff.get("lint") if isinstance(ruff.get("lint"), dict) else {}
    codes = []
    for table in (ruff, lint):
        for key in ("select", "extend-select"):
            value = table.get(key)
            codes += [c for c in value if isinstance(c, str)] if isinstance(value, list) else []
    return codes


# ---------------------------------------------------------------- the hooks


@dataclass(frozen=True)
class Hook:
    id: str
    text: str  # its entry of a `hooks:` list, unindented YAML starting with "- id:"
    stage: str = "pre-commit"


def _hook(hook_id: str, name: str, entry: str, requirement: str, *extra: str) -> str:
    lines = [f"- id: {hook_id}", f"  name: {name}", f"  entry: {entry}"]
    if requirement:
        lines += ["  language: python", f'  additional_dependencies: ["{requirement}"]']
    else:
        lines.append("  language: system")
    return "\n".join(lines + [f"  {line}" for line in extra]) + "\n"


def _pin(tool: str) -> str:
    return f"{tool}=={PINS[tool]}"


def _width(n: int | None) -> str:
    return f" --line-length {n}" if n and n != BLACK_LINE_LENGTH else ""


def isort_entry(s: ToolSettings) -> str:
    # Without settings of its own, isort's default style disagrees with Black's: take Black's.
    return (
        "isort --filter-files"
        if s.isort
        else f"isort --filter-files --profile black{_width(s.line_length)}"
    )


def black_entry(s: ToolSettings) -> str:
    # Black reads [tool.black] itself; else it follows the width the project gave ruff.
    return "black" if s.black else f"black{_width(s.ruff_line_length)}"


def hooks(s: ToolSettings, inventory_path: str, inventory_regex: str, tests: str) -> list[Hook]:
    """Every hook init wants, in the order they run."""
    fixers = _pin("pre-commit-hooks")
    python = ("types_or: [python, pyi]", "require_serial: true")
    # (id, name, entry, requirement to install it from, its other keys)
    table = [
        (
            "trailing-whitespace",
            "trailing whitespace",
            "trailing-whitespace-fixer",
            fixers,
            ("types: [text]",),
        ),
        ("end-of-file-fixer", "end of file", "end-of-file-fixer", fixers, ("types: [text]",)),
        # Syntax only: tags such as !reference or !Ref and several documents are valid YAML.
        (
            "check-yaml",
            "yaml syntax",
            "check-yaml --unsafe --allow-multiple-documents",
            fixers,
            ("types: [yaml]",),
        ),
        ("isort", "isort", isort_entry(s), _pin("isort"), python),
        ("black", "black", black_entry(s), _pin("black"), python),
        ("ruff", "ruff", "ruff check --force-exclude", _pin("ruff"), python),
        (
            "mlctl-inventory",
            "mlctl inventory is valid",
            f"mlctl --inventory {inventory_path} dev config --json",
            "",
            (f"files: ^{inventory_regex}$", "pass_filenames: false"),
        ),
    ]
    pre_commit = [
        Hook(i, _hook(i, name, entry, req, *extra)) for i, name, entry, req, extra in table
    ]
    push = ("pass_filenames: false", "always_run: true", "stages: [pre-push]")
    return pre_commit + [
        Hook("tests", _hook("tests", "project tests", tests, "", *push), "pre-push")
    ]


def covered(hook_id: str, existing: set[str], s: ToolSettings) -> str | None:
    """Why the project already does this hook's job ("" for the same hook id), None if not."""
    if hook_id in existing:
        return ""
    for other in SAME_JOB.get(hook_id, ()):
        if other in existing:
            return f"the project's {other} hook does that job"
    if hook_id == "isort" and s.ruff_sorts_imports:
        return f"ruff sorts the imports: rule I in {s.ruff}"
    return None


# ---------------------------------------------------------------- the configuration file


@dataclass
class Plan:
    """The configuration file as init leaves it, and what changed."""

    text: str
    added: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # the project's own hook ids, in order
    not_added: list[str] = field(default_factory=list)  # "black (why)"
    rewritten: bool = False  # the file could only be written anew: its comments are gone
    push_not_installed: bool = False  # its default_install_hook_types leaves out pre-push


def plan(existing: str | None, wanted: list[Hook], s: ToolSettings, name: str) -> Plan:
    config = parse(existing) if existing is not None else {"repos": []}
    kept = hook_ids(config)
    add, not_added = [], []
    for hook in wanted:
        why = covered(hook.id, set(kept), s)
        if why is None:
            add.append(hook)
        elif why:
            not_added.append(f"{hook.id} ({why})")
    result = Plan("", [h.id for h in add], kept, not_added)
    types = config.get("default_install_hook_types")
    result.push_not_installed = (
        isinstance(types, list)
        and "pre-push" not in types
        and any(h.stage == "pre-push" for h in add)
    )
    if existing is None:
        result.text = new_config(name, add)
    elif not add:
        result.text = existing
    else:
        result.text, result.rewritten = merge(existing, config, add)
    return result


def parse(text: str) -> dict:
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"not valid YAML{where}") from None
    if not isinstance(config, dict) or not isinstance(config.get("repos"), list):
        raise ConfigError("no `repos:` list")
    for repo in config["repos"]:
        if not isinstance(repo, dict) or not isinstance(repo.get("hooks", []), list):
            raise ConfigError("a repos entry without a `hooks:` list")
    return config


def hook_ids(config: dict) -> list[str]:
    return [
        str(h.get("id"))
        for repo in config["repos"]
        for h in repo.get("hooks", [])
        if isinstance(h, dict) and "id" in h
    ]


def _indented(hooks: list[Hook], indent: str) -> str:
    return "".join(f"{indent}{line}\n" for h in hooks for line in h.text.splitlines())


def new_config(name: str, hooks: list[Hook]) -> str:
    return (
        f"# pre-commit hooks of {name} (written by `mlctl init`): `pre-commit install` once per"
        " clone.\n"
        "# Local hooks: their tools install from the package registry (no git hosting needed).\n"
        + INSTALL_TYPES
        + "repos:\n  - repo: local\n    hooks:\n"
        + _indented(hooks, "      ")
    )


def merge(text: str, config: dict, hooks: list[Hook]) -> tuple[str, bool]:
    """The project's config with a local repo of these hooks appended to `repos:`.

    Every existing line stays as it is (comments, quoting, order); the new lines go after the last
    item of the `repos:` block, plus `default_install_hook_types` when a hook runs on push and the
    file installs no stage list of its own. When `repos:` is not a block list the file is written
    anew from its data: (text, True).
    """
    want = dict(config)
    want["repos"] = [*config["repos"], {"repo": "local", "hooks": []}]
    for h in hooks:
        want["repos"][-1]["hooks"] += yaml.safe_load(h.text)
    install_types = "default_install_hook_types" not in config and any(
        h.stage != "pre-commit" for h in hooks
    )
    if install_types:
        want["default_install_hook_types"] = yaml.safe_load(INSTALL_TYPES)[
            "default_install_hook_types"
        ]
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    block = _repos_block(lines)
    if block is not None:
        start, end, indent = block
        lines[end:end] = [
            f"{indent}# Added by `mlctl init`: local hooks, their tools install from the package"
            " registry.\n",
            f"{indent}- repo: local\n",
            f"{indent}  hooks:\n",
            _indented(hooks, indent + "    "),
        ]
        if install_types:
            while start > 0 and lines[start - 1].startswith("#"):
                start -= 1  # a comment right above `repos:` stays with it
            lines.insert(start, INSTALL_TYPES)
        merged = "".join(lines)
        if yaml.safe_load(merged) == want:
            return merged, False
    return yaml.safe_dump(want, sort_keys=False, width=100), True


def _repos_block(lines: list[str]) -> tuple[int, int, str] | None:
    """(index of the `repos:` line, index after its last item's line, the items' indent)."""
    start = next((i for i, ln in enumerate(lines) if re.match(r"repos:\s*(#.*)?$", ln)), None)
    if start is None:
        return None
    end, indent = None, None
    for i in range(start + 1, len(lines)):
        line = lines[i].rstrip("\n")
        if not line.strip() or line.startswith("#"):
            continue  # blank lines and comments in column 0 may belong to what follows
        if not line.startswith((" ", "\t", "- ")):
            break  # the next top-level key
        if indent is None:
            m = re.match(r"( *)- ", line)
            if m is None:
                return None
            indent = m.group(1)
        end = i + 1
    return (start, end, indent) if end is not None else None
