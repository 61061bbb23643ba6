"""Invoke/Fabric task collections built from the registry.

`fabfile.py` and `tasks.py` import `namespace()`. Each environment of the inventory becomes a task
(`fab live deploy`); `fab -H live deploy` or `fab -H <host> deploy` select through the Connection.
"""

from __future__ import annotations

import inspect
import os

from invoke import Collection, Task

from mlctl.cli.registry import TASKS, TaskSpec
from mlctl.core.errors import MlctlError

_chosen = {"env": None}


def namespace() -> Collection:
    ns = Collection()
    for spec in TASKS:
        # A repeatable option (`--env A=1 --env B=2`) collects into a list.
        lists = [o.name for o in spec.opts if o.kind is list and not o.positional]
        ns.add_task(Task(_body(spec), name=spec.name, help=_help(spec), iterable=lists))
    for env in _environment_names():
        ns.add_task(Task(_env_task(env), name=env))
    return ns


def _environment_names() -> list[str]:
    from mlctl.config import inventory

    try:
        return inventory.load(inventory.find()).environments
    except MlctlError:
        return []  # `fab --list` still works; the task itself reports the inventory error


def _env_task(env: str):
    def select(c):
        _chosen["env"] = env

    select.__doc__ = f"select the {env} environment for the tasks that follow"
    return select


def _body(spec: TaskSpec):
    def body(c, **options):
        return _run(spec, c, options)

    params = [inspect.Parameter("c", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    for o in spec.opts:
        default = o.default if o.kind is not bool else False
        params.append(
            inspect.Parameter(
                o.name,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=default if default is not None else None,
            )
        )
    body.__signature__ = inspect.Signature(params)
    body.__doc__ = spec.help
    body.__name__ = spec.name
    return body


def _help(spec: TaskSpec) -> dict:
    return {o.name.replace("_", "-"): o.help for o in spec.opts}


def selection_for(c):
    """The Selection a Context stands for: a Fabric -H host, an env task, or MLCTL_ENV."""
    from mlctl.transport.selection import Selection, from_host_arg

    host = getattr(c, "original_host", None)
    if host:
        return from_host_arg(Selection().load(), host)
    env = _chosen["env"] or os.environ.get("MLCTL_ENV")
    if env is None:
        env = _local_environment()
    return Selection(env=env)


def _local_environment() -> str | None:
    """`inv check` with no environment named: the inventory's local one (dev)."""
    from mlctl.config import inventory

    try:
        inv = inventory.load(inventory.find())
    except MlctlError:
        return None
    for name, env in inv.data["environments"].items():
        merged = {**(inv.data.get("defaults") or {}), **(env or {})}
        if merged.get("connection") == "local":
            return name
    return None


def _run(spec: TaskSpec, c, options: dict):
    """The task through the runner `mlctl` uses; a failure ends Invoke with the same code."""
    from invoke.exceptions import Exit

    from mlctl.cli.runner import run_task

    kwargs, settings = spec.split(options)

    def select():
        sel = selection_for(c)
        sel.overrides.update(settings)
        return sel

    code = run_task(spec, select, kwargs)
    if code:
        raise Exit(code=code)
