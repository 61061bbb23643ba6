"""`inv check` and friends: the same tasks as `mlctl` and `fab`, run through Invoke."""

from mlctl.cli.invoke import namespace

ns = namespace()
