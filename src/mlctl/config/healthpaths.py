"""What "healthy" means: the requests the deploy's health gate, `check` and `status` make.

By default: the health URL (its answer must name the release), the site's root page and one
collected static file, all through nginx with the site's own Host header. `health.paths` adds or
replaces pages: `{path: /, expect: "<500", body: "Welcome", host: example.com}`. remote/health.py
makes the requests and judges them with the same `expect` syntax (`parse_expect` is its twin).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from mlctl.core.console import clip

EXPECT = re.compile(
    r"^(?:(?P<op><=|>=|<|>)?(?P<n>[1-5]\d\d)|(?P<lo>[1-5]\d\d)-(?P<hi>[1-5]\d\d)|(?P<cls>[1-5])xx)$"
)
PATH_KEYS = ("path", "expect", "body", "host")


def parse_expect(text) -> tuple[int, int]:
    """The inclusive status range of "200", "<500", ">=200", "200-399" or "2xx"."""
    m = EXPECT.match(str(text).replace(" ", ""))
    if not m:
        raise ValueError(f"expected a status like 200, <500, 200-399 or 2xx, got {text!r}")
    if m["cls"]:
        return int(m["cls"]) * 100, int(m["cls"]) * 100 + 99
    if m["lo"]:
        return int(m["lo"]), int(m["hi"])
    n, op = int(m["n"]), m["op"]
    return {
        None: (n, n),
        "<": (100, n - 1),
        "<=": (100, n),
        ">": (n + 1, 599),
        ">=": (n, 599),
    }[op]


def path_problem(entry) -> str:
    """Why a `health.paths` entry is invalid, or '' (a string is shorthand for {path: ...})."""
    if isinstance(entry, str):
        entry = {"path": entry}
    if not isinstance(entry, dict):
        return "expected a path or a mapping with path, expect, body, host"
    unknown = sorted(set(entry) - set(PATH_KEYS))
    if unknown:
        return f"unknown key {unknown[0]} (known: {', '.join(PATH_KEYS)})"
    path = entry.get("path")
    if not isinstance(path, str) or not path.startswith("/") or any(c.isspace() for c in path):
        return f"path must start with / and hold no spaces (got {path!r})"
    for key in ("body", "host"):
        if not isinstance(entry.get(key, ""), str):
            return f"{key} must be a string"
    try:
        parse_expect(entry.get("expect", "<500"))
    except ValueError as e:
        return str(e)
    return ""


def default_host(settings: dict) -> str:
    """The Host header: health.host_header, else the site's first concrete server_name."""
    h = settings["health"]["host_header"]
    if h or settings.get("connection") == "local":
        return h
    names = [n for n in settings.get("server_name", "_").split() if n != "_" and "*" not in n]
    return names[0] if names else ""


def requests(settings: dict, release: str | None = None, static: str | None = None) -> dict:
    """The probe's plan: where to send the requests and what each must answer.

    `release` (the gate) makes the health URL's answer name that release; `static` is the URL
    path of one collected static file, requested where nginx serves them (not on a dev host).
    """
    h = settings["health"]
    url = urlsplit(h["url"])
    host = default_host(settings)
    plan = [
        {
            "path": url.path or "/",
            "expect": str(h["expect_status"]),
            "host": host,
            "body": "",
            "release": release or "",
        }
    ]
    for entry in h["paths"]:
        entry = {"path": entry} if isinstance(entry, str) else entry
        plan.append(
            {
                "path": entry["path"],
                "expect": str(entry.get("expect", "<500")),
                "host": entry.get("host") or host,
                "body": entry.get("body", ""),
                "release": "",
            }
        )
    if static and h["static"] and settings.get("connection") != "local":
        plan.append({"path": static, "expect": "200", "host": host, "body": "", "release": ""})
    return {"base": f"{url.scheme}://{url.netloc}", "requests": plan}


def slot_requests(settings: dict, release: str, static: str | None, socket: str, rel: str) -> dict:
    """The gate of one app slot, before nginx serves it: the same requests sent to the slot's
    socket, except the static file (nginx serves those, not gunicorn): it must be in the release's
    staticfiles/, where nginx will look for it."""
    plan = requests(settings, release, static)
    for req in plan["requests"]:
        if static and req["path"] == static and static.startswith(STATIC_URL):
            req["file"] = f"{rel}/staticfiles/{static[len(STATIC_URL):]}"
    return {**plan, "socket": socket}


STATIC_URL = "/static/"  # where the nginx site serves the release's staticfiles/


def describe(result: dict) -> str:
    """`GET /about/ (Host example.com): HTTP 500 (expected <500)` for one judged request."""
    where = f"GET {result['path']}" + (f" (Host {result['host']})" if result.get("host") else "")
    return f"{where}: {result.get('why') or 'ok'}"


GUNICORN_ERROR = re.compile(r"^\[[^]]+\] \[\d+\] \[(?:ERROR|CRITICAL)\] (?P<text>.+)$")


def gunicorn_error(lines: list[str]) -> tuple[str, str]:
    """gunicorn's own last error (`Connection in use: ('127.0.0.1', 8765)`), or ("", "")."""
    for line in reversed(lines):
        m = GUNICORN_ERROR.match(line.strip())
        if m:
            return clip(f"gunicorn: {m['text']}"), line.strip()
    return "", ""


def app_error(log: str) -> tuple[str, str]:
    """(the last traceback's exception line, that whole traceback) in an app's log, else
    gunicorn's own last error line, or ("", "")."""
    lines = log.splitlines()
    starts = [i for i, ln in enumerate(lines) if "Traceback (most recent call last):" in ln]
    if not starts:
        return gunicorn_error(lines)
    block = lines[starts[-1] :]
    for i, ln in enumerate(block[1:], 1):
        if ln.strip() and not ln[:1].isspace():
            return clip(ln.strip()), "\n".join(block[: i + 1])
    return "", "\n".join(block)
