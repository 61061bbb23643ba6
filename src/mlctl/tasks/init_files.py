"""The files `mlctl init` writes: rendered from its templates with init_values, the
project's .pre-commit-config.yaml merged (precommit.py), the dev tree kept out of git.

`file_action` is the one rule for an existing file: never overwritten without --force, except
the pre-commit configuration, which is merged."""

from __future__ import annotations

import re
import subprocess
from importlib.resources import files
from pathlib import Path

from mlctl.core.errors import UsageError
from mlctl.project import precommit
from mlctl.project.project_facts import Project
from mlctl.project.relpath import rel
from mlctl.tasks.init_values import values_of

PLACEHOLDER = re.compile(r"\{\{([a-z_]+)\}\}")


def template(name: str) -> str:
    return files("mlctl").joinpath("templates", "init", name).read_text()


def render(text: str, values: dict) -> str:
    def sub(m: re.Match) -> str:
        if m.group(1) not in values:
            raise KeyError(f"template placeholder {{{{{m.group(1)}}}}} has no value")
        return str(values[m.group(1)])

    return PLACEHOLDER.sub(sub, text)


def render_files(p: Project, ci: str | None = None) -> dict[str, str]:
    """Every file init writes: path relative to the target -> its text."""
    v = values_of(p)
    out = {
        "environments.yaml": render(template("environments.yaml.tmpl"), v),
        "fabfile.py": template("fabfile.py.tmpl"),
        "tasks.py": template("tasks.py.tmpl"),
        "Makefile": render(template("Makefile.tmpl"), v),
        precommit_rel(p): precommit_plan(p, v).text,
        "WORKFLOW.md": render(template("WORKFLOW.md.tmpl"), v),
        v["settings_deploy_file"]: render(template("settings_deploy.py.tmpl"), v),
        v["wsgi_deploy_file"]: render(template("wsgi_deploy.py.tmpl"), v),
        v["health_file"]: render(template("healthz.py.tmpl"), v),
    }
    if p.requirements_text is not None:
        out[rel(p.manage_dir / p.requirements, p.target)] = p.requirements_text
    root = p.git_root or p.target
    if ci == "github":
        out[rel(root / ".github/workflows/deploy.yml", p.target)] = render(
            template("github-deploy.yml.tmpl"), v
        )
    elif ci == "gitlab":
        out[rel(root / ".gitlab-ci.yml", p.target)] = render(template("gitlab-ci.yml.tmpl"), v)
    return out


def file_action(existing: str | None, text: str, force: bool, merged: bool) -> str:
    """ "write", "same" (nothing to do) or "skip" (it differs and is kept) for a file init
    wants to hold `text` that holds `existing` (None: absent). `merged`: the file's text was
    made from the existing one (the pre-commit configuration), so it is written anyway."""
    if existing is None:
        return "write"
    if existing == text:
        return "same"
    return "write" if force or merged else "skip"


def write(dest: Path, text: str, force: bool, merged: bool) -> str:
    """Write `text` to `dest` as file_action decides; what it decided."""
    existing = dest.read_text(errors="replace") if dest.exists() else None
    action = file_action(existing, text, force, merged)
    if action == "write":
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text)
    return action


def ignore_dev_tree(target: Path, git_root: Path | None) -> bool:
    """Keep the dev deploy tree (./var/dev, next to the inventory) out of `git add -A`: add
    /var/ to the .gitignore next to the inventory unless git already ignores it."""
    probe = target / "var" / "dev"
    if git_root is not None:
        p = subprocess.run(
            ["git", "-C", str(target), "check-ignore", "-q", "--no-index", str(probe)],
            capture_output=True,
            check=False,
        )
        if p.returncode == 0:
            return False
    path = target / ".gitignore"
    text = path.read_text(errors="replace") if path.is_file() else ""
    if re.search(r"^/?var/?(/\*\*)?\s*$", text, re.M):
        return False
    sep = "" if not text or text.endswith("\n") else "\n"
    path.write_text(f"{text}{sep}# mlctl's dev deploy tree (environments.dev.deploy_to)\n/var/\n")
    return True


def precommit_rel(p: Project) -> str:
    # pre-commit reads its configuration at the repository's root only.
    return rel((p.git_root or p.target) / ".pre-commit-config.yaml", p.target)


def precommit_plan(p: Project, v: dict) -> precommit.Plan:
    """The hooks init wants, merged into the project's own .pre-commit-config.yaml if it has one."""
    dirs = list(dict.fromkeys([p.git_root or p.target, p.manage_dir]))
    found = [
        (rel(d / name, p.target), (d / name).read_text(errors="replace"))
        for d in dirs
        for name in precommit.SETTINGS_FILES
        if (d / name).is_file()
    ]
    settings = precommit.tool_settings(found)
    wanted = precommit.hooks(settings, v["inventory_path"], v["inventory_regex"], v["tests_hook"])
    path = p.target / precommit_rel(p)
    existing = path.read_text(errors="replace") if path.is_file() else None
    try:
        return precommit.plan(existing, wanted, settings, p.name)
    except precommit.ConfigError as e:
        raise UsageError(
            f"{path}: {e}; pre-commit cannot read it either: fix it, then run mlctl init again"
        ) from None


def hooks_notes(hooks: precommit.Plan, hooks_rel: str) -> list[str]:
    """What the user should know about the pre-commit configuration init wrote."""
    notes = []
    if hooks.rewritten:
        notes.append(
            f"{hooks_rel} was written anew from its data (its repos: is not a block list): its "
            "hooks and settings are kept, its comments and layout are not"
        )
    if hooks.push_not_installed:
        notes.append(
            f"the tests hook runs on push, which the default_install_hook_types of {hooks_rel} "
            "does not install: add pre-push to it, or run pre-commit install --hook-type pre-push"
        )
    return notes
