"""Command line for the test host farm (run from the repository root, as root).

    python -m tests.hosts up [N]            boot N hosts (default 3); last line: inventory path
    python -m tests.hosts up N --image debian13   ... from a Debian 13 tree (built once, cached)
    python -m tests.hosts image debian13    build (or find) an image; prints its path
    python -m tests.hosts status            hosts, pids, memory
    python -m tests.hosts ssh h1 [cmd...]   ssh to a host as root (--user deploy to change)
    python -m tests.hosts down              stop everything, remove all traces

--workdir, --prefix and --network (or MLCTL_FARM_DIR, MLCTL_FARM_PREFIX,
MLCTL_FARM_NETWORK) select a farm other than the default one; --image (or
MLCTL_FARM_IMAGE) the root filesystem its hosts boot.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time

from . import image as images
from .farm import Farm, FarmError, cleanup_leftovers, default_workdir, read_state
from .system import CommandError


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.workdir:
        os.environ["MLCTL_FARM_DIR"] = args.workdir
    try:
        return args.func(args)
    except FarmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.hosts",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--workdir", help="farm working dir (default $MLCTL_FARM_DIR or " "/tmp/mlctl-farm)"
    )
    commands = parser.add_subparsers(required=True, metavar="command")

    up = commands.add_parser("up", help="boot hosts")
    up.add_argument("n", nargs="?", type=int, default=3)
    up.add_argument("--prefix", help="name prefix for namespaces, links, cgroups")
    up.add_argument("--network", help="IPv4 subnet, e.g. 198.51.100.0/24")
    up.add_argument("--timeout", type=float, default=60, help="boot timeout in seconds")
    up.add_argument(
        "--image",
        choices=sorted(images.IMAGES),
        help="root filesystem: the machine's own (default, or $MLCTL_FARM_IMAGE) or debian13",
    )
    up.set_defaults(func=_up)

    build = commands.add_parser("image", help="build an image unless it is cached; prints its path")
    build.add_argument("name", choices=sorted(images.IMAGES))
    build.set_defaults(func=_image)

    commands.add_parser("status", help="show hosts").set_defaults(func=_status)

    ssh = commands.add_parser("ssh", help="ssh to a host")
    ssh.add_argument("host")
    ssh.add_argument("--user", default="root")
    ssh.add_argument("command", nargs=argparse.REMAINDER)
    ssh.set_defaults(func=_ssh)

    down = commands.add_parser("down", help="stop and remove the farm")
    down.add_argument("--prefix", help="prefix of a farm without a state file")
    down.set_defaults(func=_down)
    return parser


def _up(args: argparse.Namespace) -> int:
    farm = Farm(
        args.n,
        prefix=args.prefix,
        network=args.network,
        boot_timeout=args.timeout,
        image=args.image,
    )
    started = time.monotonic()
    farm.up()
    print(f"{len(farm.hosts)} host(s) up in {time.monotonic() - started:.1f}s:")
    for host in farm.hosts:
        print(f"  {host.name} {host.address}")
    print(f"ssh: ssh -F {farm.ssh_config} h1")
    print(farm.inventory_path)
    return 0


def _image(args: argparse.Namespace) -> int:
    started = time.monotonic()
    try:
        path = images.get(args.name).ensure()
    except (images.ImageError, CommandError) as exc:
        raise FarmError(f"image {args.name}: {exc}") from exc
    print(f"image {args.name} ready in {time.monotonic() - started:.1f}s:", file=sys.stderr)
    print(path)
    return 0


def _status(args: argparse.Namespace) -> int:
    farm = Farm.attach()
    print(f"farm {farm.prefix} in {farm.workdir} ({farm.network}, image {farm.image.name})")
    for row in farm.status():
        state = "running" if row["processes"] else "STOPPED"
        print(
            f"  {row['name']:4} {row['address']:15} pid {row['pid']} {state} "
            f"processes {row['processes']} pss {row['pss_bytes'] >> 20} MiB "
            f"tmpfs {row['tmpfs_bytes'] >> 20} MiB"
        )
    return 0


def _ssh(args: argparse.Namespace) -> int:
    farm = Farm.attach()
    command = shlex.join(args.command) if args.command else None
    argv = farm.ssh_argv(args.host, command, args.user)
    if command is None:
        argv.insert(1, "-t")  # interactive shell
    os.execvp(argv[0], argv)
    return 0  # not reached


def _down(args: argparse.Namespace) -> int:
    workdir = default_workdir()
    prefix = args.prefix or (read_state(workdir) or {}).get("prefix")
    cleanup_leftovers(prefix, workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
