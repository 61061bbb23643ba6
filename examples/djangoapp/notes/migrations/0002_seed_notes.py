"""Reversible data migration: seed a few welcome notes (and remove them again)."""

from django.db import migrations

SEED_NOTES = [
    ("welcome", "Welcome", "This note was created by a data migration."),
    ("deploying", "Deploying", "Check /healthz to see which release is live."),
]
SEED_SLUGS = [slug for slug, _, _ in SEED_NOTES]


def seed(apps, schema_editor):
    Note = apps.get_model("notes", "Note")
    db = schema_editor.connection.alias
    for slug, title, body in SEED_NOTES:
        Note.objects.using(db).get_or_create(slug=slug, defaults={"title": title, "body": body})


def unseed(apps, schema_editor):
    Note = apps.get_model("notes", "Note")
    Note.objects.using(schema_editor.connection.alias).filter(slug__in=SEED_SLUGS).delete()


class Migration(migrations.Migration):
    dependencies = [("notes", "0001_initial")]

    operations = [migrations.RunPython(seed, unseed)]
