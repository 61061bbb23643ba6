# Request the site's health paths and judge each answer (status range, body text, release id).
# argv: CONFIG_JSON = {"base": "http://127.0.0.1", "timeout": 30, "once": false,
#                      "requests": [{"path", "expect", "host", "body", "release"}, ...]}
# With "socket": a gunicorn socket path, the requests go to that app slot directly (no nginx), and
# a request with "file" (a static file nginx would serve) passes when that file is in the release.
# Gate (once false): poll until every request passes, or time out; the first request names the
# release, and until it does the others are not asked (old processes may still answer). A status
# 500 that persists after the new release answers fails at once. Prints the results as JSON; on
# failure the failing request on stderr (last line) and exit 69.
# Once (check, status): ask every request one time and print the results.
import http.client
import json
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.request

EXPECT = re.compile(
    r"^(?:(?P<op><=|>=|<|>)?(?P<n>[1-5]\d\d)|(?P<lo>[1-5]\d\d)-(?P<hi>[1-5]\d\d)|(?P<cls>[1-5])xx)$"
)
AGENT = "mlctl-health"  # `check` leaves mlctl's own requests out of the site's 5xx count


def status_range(text):
    m = EXPECT.match(str(text).replace(" ", ""))
    if m is None:
        return 200, 200
    if m.group("cls"):
        return int(m.group("cls")) * 100, int(m.group("cls")) * 100 + 99
    if m.group("lo"):
        return int(m.group("lo")), int(m.group("hi"))
    n, op = int(m.group("n")), m.group("op")
    return {None: (n, n), "<": (100, n - 1), "<=": (100, n), ">": (n + 1, 599), ">=": (n, 599)}[op]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect is an answer (a login page's 302 is fine under "<500"); following it could
    # leave this host for the site's public name.
    def redirect_request(self, *args, **kwargs):
        return None


# No proxy from the environment either: the requests are for this host's own nginx.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect)


def fetch(base, req, timeout):
    headers = {"User-Agent": AGENT, "Cache-Control": "no-cache"}
    if req.get("host"):
        headers["Host"] = req["host"]
    r = urllib.request.Request(base + req["path"], headers=headers)
    try:
        with OPENER.open(r, timeout=timeout) as resp:
            return resp.status, resp.read(1 << 20).decode(errors="replace"), ""
    except urllib.error.HTTPError as e:
        return e.code, e.read(1 << 20).decode(errors="replace"), ""
    except Exception as e:  # noqa: BLE001 — every failure is an answer to report
        return None, "", "%s: %s" % (type(e).__name__, getattr(e, "reason", e))


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def fetch_unix(path, req, timeout):
    conn = UnixHTTPConnection(path, timeout)
    headers = {"User-Agent": AGENT, "Host": req.get("host") or "localhost"}
    try:
        conn.request("GET", req["path"], headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read(1 << 20).decode(errors="replace"), ""
    except Exception as e:  # noqa: BLE001 — every failure is an answer to report
        return None, "", "%s: %s" % (type(e).__name__, e)
    finally:
        conn.close()


def answer(base, req, timeout):
    """(status, body, error) of one request: through nginx (`base` a URL), or from one app slot
    (`base` a socket path); a static file the slot's release must hold is looked up on disk."""
    if not base.startswith("/"):
        return fetch(base, req, timeout)
    if req.get("file"):
        found = os.path.isfile(req["file"])
        return (200, "", "") if found else (404, "", "")
    return fetch_unix(base, req, timeout)


def served_release(body):
    try:
        return json.loads(body).get("release")
    except (ValueError, AttributeError):
        return None


def judge(base, req, timeout):
    status, body, error = answer(base, req, timeout)
    out = {
        "path": req["path"],
        "host": req.get("host", ""),
        "expect": req["expect"],
        "status": status,
        "ok": False,
        "why": "",
    }
    lo, hi = status_range(req["expect"])
    if status is None:
        out["why"] = "no answer (%s)" % error
    elif not lo <= status <= hi:
        out["why"] = "HTTP %s (expected %s)" % (status, req["expect"])
    elif req.get("release") and served_release(body) != req["release"]:
        out["release"] = served_release(body)
        out["why"] = "HTTP %s from release %s (expected %s)" % (
            status,
            out["release"],
            req["release"],
        )
    elif req.get("body") and req["body"] not in body:
        out["why"] = "HTTP %s without %r in the page" % (status, req["body"])
    else:
        out["ok"] = True
        out["why"] = "HTTP %s" % status
    return out


def once(cfg):
    timeout = min(float(cfg["timeout"]), 10.0)
    return [judge(cfg["base"], r, timeout) for r in cfg["requests"]]


def gate(cfg):
    deadline = time.monotonic() + float(cfg["timeout"])
    first, rest = cfg["requests"][0], cfg["requests"][1:]
    strikes = 0
    while True:
        left = max(1.0, min(5.0, deadline - time.monotonic()))
        results = [judge(cfg["base"], first, left)]
        if results[0]["ok"]:
            results += [judge(cfg["base"], r, left) for r in rest]
        if all(r["ok"] for r in results):
            return True, results
        # The new release answers and a page still raises: the app's own error, not start-up.
        strikes = strikes + 1 if any(r["status"] == 500 for r in results[1:]) else 0
        if strikes >= 3 or time.monotonic() >= deadline:
            return False, results
        time.sleep(0.2 if results[0]["ok"] else 0.05)


def describe(r):
    where = "GET %s" % r["path"] + (" (Host %s)" % r["host"] if r.get("host") else "")
    return "%s: %s" % (where, r["why"])


def main():
    cfg = json.loads(sys.argv[1])
    if cfg.get("socket"):
        cfg["base"] = cfg["socket"]
    if cfg.get("once"):
        print(json.dumps(once(cfg)))
        return
    ok, results = gate(cfg)
    print(json.dumps(results))
    if not ok:
        print(describe([r for r in results if not r["ok"]][0]), file=sys.stderr)
        sys.exit(69)  # EX_UNAVAILABLE: mlctl tells this apart from a failing step before it


if __name__ == "__main__":
    main()
