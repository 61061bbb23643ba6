"""Typed, read-only views of the resolved settings, built after validation: a section
(`cfg.health.timeout`, `cfg.database.engine`) is a frozen dataclass whose fields are the schema's
keys of the same name; a plain key (`cfg.deploy_to`, `cfg.shared_dirs`) is read through `Value`.
schema.py holds the defaults and the docs; tests/unit/test_validation.py keeps both in step and
checks that every key of the schema has its typed name on EnvConfig.

`cfg["key"]` reads the plain resolved dict (the free-form maps `env` and `secrets` are read so).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Generic, TypeVar

from mlctl.config import schema


class _Section:
    @classmethod
    def of(cls, value):
        """The section from its resolved dict (an instance is returned as it is)."""
        if isinstance(value, cls):
            return value
        # A partial dict (a test's, a caller's own) takes the schema's defaults for the rest.
        name = next(k for k, v in SECTIONS.items() if v is cls)
        merged = {**schema.defaults_of(schema.ENV_KEYS[name].kind), **value}
        items = {f.name: merged[f.name] for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in items.items()})


@dataclass(frozen=True)
class Thresholds(_Section):
    """When `check` warns or fails and `monitor` alerts (percentages are 0-100)."""

    disk_pct: int
    inode_pct: int
    mem_pct: int
    load_per_cpu: float
    cert_days: int
    error_lines: int
    rate_5xx_pct: float


@dataclass(frozen=True)
class Health(_Section):
    """The health request (url, expected status, timeout, Host header) and the pages besides it."""

    url: str
    expect_status: int
    timeout: float
    host_header: str
    paths: tuple
    static: bool


@dataclass(frozen=True)
class Timeouts(_Section):
    """Seconds: ssh connect, one command, the health gate, the lock's wait, staleness and lease."""

    connect: float
    command: float
    health: float
    lock_wait: float
    lock_stale: float
    lock_lease: float
    keepalive: int


@dataclass(frozen=True)
class Database(_Section):
    """The database and its snapshots' pg_dump options (password and url are secret)."""

    engine: str
    name: str
    user: str
    password: str
    host: str
    port: int
    url: str
    dump_options: tuple

    def __repr__(self) -> str:  # never print the secrets
        return f"Database(engine={self.engine!r}, name={self.name!r}, host={self.host!r})"


@dataclass(frozen=True)
class Gunicorn(_Section):
    """The app server's worker count and whether it loads the app before forking."""

    workers: int
    preload: bool


@dataclass(frozen=True)
class Hooks(_Section):
    """The project's shell commands run in the new release at three points of a deploy."""

    before_build: tuple
    after_build: tuple
    after_switch: tuple


@dataclass(frozen=True)
class Rolling(_Section):
    """How many hosts a rolling deploy switches at once (0: all together)."""

    batch: int


@dataclass(frozen=True)
class Build(_Section):
    """Where the venv's wheels are built, and the gunicorn added when the project names none."""

    install: str
    server: str


@dataclass(frozen=True)
class Cutover(_Section):
    """How a host moves to a new release: nginx (two app slots) or restart (one), and how long
    the slot left behind keeps running."""

    mode: str
    keep_old: float


T = TypeVar("T")


class Typed(Generic[T]):
    """EnvConfig's typed view of the section of the same name: `cfg.health` -> Health."""

    def __init__(self, cls: type[T]) -> None:
        self.cls = cls

    def __set_name__(self, owner, name: str) -> None:
        self.key = name

    def __get__(self, cfg, owner=None) -> T:
        if cfg is None:
            return self  # type: ignore[return-value]  # looked up on the class
        # Built once per EnvConfig (its settings never change once resolved): the instance's
        # own attribute then shadows this descriptor, so a step reads it without rebuilding.
        section = self.cls.of(cfg.settings[self.key])  # type: ignore[attr-defined]
        cfg.__dict__[self.key] = section
        return section


class Value:
    """A plain setting on EnvConfig: `cfg.deploy_to` is the resolved `deploy_to`."""

    def __set_name__(self, owner, name: str) -> None:
        self.key = name

    def __get__(self, cfg, owner=None):
        if cfg is None:
            return self
        return cfg.settings[self.key]


SECTIONS = {
    "thresholds": Thresholds,
    "health": Health,
    "timeouts": Timeouts,
    "database": Database,
    "gunicorn": Gunicorn,
    "hooks": Hooks,
    "rolling": Rolling,
    "build": Build,
    "cutover": Cutover,
}
