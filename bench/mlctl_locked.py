"""mlctl with `wheelhouse.build` serialized across the deploy's host threads.

The bench falls back to this only when a multi-host cold deploy fails in mlctl as it is (every
host thread resolves the same wheelhouse at once and they trip over each other's directory);
RESULTS.md says when it was used. It is the fix suggested there, applied from outside.
"""

import sys
import threading

sys.path.pop(0)  # not bench/: its module names must not shadow anything

from mlctl import wheelhouse  # noqa: E402
from mlctl.cli import main  # noqa: E402

_lock = threading.Lock()
_build = wheelhouse.build


def build(*args, **kwargs):
    with _lock:
        return _build(*args, **kwargs)


wheelhouse.build = build
main()
