# The certificate this host serves (part of the probe program, see remote/probe.py): for each of
# the site's names, a TLS handshake with this host's own nginx on port 443 sending that name
# (SNI), verified against the system's CAs plus the configured CA: the chain, the name and the
# dates, as a browser would; then certbot's renewal timer with `tls: acme`.
import socket
import ssl

if __package__:  # imported by mlctl; on a host these modules are sent in front
    from mlctl.remote.probe_base import CFG, run


def handshake(name, ca, timeout=10):
    ctx = ssl.create_default_context()
    if ca:
        ctx.load_verify_locations(cafile=ca)
    out = {"name": name}
    try:
        with socket.create_connection(("127.0.0.1", 443), timeout) as sock:
            with ctx.wrap_socket(sock, server_hostname=name) as tls_sock:
                cert = tls_sock.getpeercert()
    except ssl.SSLCertVerificationError as e:
        out["error"] = e.verify_message or str(e)
        return out
    except (OSError, ssl.SSLError) as e:
        out["error"] = "%s: %s" % (type(e).__name__, e)
        return out
    out["not_after"] = ssl.cert_time_to_seconds(cert["notAfter"])
    out["issuer"] = dict(x[0] for x in cert.get("issuer", ())).get("commonName", "")
    return out


def timer_state(unit):
    enabled = run(["systemctl", "is-enabled", unit])["out"].strip() or "unknown"
    active = run(["systemctl", "is-active", unit])["out"].strip() or "unknown"
    return {"unit": unit, "enabled": enabled, "active": active}


def served_tls():
    want = CFG["served_tls"]
    out = {"certs": [handshake(n, want["ca"]) for n in want["names"]]}
    if want.get("timer"):
        out["timer"] = timer_state(want["timer"])
    return out
