"""`inv check` and friends: the same tasks as `mlctl` and `fab`, run through Invoke."""

from mlctl.tasks import namespace

ns = namespace()
