# Finish a built release in ONE Django process (each start-up costs ~0.3 s). As root: collectstatic
# (STATIC_ROOT lives in the root-owned release). Then as the app user, who serves the code:
# `check --deploy`, a read check of the release tree, the WSGI import, and this code's migration
# leaves, the migrations it would apply and one collected static file, printed as JSON on the
# last line. First of all, gunicorn must be in the venv. remote/migplan.py is sent in front.
# argv: SETTINGS_MODULE WSGI ("module:callable") APP_USER ("" to stay who we are)
import importlib
import json
import os
import pwd
import re
import sys

if __package__:  # imported by mlctl; on a host remote/migplan.py is sent in front
    from mlctl.remote.migplan import executor_of, pending


def clip(text, limit=300):
    """At most `limit` characters, cut at a word's end (the one-line error never halves one)."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:") + "\u2026"


def fail(what, error):
    # The whole message first (the journal keeps it), then one line that names the part that
    # failed, and for Django's checks every issue id and their count: mlctl's one-line error is
    # the last line.
    text = str(error).strip()
    print(text, file=sys.stderr)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    issues = [line for line in lines if ISSUE_ID.search(line)]
    if issues:
        ids = [ISSUE_ID.search(line).group(1) for line in issues]
        count = "%d issue%s" % (len(ids), "" if len(ids) == 1 else "s")
        summary = "%s (%s): %s" % (count, ", ".join(ids), issues[0])
    else:
        summary = lines[0] if lines else ""
    print(clip("%s failed: %s: %s" % (what, type(error).__name__, summary)), file=sys.stderr)
    sys.exit(1)


ISSUE_ID = re.compile(r"\((\S+\.[CEWI]\d+)\)")


def one_static_file():
    """The URL path of one collected file nginx must serve: a hashed name from the staticfiles
    manifest when there is one, else the first file collected (None: nothing to request)."""
    from urllib.parse import quote

    from django.conf import settings
    from django.contrib.staticfiles.storage import staticfiles_storage

    url = settings.STATIC_URL or ""
    if not url.startswith("/") or url.startswith("//"):
        return None  # served elsewhere (a CDN): not nginx's to serve
    names = []
    if hasattr(staticfiles_storage, "read_manifest"):
        names = sorted(
            (json.loads(staticfiles_storage.read_manifest() or "{}").get("paths") or {}).values()
        )
    root = settings.STATIC_ROOT
    if not names and root and os.path.isdir(root):
        for path, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(files):
                if not name.startswith("."):
                    names.append(os.path.relpath(os.path.join(path, name), root))
                    break
            if names:
                break
    return url.rstrip("/") + "/" + quote(names[0]) if names else None


def become(name):
    """Drop root for good: the checks must see what the app user sees."""
    if not name or os.geteuid() != 0:
        return
    pw = pwd.getpwnam(name)
    os.setgroups(os.getgrouplist(name, pw.pw_gid))
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)
    os.environ.update(HOME=pw.pw_dir, USER=name, LOGNAME=name)


def unreadable(top):
    """The first file or directory under `top` the current user cannot read, or None."""
    for path, _dirs, names in os.walk(top, onerror=lambda e: None):
        if not os.access(path, os.R_OK | os.X_OK):
            return path
        for name in names:
            full = os.path.join(path, name)
            if os.path.exists(full) and not os.access(full, os.R_OK):
                return full
    return None


if not os.access(os.path.join(sys.prefix, "bin", "gunicorn"), os.X_OK):
    fail(
        "gunicorn",
        FileNotFoundError(
            ".venv/bin/gunicorn is missing: add gunicorn to the project's requirements"
        ),
    )
sys.path.insert(0, ".")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", sys.argv[1])
module, _, attr = sys.argv[2].partition(":")
try:
    import django

    django.setup()
    from django.apps import apps
    from django.core.management import call_command

    static = None
    if apps.is_installed("django.contrib.staticfiles"):
        call_command("collectstatic", interactive=False, verbosity=0)
        static = one_static_file()
except BaseException as e:  # noqa: BLE001 — settings and import errors alike
    fail("collectstatic", e)
try:
    become(sys.argv[3])
    call_command("check", deploy=True, fail_level="WARNING")
except BaseException as e:  # noqa: BLE001 — SystemCheckError and import errors alike
    fail("check --deploy", e)
blocked = unreadable(".")
if blocked:
    fail("read check", PermissionError("%s cannot read %s" % (sys.argv[3] or "this user", blocked)))
try:
    app = getattr(importlib.import_module(module), attr or "application")
    assert callable(app), "the WSGI application is not callable"
except BaseException as e:  # noqa: BLE001
    fail("import WSGI app", e)
try:
    from django.db import connection

    executor = executor_of(connection)
    graph = executor.loader.graph
    planned = pending(executor)
except BaseException as e:  # noqa: BLE001
    fail("migrations pending", e)
print(
    json.dumps(
        {
            "pending": planned,
            "leaves": dict(sorted(graph.leaf_nodes())),
            "static": static,
        }
    )
)
