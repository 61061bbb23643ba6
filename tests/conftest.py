try:
    from tests.hosts.fixtures import farm  # noqa: F401 — session fixture: real booted test hosts
except ImportError:  # pragma: no cover — only while the host farm module is absent
    pass
