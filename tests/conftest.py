try:
    # Session fixtures: real booted test hosts (the machine's own image, and Debian 13).
    from tests.hosts.fixtures import farm, farm13  # noqa: F401
except ImportError:  # pragma: no cover — only while the host farm module is absent
    pass
