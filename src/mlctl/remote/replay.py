# Ask the release's own code for one page, in-process, and print the traceback it raises: Django
# logs a view's exception only where LOGGING sends it (with DEBUG off, by default nowhere), so a
# health request that answered 500 is replayed to name the app's error.
# Run in the release with its venv and .env, as the app user. argv: SETTINGS_MODULE PATH HOST
import os
import sys
import traceback

sys.path.insert(0, ".")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", sys.argv[1])
try:
    import django

    django.setup()
    from django.test import Client

    host = sys.argv[3] or "localhost"
    r = Client(raise_request_exception=True).get(sys.argv[2], HTTP_HOST=host)
    print("replayed GET %s: HTTP %d" % (sys.argv[2], r.status_code))
except BaseException:  # noqa: BLE001 — the exception is the answer
    traceback.print_exc(file=sys.stdout)
