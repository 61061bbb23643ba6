from pathlib import Path

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import render

from .models import Note


def release_id():
    """First line of BASE_DIR/REVISION, or "unknown"."""
    try:
        lines = (Path(settings.BASE_DIR) / "REVISION").read_text().splitlines()
    except OSError:
        return "unknown"
    return lines[0].strip() if lines and lines[0].strip() else "unknown"


def database_status():
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any failure means "not healthy"
        lines = str(exc).strip().splitlines()
        detail = f": {lines[0]}" if lines else ""
        return f"error: {type(exc).__name__}{detail}"
    return "ok"


def index(request):
    notes = Note.objects.all()[:50]
    return render(request, "notes/index.html", {"notes": notes, "release": release_id()})


def healthz(request):
    database = database_status()
    healthy = database == "ok"
    response = JsonResponse(
        {"release": release_id(), "database": database, "status": "ok" if healthy else "degraded"},
        status=200 if healthy else 503,
    )
    response["Cache-Control"] = "no-store"
    return response
