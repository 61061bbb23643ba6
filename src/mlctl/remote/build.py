# Finish a built release in ONE Django process (each start-up costs ~0.3 s). As root: collectstatic
# (STATIC_ROOT lives in the root-owned release). Then as the app user, who serves the code:
# `check --deploy`, a read check of the release tree, the WSGI import, and this code's migration
# leaves and the migrations it would apply, printed as JSON on the last line.
# argv: SETTINGS_MODULE WSGI ("module:callable") APP_USER ("" to stay who we are)
import importlib
import json
import os
import pwd
import re
import sys


def fail(what, error):
    # The whole message first (the journal keeps it), then one line that names the part that
    # failed and its first Django check issue if any: mlctl's one-line error is the last line.
    text = str(error).strip()
    print(text, file=sys.stderr)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    issues = [line for line in lines if re.search(r"\(\S+\.[CEWI]\d+\)", line)]
    summary = (issues or lines or [""])[0][:300]
    more = " (and %d more)" % (len(issues) - 1) if len(issues) > 1 else ""
    print("%s failed: %s: %s%s" % (what, type(error).__name__, summary, more), file=sys.stderr)
    sys.exit(1)


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


sys.path.insert(0, ".")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", sys.argv[1])
module, _, attr = sys.argv[2].partition(":")
try:
    import django

    django.setup()
    from django.apps import apps
    from django.core.management import call_command

    if apps.is_installed("django.contrib.staticfiles"):
        call_command("collectstatic", interactive=False, verbosity=0)
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
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    graph = executor.loader.graph
    plan = executor.migration_plan(graph.leaf_nodes())
except BaseException as e:  # noqa: BLE001
    fail("migrations pending", e)
print(
    json.dumps(
        {
            "pending": ["%s.%s" % (m.app_label, m.name) for m, _ in plan],
            "leaves": dict(sorted(graph.leaf_nodes())),
        }
    )
)
