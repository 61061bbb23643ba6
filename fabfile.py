"""`fab [ENV] TASK` and `fab -H ENV_OR_HOST TASK`: mlctl's tasks (see `fab --list`)."""

from mlctl.cli.invoke import namespace

ns = namespace()
