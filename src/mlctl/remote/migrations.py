# Migration plans, run inside a release with its venv and .env (remote/migplan.py goes first).
# argv: SETTINGS_MODULE then one of
#       "leaves"                -> print this code's leaf migration per app as JSON
#       "plan" TARGETS_JSON     -> print the backwards plan to TARGETS and whether it is reversible
#       "pending"               -> print unapplied migrations of this code as JSON
import json
import os
import sys

if __package__:  # imported by mlctl; on a host remote/migplan.py is sent in front
    from mlctl.remote.migplan import backwards_plan, executor_of, pending


def leaves():
    from django.db.migrations.loader import MigrationLoader

    loader = MigrationLoader(None, ignore_no_migrations=True)
    return dict(loader.graph.leaf_nodes())


def answer(mode, args):
    import django

    django.setup()
    if mode == "leaves":
        return leaves()
    from django.db import connection

    executor = executor_of(connection)
    if mode == "pending":
        return pending(executor)
    return backwards_plan(executor, json.loads(args[0]))  # {app: leaf or null} to go back to


def main():
    sys.path.insert(0, ".")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", sys.argv[1])
    print(json.dumps(answer(sys.argv[2], sys.argv[3:])))


if __name__ == "__main__":
    main()
