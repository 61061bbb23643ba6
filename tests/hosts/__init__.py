"""Integration-test host farm: real Debian hosts booted with systemd-nspawn.

See farm.py for how hosts are built, fixtures.py for the pytest fixture and
`python -m tests.hosts --help` for the command line.
"""

from .farm import Farm, FarmError, Host, can_boot, cleanup_leftovers

__all__ = ["Farm", "FarmError", "Host", "can_boot", "cleanup_leftovers"]
