"""What the HTTPS tests need: a host of their own, a test CA that signs certificates, an HTTPS
client that verifies them, and Debian's `pebble` ACME test server run on this machine.

Pebble listens on the farm's bridge address (the hosts reach it, nothing else does); its DNS is
`pebble-challtestsrv`, whose mock DNS answers every A query with the test host's address, so
pebble's HTTP-01 validation reaches the host's nginx on port 80 for any name. Pebble's own HTTPS
listener has a certificate from the test CA; the CA that signs the sites' certificates is
pebble's own root, generated at its start and fetched from its management endpoint.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

from tests.hosts.farm import Farm, placed
from tests.hosts.fixtures import booted
from tests.tlscerts import TestCA

__all__ = ["TestCA", "http_get", "https_get", "own_host", "pebble"]

# A network of its own (hosts .27-.30), next to the suite's other farms, moved by the slot.
PREFIX, NETWORK, WORKDIR = placed("mltls", "198.51.100.16/28", "/tmp/mlctl-tls-farm")


def own_host():
    """One booted host for a module (`yield from own_host()` in a fixture)."""
    yield from booted(Farm(1, workdir=WORKDIR, prefix=PREFIX, network=NETWORK))


# ---------------------------------------------------------------- a verifying HTTPS client


class _Named(http.client.HTTPSConnection):
    def __init__(self, address: str, sni: str, context: ssl.SSLContext, timeout: float):
        super().__init__(address, 443, context=context, timeout=timeout)
        self.sni = sni

    def connect(self):
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.sni)


def https_get(address: str, name: str, path: str, ca: Path, timeout: float = 10):
    """(status, headers, body, peer certificate) of GET https://name/path sent to `address`,
    the chain and the name verified against `ca` only."""
    ctx = ssl.create_default_context(cafile=str(ca))
    conn = _Named(address, name, ctx, timeout)
    try:
        conn.request("GET", path, headers={"Host": name})
        peer = conn.sock.getpeercert()  # before the answer is read: nginx may close then
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, dict(resp.getheaders()), body, peer
    finally:
        conn.close()


def http_get(address: str, name: str, path: str, timeout: float = 10):
    """(status, headers) of GET http://name/path sent to `address` (redirects not followed)."""
    conn = http.client.HTTPConnection(address, 80, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": name})
        resp = conn.getresponse()
        resp.read()
        return resp.status, dict(resp.getheaders())
    finally:
        conn.close()


# ---------------------------------------------------------------- pebble


@contextmanager
def pebble(workdir: Path, bridge: str, host_address: str, ca: TestCA):
    """Pebble on `bridge`:14000 (ACME) and :15000 (management), its DNS answering every name
    with `host_address`. Yields the directory URL and the path of a PEM bundle holding the test
    CA (pebble's listener) and pebble's issuing root."""
    listener_cert, listener_key = ca.leaf([bridge], "pebble-listener")
    config = workdir / "pebble.json"
    config.write_text(
        json.dumps(
            {
                "pebble": {
                    "listenAddress": f"{bridge}:14000",
                    "managementListenAddress": f"{bridge}:15000",
                    "certificate": str(listener_cert),
                    "privateKey": str(listener_key),
                    "httpPort": 80,
                    "tlsPort": 443,
                    "ocspResponderURL": "",
                    "externalAccountBindingRequired": False,
                }
            }
        )
    )
    dns = f"{bridge}:8053"
    logs = [
        open(workdir / name, "w") for name in ("challtestsrv.log", "pebble.log")
    ]  # noqa: SIM115
    procs = [
        subprocess.Popen(
            ["pebble-challtestsrv", "-defaultIPv4", host_address, "-defaultIPv6", "",
             "-dns01", dns, "-http01", "", "-https01", "", "-tlsalpn01", "",
             "-management", f"{bridge}:8055"],
            stdout=logs[0], stderr=subprocess.STDOUT,
        ),  # fmt: skip
    ]
    try:
        _wait_port(bridge, 8055)
        env = {"PATH": "/usr/bin:/bin", "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
        procs.append(
            subprocess.Popen(
                ["pebble", "-config", str(config), "-dnsserver", dns],
                stdout=logs[1],
                stderr=subprocess.STDOUT,
                env=env,
            )
        )
        _wait_port(bridge, 15000)
        root = _fetch(f"https://{bridge}:15000/roots/0", ca.path)
        bundle = workdir / "trust.pem"
        bundle.write_bytes(ca.path.read_bytes() + root)
        (workdir / "pebble-root.pem").write_bytes(root)
        yield f"https://{bridge}:14000/dir", bundle
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        for f in logs:
            f.close()


def _wait_port(address: str, port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((address, port), 1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _fetch(url: str, ca: Path) -> bytes:
    import urllib.request

    ctx = ssl.create_default_context(cafile=str(ca))
    with urllib.request.urlopen(url, context=ctx, timeout=10) as r:  # noqa: S310 — pebble's
        return r.read()
