# Verify a built release in ONE Django process (each start-up costs ~0.3 s): `check --deploy`,
# import of the WSGI application, and the migrations this code would apply, printed as JSON.
# argv: SETTINGS_MODULE WSGI ("module:callable")
import importlib
import json
import os
import sys


def fail(what, error):
    # The last line names the part that failed; it becomes mlctl's one-line error.
    print("%s failed: %s: %s" % (what, type(error).__name__, error), file=sys.stderr)
    sys.exit(1)


sys.path.insert(0, ".")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", sys.argv[1])
module, _, attr = sys.argv[2].partition(":")
try:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("check", deploy=True, fail_level="WARNING")
except BaseException as e:  # noqa: BLE001 — SystemCheckError and import errors alike
    fail("check --deploy", e)
try:
    app = getattr(importlib.import_module(module), attr or "application")
    assert callable(app), "the WSGI application is not callable"
except BaseException as e:  # noqa: BLE001
    fail("import WSGI app", e)
try:
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
except BaseException as e:  # noqa: BLE001
    fail("migrations pending", e)
print(json.dumps({"pending": ["%s.%s" % (m.app_label, m.name) for m, _ in plan]}))
