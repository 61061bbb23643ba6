# Run by the probe program inside the current release as the app user, with the shared .env
# exported and the release's own venv: one Django process answers version, `check --deploy`,
# database and migrations (remote/migplan.py is sent in front).
# argv: SETTINGS_MODULE WHAT (comma list of: check, db, migrations). Prints one JSON line.
import io
import json
import os
import sys

if __package__:  # imported by mlctl; on a host remote/migplan.py is sent in front
    from mlctl.remote.migplan import executor_of, pending


def last_line(e):
    lines = [x for x in str(e).strip().splitlines() if x.strip()]
    return "%s: %s" % (type(e).__name__, lines[-1] if lines else "")


def deploy_check():
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    buf = io.StringIO()
    try:
        call_command("check", deploy=True, fail_level="WARNING", stdout=buf, stderr=buf)
        return {"ok": True, "output": buf.getvalue()[-2000:]}
    except SystemCheckError as e:
        return {"ok": False, "output": str(e)[-2000:]}
    except Exception as e:  # noqa: BLE001 — every failure is an answer to report
        return {"ok": False, "output": last_line(e)}


def database(connection):
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
        return {"ok": True, "vendor": connection.vendor}
    except Exception as e:  # noqa: BLE001
        return {"ok": False, "error": last_line(e)}


def probe(wanted):
    out = {"python": "%d.%d.%d" % sys.version_info[:3]}
    try:
        import django

        out["version"] = django.get_version()
        django.setup()
    except Exception as e:  # noqa: BLE001 — settings that do not load are the answer
        out["error"] = last_line(e)
        return out
    if "check" in wanted:
        out["check"] = deploy_check()
    if "db" in wanted or "migrations" in wanted:
        from django.db import connection

        out["db"] = database(connection)
    if "migrations" in wanted and out["db"]["ok"]:
        try:
            out["pending"] = pending(executor_of(connection))
        except Exception as e:  # noqa: BLE001
            out["pending_error"] = last_line(e)
    return out


def main():
    sys.path.insert(0, ".")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", sys.argv[1])
    print(json.dumps(probe(sys.argv[2].split(","))))


if __name__ == "__main__":
    main()
