"""The battery's own farm (prefix mlrel, its own subnet) and the deployed world every case uses.

Other suites run farms named mlctl, mlinit and mlbench at the same time; this one never touches
theirs: cleanup only ever names this prefix and working directory.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hosts import Farm
from tests.hosts.farm import placed
from tests.hosts.fixtures import booted

from .harness import World
from .invariants import check_world

PREFIX, NETWORK, WORKDIR = placed("mlrel", "198.51.100.64/26", Path("/tmp/mlctl-rel-farm"))


@pytest.fixture(scope="session")
def relfarm():
    """Three booted hosts of our own, torn down at the end (also at interpreter exit)."""
    yield from booted(Farm(3, workdir=WORKDIR, prefix=PREFIX, network=NETWORK, boot_timeout=120))


@pytest.fixture(scope="session")
def world(relfarm, tmp_path_factory):
    """The example app set up and deployed on all three hosts, a canary table in each database."""
    w = World(relfarm, tmp_path_factory.mktemp("rel"))
    w.bootstrap()
    return w


@pytest.fixture()
def case(world, request):
    """A case: the world, and after the case the invariants on every host."""
    world.begin(request.node.name)
    yield world
    check_world(world)
