"""`mlctl init [PATH]`: adopt mlctl in an existing Django project.

Finds manage.py (PATH or a subdirectory, shallow), the settings module (manage.py's
DJANGO_SETTINGS_MODULE default), the WSGI application, the requirements file and the static and
database settings, then writes into PATH:

    environments.yaml, fabfile.py, tasks.py, Makefile, .pre-commit-config.yaml, WORKFLOW.md
    <settings package>/settings_deploy.py   your settings + the server's .env (DATABASE_URL, ...)
    <settings package>/wsgi_deploy.py       your WSGI app with those settings (what gunicorn runs)
    <settings package>/healthz.py           GET /healthz: the release served, database state
    requirements.txt                        only when the project has none (from pyproject.toml)
    .github/workflows/deploy.yml or .gitlab-ci.yml   with --ci

An existing file is never overwritten without --force: it is skipped and named. The exception is
an existing .pre-commit-config.yaml: the hooks it lacks are added to it (precommit.py). A second
run changes nothing and says so.

The parts: project_facts (what init finds: django_layout, project_requirements, pyversion),
init_values (what it fills in), init_files (what it writes); this module prints what they did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mlctl.core import console
from mlctl.core.errors import UsageError
from mlctl.project import precommit
from mlctl.project.project_facts import Project, inspect
from mlctl.project.relpath import shown
from mlctl.tasks.init_files import (
    hooks_notes,
    ignore_dev_tree,
    precommit_plan,
    precommit_rel,
    render_files,
    write,
)
from mlctl.tasks.init_values import values_of


@dataclass
class Outcome:
    """What init did to the files: relative paths, in the order it wrote or skipped them."""

    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def init_task(selection, path=".", force=False, ci=None) -> int:
    target = Path(path or ".").expanduser().resolve()
    if not target.is_dir():
        raise UsageError(f"{path}: not a directory")
    if ci not in (None, "github", "gitlab"):
        raise UsageError(f"--ci {ci!r}: expected github or gitlab")
    project = inspect(target)
    hooks = precommit_plan(project, values_of(project))  # refuses an unreadable config first
    console.info(
        f"Django project {project.name} in {project.manage_dir}: " + "; ".join(project.facts)
    )
    console.info(f"settings {project.settings_module}: {project.settings_why}")
    done = write_files(project, render_files(project, ci), hooks, force)
    if ignore_dev_tree(target, project.git_root):
        done.written.append(".gitignore")
        console.step("wrote", ".gitignore (/var/: the dev deploy tree)", "green")
    for rel in done.skipped:
        console.step("skipped", f"{rel} (exists; --force overwrites it)", "yellow")
    if precommit_rel(project) in done.written:
        project.notes += hooks_notes(hooks, precommit_rel(project))
    for note in project.notes:
        console.warn(note)
    if not done.written:
        why = (
            f"{len(done.skipped)} file(s) differ and were kept (--force overwrites them)"
            if done.skipped
            else "every file is already as mlctl init writes it"
        )
        console.done(f"nothing changed: {why}")
        return 0
    next_steps(project, precommit_rel(project) in done.written)
    console.done(f"wrote {len(done.written)} file(s), skipped {len(done.skipped)}")
    return 0


def write_files(p: Project, texts: dict[str, str], hooks: precommit.Plan, force: bool) -> Outcome:
    """Write each file (init_files.file_action decides), saying so as it goes."""
    hooks_rel = precommit_rel(p)
    done = Outcome()
    for rel, text in texts.items():
        dest = p.target / rel
        existed = dest.exists()
        action = write(dest, text, force, merged=rel == hooks_rel)
        if action == "skip":
            done.skipped.append(rel)
        if action != "write":
            continue
        done.written.append(rel)
        if rel == hooks_rel and existed:
            kept = f"its {len(hooks.kept)} hook(s) kept"
            console.step("added", f"hooks {', '.join(hooks.added)} to {rel} ({kept})", "green")
        else:
            console.step("wrote", rel, "green")
        if rel == hooks_rel and hooks.not_added:
            console.step("not added", "; ".join(hooks.not_added))
    return done


def next_steps(p: Project, hooks_written: bool) -> None:
    """What the user does after init: edit the inventory, set up, deploy; install the hooks."""
    here = "" if p.target == Path.cwd().resolve() else f"cd {shown(p.target)} && "
    console.info("Next:")
    console.info(
        f"  1. edit the lines marked EDIT in {shown(p.target / 'environments.yaml')} (the test "
        "and live hosts), then commit: git add -A && git commit -m 'Deploy with mlctl'"
    )
    console.info(f"  2. {here}mlctl test setup")
    console.info(f"  3. {here}mlctl test deploy")
    if hooks_written:
        root = p.git_root or p.target
        at_root = "" if root == Path.cwd().resolve() else f"cd {shown(root)} && "
        console.info(
            f"Hooks: {at_root}pre-commit install && pre-commit run --all-files, once: the first "
            "run may reformat many files; review them and commit them on their own"
        )
