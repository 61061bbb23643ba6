"""pytest fixture for the host farm.

Import it into a conftest.py:

    from tests.hosts.fixtures import farm  # noqa

`farm` boots three hosts once per test session (h1 = 'test', h2 + h3 = 'live'
in farm.inventory_path) from the machine's own root. `farm13` boots two Debian 13
hosts (h1 = 'test', h2 = 'live' in farm13.inventory_path), once per session and
only when a test asks for it, next to `farm` (own prefix, subnet and workdir):

    from tests.hosts.fixtures import farm, farm13  # noqa

On a machine that cannot boot hosts the tests using it
are skipped with the reason, or fail when the CI environment variable is set,
so CI never passes by silently skipping them.
"""

from __future__ import annotations

import atexit
import os
import signal

import pytest

from .farm import Farm, can_boot, default_image, placed

FARM_SIZE = 3
FARM13_SIZE = 2
FARM13_PREFIX, FARM13_NETWORK, FARM13_WORKDIR = placed(
    "mldeb13", "198.51.100.192/26", "/tmp/mlctl-deb13-farm"
)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_boot(image: str | None = None) -> None:
    """Skip (or, under CI, fail) the calling test when hosts cannot be booted here."""
    ok, reason = can_boot(image or default_image())
    if ok:
        return
    if _in_ci():
        pytest.fail(f"CI must run the host integration tests: {reason}", pytrace=False)
    pytest.skip(reason)


def _install_sigterm_teardown(farm: Farm):
    """On SIGTERM (e.g. a CI job timeout) stop the hosts, then die as asked."""
    previous = signal.getsignal(signal.SIGTERM)
    if previous is None:  # installed outside Python; restore the default instead
        previous = signal.SIG_DFL

    def on_sigterm(signum, frame):
        signal.signal(signal.SIGTERM, previous)
        try:
            farm.down()
        finally:
            if callable(previous):
                previous(signum, frame)
            else:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGTERM)

    try:
        signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:
        pass  # not the main thread: atexit and the fixture finalizer still apply
    return previous


def booted(hosts: Farm):
    """Boot `hosts` for a fixture and always tear them down: at the fixture's end, at interpreter
    exit after a Ctrl-C that skipped fixture teardown, or on SIGTERM (teardown is idempotent).

    Use as `yield from booted(Farm(...))` inside a generator fixture.
    """
    require_boot(hosts.image.name)
    atexit.register(hosts.down)
    previous = _install_sigterm_teardown(hosts)
    try:
        hosts.up()
        yield hosts
    finally:
        try:
            hosts.down()
        finally:
            atexit.unregister(hosts.down)
            try:
                signal.signal(signal.SIGTERM, previous)
            except ValueError:
                pass


@pytest.fixture(scope="session")
def farm():
    """Three booted hosts (tests.hosts.farm.Farm), torn down at session end.

    Their image is the machine's own, or $MLCTL_FARM_IMAGE (debian13: the whole suite on
    Debian 13 hosts).
    """
    yield from booted(Farm(FARM_SIZE))


@pytest.fixture(scope="session")
def farm13():
    """Two booted Debian 13 hosts, the image built first if it is not cached (a minute or two)."""
    farm = Farm(
        FARM13_SIZE,
        workdir=FARM13_WORKDIR,
        prefix=FARM13_PREFIX,
        network=FARM13_NETWORK,
        image="debian13",
    )
    yield from booted(farm)
