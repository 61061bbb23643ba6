# Migration plans, run inside a release with its venv and .env.
# argv: SETTINGS_MODULE then one of
#       "leaves"                -> print this code's leaf migration per app as JSON
#       "plan" TARGETS_JSON     -> print the backwards plan to TARGETS and whether it is reversible
#       "pending"               -> print unapplied migrations of this code as JSON
import json
import os
import sys

sys.path.insert(0, ".")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", sys.argv.pop(1))
import django  # noqa: E402

django.setup()
from django.db import connection  # noqa: E402
from django.db.migrations.executor import MigrationExecutor  # noqa: E402
from django.db.migrations.loader import MigrationLoader  # noqa: E402

mode = sys.argv[1]
if mode == "leaves":
    loader = MigrationLoader(None, ignore_no_migrations=True)
    leaves = {}
    for app, name in loader.graph.leaf_nodes():
        leaves[app] = name
    print(json.dumps(leaves))
    sys.exit(0)

executor = MigrationExecutor(connection)
if mode == "pending":
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    print(json.dumps(["%s.%s" % (m.app_label, m.name) for m, _ in plan]))
    sys.exit(0)

targets_in = json.loads(sys.argv[2])  # {app: leaf or null} of the release to go back to
applied_apps = {app for app, _ in executor.loader.applied_migrations}
targets = []
for app in sorted(applied_apps):
    if app in targets_in:
        targets.append((app, targets_in[app]))
    elif app in {k for k, _ in executor.loader.graph.leaf_nodes()}:
        targets.append((app, None))
plan = executor.migration_plan(targets)
steps = [(m, backwards) for m, backwards in plan if backwards]
irreversible = []
for m, _ in steps:
    for op in m.operations:
        if not op.reversible:
            irreversible.append("%s.%s" % (m.app_label, m.name))
            break
print(
    json.dumps(
        {
            "targets": [
                [a, n or "zero"] for a, n in targets if any(m.app_label == a for m, _ in steps)
            ],
            "unapply": ["%s.%s" % (m.app_label, m.name) for m, _ in steps],
            "irreversible": irreversible,
        }
    )
)
