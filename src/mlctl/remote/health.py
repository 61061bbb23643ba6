# Poll a health URL until it answers the expected status (and release), or time out.
# argv: URL HOST_HEADER EXPECT_STATUS RELEASE_OR_EMPTY TIMEOUT_SECONDS
import json
import sys
import time
import urllib.error
import urllib.request

url, host, expect, release, timeout = sys.argv[1:6]
deadline = time.monotonic() + float(timeout)
last = "no answer"
while True:
    req = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            status, body = r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read().decode(errors="replace")
    except Exception as e:  # noqa: BLE001 — every failure is a reason to retry
        status, body = None, str(e)
    served = None
    try:
        served = json.loads(body).get("release")
    except (ValueError, AttributeError):
        pass
    if status == int(expect) and (not release or served == release):
        print(json.dumps({"status": status, "release": served}))
        sys.exit(0)
    last = "HTTP %s, release %s" % (status, served) if status else body[:200]
    if time.monotonic() >= deadline:
        print(last, file=sys.stderr)
        sys.exit(69)  # EX_UNAVAILABLE: mlctl tells this apart from a failing step before it
    time.sleep(0.05)
