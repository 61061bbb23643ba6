"""`mlctl [ENV] TASK [options]`: one entry point; a failure ends in one line and an exit code."""

from __future__ import annotations

import argparse
import os
import sys

from mlctl import __version__
from mlctl.cli.registry import BY_NAME, TASKS, TaskSpec


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mlctl",
        description="Deploy, check, diagnose, restart and roll back Django applications.",
        epilog="Examples: mlctl dev deploy · mlctl live diag · mlctl test rollback --db auto",
    )
    p.add_argument("--version", action="version", version=f"mlctl {__version__}")
    add_global_options(p)
    sub = p.add_subparsers(dest="task", metavar="TASK")
    for spec in TASKS:
        add_task_parser(sub, spec)
    return p


def add_global_options(p: argparse.ArgumentParser, after_task: bool = False) -> None:
    """Global options, accepted before the task and after it (`mlctl live deploy --set …`).

    After the task they default to SUPPRESS so they never reset a value given before it; the
    repeatable ones go to their own lists, merged in `run`.
    """
    g = p.add_argument_group("global options")
    more = "task_" if after_task else ""
    unset = {"default": argparse.SUPPRESS} if after_task else {}
    g.add_argument("--inventory", "-i", metavar="PATH", help="environments.yaml to use", **unset)
    g.add_argument(
        "--host",
        action="append",
        dest=more + "only_hosts",
        metavar="HOST",
        help="limit to this host of the environment (repeatable)",
    )
    g.add_argument(
        "--set",
        action="append",
        dest=more + "set",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. --set timeouts.command=60",
    )
    g.add_argument("--log-dir", metavar="DIR", help="where the JSON log goes", **unset)
    g.add_argument(
        "--summary",
        metavar="FILE",
        help="write a JSON summary of the run here (for CI; also MLCTL_SUMMARY)",
        **unset,
    )
    verbose = ("-v", "--debug", "--verbose")
    g.add_argument(*verbose, action="store_true", dest="debug", help="show tracebacks", **unset)


VALUE_OPTIONS = ("--inventory", "-i", "--host", "--set", "--log-dir", "--summary")


def add_task_parser(sub, spec: TaskSpec) -> None:
    tp = sub.add_parser(spec.name, help=spec.help, description=spec.help)
    add_global_options(tp, after_task=True)
    for o in spec.opts:
        flag = "--" + o.name.replace("_", "-")
        if o.positional and o.kind is list:  # the rest of the line: `manage check --deploy`
            tp.add_argument(o.name, nargs=argparse.REMAINDER, metavar="ARGS", help=o.help)
        elif o.positional:
            tp.add_argument(o.name, nargs="?", default=o.default, help=o.help)
        elif o.kind is list:  # repeatable: `--env A=1 --env B=2`
            names = [flag] + ([o.short] if o.short else [])
            tp.add_argument(*names, action="append", dest=o.name, metavar="VALUE", help=o.help)
        elif o.kind is bool:
            names = [flag] + ([o.short] if o.short else [])
            tp.add_argument(*names, action="store_true", dest=o.name, help=o.help)
        else:
            names = [flag] + ([o.short] if o.short else [])
            tp.add_argument(
                *names,
                type=o.kind,
                default=o.default,
                dest=o.name,
                choices=o.choices or None,
                help=o.help,
            )


def split_env(argv: list[str]) -> tuple[str | None, list[str]]:
    """`mlctl live deploy …` → ("live", ["deploy", …]): the first word before a task name."""
    for i, word in enumerate(argv):
        if word.startswith("-"):
            continue
        if i > 0 and argv[i - 1] in VALUE_OPTIONS:
            continue
        if word in BY_NAME:
            return None, argv
        return word, argv[:i] + argv[i + 1 :]
    return None, argv


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    env, rest = split_env(argv)
    parser = build_parser()
    args = parser.parse_args(rest)
    if not args.task:
        parser.print_help()
        return 0 if env is None else 2
    code = run(BY_NAME[args.task], env, args)
    sys.exit(code)


def run(spec: TaskSpec, env: str | None, args) -> int:
    from mlctl.cli.runner import run_task
    from mlctl.transport.selection import Selection

    summary_path = getattr(args, "summary", None)
    if summary_path:
        os.environ["MLCTL_SUMMARY"] = summary_path
    env = env or os.environ.get("MLCTL_ENV")
    options, settings = spec.split({o.name: getattr(args, o.name) for o in spec.opts})

    def select() -> Selection:
        hosts = (args.only_hosts or []) + (getattr(args, "task_only_hosts", None) or [])
        return Selection(
            env=env,
            hosts=hosts or None,
            inventory_path=args.inventory,
            overrides={**parse_sets(args.set + getattr(args, "task_set", [])), **settings},
            log_dir=args.log_dir,
            debug=args.debug,
        )

    return run_task(spec, select, options, env=env, debug=args.debug)


def parse_sets(pairs: list[str]) -> dict:
    from mlctl.core.errors import UsageError

    out = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise UsageError(f"--set {pair!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out


if __name__ == "__main__":
    main()
