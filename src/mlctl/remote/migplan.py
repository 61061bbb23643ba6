# The one place that asks Django which migrations are pending, and the backwards plan to a set of
# targets: sent in front of remote/build.py, remote/migrations.py and remote/django_probe.py.
# Django is imported inside each function: the text runs in a release's venv after django.setup().


def names(plan):
    return ["%s.%s" % (m.app_label, m.name) for m, _ in plan]


def executor_of(connection):
    from django.db.migrations.executor import MigrationExecutor

    return MigrationExecutor(connection)


def pending(executor):
    """This code's migrations not applied to the database yet, in the order migrate applies them."""
    return names(executor.migration_plan(executor.loader.graph.leaf_nodes()))


def backwards_targets(executor, wanted):
    """(app, leaf or None) to go back to: `wanted` {app: leaf or None} of the release to restore;
    an applied app that release does not know goes back to zero."""
    leaves = {app for app, _ in executor.loader.graph.leaf_nodes()}
    targets = []
    for app in sorted({app for app, _ in executor.loader.applied_migrations}):
        if app in wanted:
            targets.append((app, wanted[app]))
        elif app in leaves:
            targets.append((app, None))
    return targets


def backwards_plan(executor, wanted):
    """{"targets": [[app, leaf or "zero"]], "unapply": [...], "irreversible": [...]}."""
    targets = backwards_targets(executor, wanted)
    steps = [(m, back) for m, back in executor.migration_plan(targets) if back]
    irreversible = [
        "%s.%s" % (m.app_label, m.name)
        for m, _ in steps
        if any(not op.reversible for op in m.operations)
    ]
    moved = {m.app_label for m, _ in steps}
    return {
        "targets": [[a, n or "zero"] for a, n in targets if a in moved],
        "unapply": names(steps),
        "irreversible": irreversible,
    }
