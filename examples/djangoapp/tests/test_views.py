import pytest
from django.db import OperationalError
from notes import views
from notes.models import Note


@pytest.fixture
def base_dir(settings, tmp_path):
    """Point BASE_DIR at an empty directory so REVISION is under test control."""
    settings.BASE_DIR = tmp_path
    return tmp_path


@pytest.mark.django_db
def test_index_renders_notes(client, base_dir):
    Note.objects.create(title="Hello <world>", body="first note")
    response = client.get("/")
    assert response.status_code == 200
    assert "notes/index.html" in [t.name for t in response.templates]
    html = response.content.decode()
    assert "Hello &lt;world&gt;" in html
    assert 'id="hello-world"' in html
    assert "/static/notes/style.css" in html
    assert "/static/notes/logo.png" in html


@pytest.mark.django_db
def test_healthz_reports_revision_and_database(client, base_dir):
    (base_dir / "REVISION").write_text("  20240101-abc123  \nsecond line ignored\n")
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    assert response.json() == {"release": "20240101-abc123", "database": "ok", "status": "ok"}


@pytest.mark.django_db
def test_healthz_unknown_release_without_revision_file(client, base_dir):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["release"] == "unknown"


def test_healthz_503_when_database_fails(client, base_dir, monkeypatch):
    class BrokenConnection:
        def cursor(self):
            raise OperationalError("connection refused\nmore detail")

    monkeypatch.setattr(views, "connection", BrokenConnection())
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response["Cache-Control"] == "no-store"
    assert response.json() == {
        "release": "unknown",
        "database": "error: OperationalError: connection refused",
        "status": "degraded",
    }
