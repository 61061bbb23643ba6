import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

SEED = [("notes", "0002_seed_notes")]
INITIAL = [("notes", "0001_initial")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_seed_migration_forward_and_reverse():
    try:
        Note = migrate(INITIAL).get_model("notes", "Note")
        assert not Note.objects.filter(slug__in=["welcome", "deploying"]).exists()
        Note.objects.create(title="Mine", slug="mine")

        Note = migrate(SEED).get_model("notes", "Note")
        assert set(Note.objects.values_list("slug", flat=True)) == {"welcome", "deploying", "mine"}

        Note = migrate(INITIAL).get_model("notes", "Note")
        assert list(Note.objects.values_list("slug", flat=True)) == ["mine"]
    finally:
        # Leave the schema at the latest migration for the rest of the suite.
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
