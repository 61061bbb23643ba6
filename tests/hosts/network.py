"""The farm's private layer-2 segment: one bridge, one network namespace per host.

Each host's namespace holds one end of a veth pair (named eth0 there); the other
end is enslaved to the bridge on the machine side. The bridge carries the first
address of the subnet and there is no gateway, so hosts reach each other and the
bridge address, and nothing else.
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path

from .system import run

NETNS_DIR = Path("/run/netns")


def mac_for(address: ipaddress.IPv4Address) -> str:
    """A fixed, locally administered MAC derived from the address.

    Stable MACs keep ARP caches and anything keyed on them deterministic across
    farm restarts.
    """
    return "02:00:" + ":".join(f"{octet:02x}" for octet in address.packed)


def bridge_name(prefix: str) -> str:
    return f"{prefix}-br"


def link_name(prefix: str, host: str) -> str:
    """Name of both the host's namespace and the machine-side veth end."""
    return f"{prefix}-{host}"


def check_name(name: str) -> None:
    # Interface names are limited to 15 bytes (IFNAMSIZ - 1).
    if len(name) > 15 or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"unusable interface name {name!r} (max 15 chars, [A-Za-z0-9_.-])")


def create_bridge(name: str, interface: ipaddress.IPv4Interface) -> None:
    check_name(name)
    run(
        "ip",
        "link",
        "add",
        name,
        "address",
        mac_for(interface.ip),
        "type",
        "bridge",
        "forward_delay",
        "0",
        "stp_state",
        "0",
    )
    # Routing between the bridge and the machine's uplink is what a host would
    # need to escape; refuse it at the interface even if ip_forward gets enabled.
    Path(f"/proc/sys/net/ipv4/conf/{name}/forwarding").write_text("0")
    run("ip", "addr", "add", str(interface), "dev", name)
    run("ip", "link", "set", name, "up")


def create_host_link(netns: str, bridge: str, interface: ipaddress.IPv4Interface) -> None:
    """Namespace + veth pair; the namespace side is eth0 with the host's address."""
    check_name(netns)
    run("ip", "netns", "add", netns)
    run("ip", "link", "add", netns, "type", "veth", "peer", "name", "eth0", "netns", netns)
    run("ip", "link", "set", netns, "master", bridge, "up")
    inside = ("ip", "-n", netns)
    run(*inside, "link", "set", "lo", "up")
    run(*inside, "link", "set", "eth0", "address", mac_for(interface.ip))
    run(*inside, "addr", "add", str(interface), "dev", "eth0")
    run(*inside, "link", "set", "eth0", "up")


def list_netns(prefix: str) -> list[str]:
    pattern = re.compile(rf"{re.escape(prefix)}-h\d+")
    names = [p.name for p in NETNS_DIR.iterdir()] if NETNS_DIR.is_dir() else []
    return sorted(name for name in names if pattern.fullmatch(name))


def list_links(prefix: str) -> list[str]:
    """Machine-side farm links: host veth ends and the bridge."""
    pattern = re.compile(rf"{re.escape(prefix)}-(h\d+|br)")
    links = json.loads(run("ip", "-j", "link", "show").stdout or "[]")
    return sorted(link["ifname"] for link in links if pattern.fullmatch(link["ifname"]))


def delete_link(name: str) -> None:
    if Path(f"/sys/class/net/{name}").exists():
        run("ip", "link", "del", name)


def delete_netns(name: str) -> None:
    if (NETNS_DIR / name).exists():
        run("ip", "netns", "del", name)
