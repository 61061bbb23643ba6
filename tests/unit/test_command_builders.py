"""The command builders steps.py, ops.py, rollback.py and prune.py run, as exact strings."""

from __future__ import annotations

from mlctl.commands import facts
from mlctl.commands import lock as lockcmd
from mlctl.commands import prune as prunecmd
from mlctl.commands import release, service
from mlctl.config.layout import Layout

LAY = Layout("/srv/app")
RID = "20260101000001-abcdef1"
REL = f"/srv/app/releases/{RID}"


def test_restart_clears_the_start_limit_first_and_never_fails_on_it():
    assert service.reset_and_restart("gunicorn-app").render() == (
        "systemctl reset-failed gunicorn-app.service gunicorn-app.socket 2>/dev/null || true;"
        " systemctl restart gunicorn-app.service"
    )


def test_out_of_service_removes_current_and_stops_socket_and_service():
    stop = service.systemd_stop("gunicorn-app")
    assert service.out_of_service(LAY.current, stop).render() == (
        "set -e; rm -f /srv/app/current ; systemctl stop gunicorn-app.socket gunicorn-app.service ;"
    )


def test_pidfile_control_and_start_name_this_environments_files():
    log = "/srv/app/shared/logs/gunicorn.log"
    cmd = service.pidfile_control(
        "python3", "PROG", "check", LAY.run, deploy_to="/srv/app", bind="127.0.0.1:8000", log=log
    )
    assert (
        cmd.render()
        == f"python3 -c PROG check /srv/app/run/gunicorn.pid /srv/app 127.0.0.1:8000 {log}"
    )
    assert service.start_in(LAY.run, service.nginx_test()).render() == (
        "mkdir -p /srv/app/run && nginx -t -q"
    )


def test_health_probe_and_the_app_log_since_the_restart():
    assert service.health_probe("python3", "PROG", {"timeout": 5}).render() == (
        "python3 -c PROG '{\"timeout\": 5}'"
    )
    assert service.dev_log_since("/l/g.log", 11).render() == (
        "tail -c +11 /l/g.log 2>/dev/null | tail -n 300"
    )
    assert service.unit_log_since_start("gunicorn-app").render() == (
        'journalctl _SYSTEMD_UNIT=gunicorn-app.service -o cat -n 300 --since "@$t0"'
    )


def test_switch_restart_and_probe_is_one_script_with_the_probe_started_first():
    probe = service.health_probe("python3", "PROG", {})
    cmd = service.switch_restart_and_probe(release.switch(LAY, RID), "gunicorn-app", probe)
    assert cmd.render() == (
        f"set -e; test -d {REL} || {{ echo 'release {RID} is not on this host' >&2; exit 1; }} ;"
        f" ln -sfn releases/{RID} /srv/app/current.new-{RID} ;"
        f" mv -Tf /srv/app/current.new-{RID} /srv/app/current ; t0=$(date +%s) ;"
        " python3 -c PROG '{}' & probe=$!;"
        " systemctl reset-failed gunicorn-app.service gunicorn-app.socket 2>/dev/null || true;"
        ' systemctl restart gunicorn-app.service || { kill "$probe" 2>/dev/null;'
        " journalctl _SYSTEMD_UNIT=gunicorn-app.service -n 3 -o cat >&2; exit 1; };"
        " wait \"$probe\" || { rc=$?; echo '--- the app'\"'\"'s log since the restart:' >&2;"
        ' journalctl _SYSTEMD_UNIT=gunicorn-app.service -o cat -n 300 --since "@$t0" >&2;'
        ' exit "$rc"; } ;'
    )


def test_facts_read_and_file_tests():
    assert facts.read_facts("python3", "PROG", "/srv/app", ["DEBUG", "PGUSER"]).render() == (
        "python3 -c PROG /srv/app DEBUG,PGUSER"
    )
    assert facts.nonempty("/srv/app/db.sqlite3").render() == "test -s /srv/app/db.sqlite3"
    assert facts.in_new_dir("/srv/b", facts.nonempty("/x")).render() == (
        "mkdir -p /srv/b && test -s /x"
    )


def test_build_release_links_the_venv_then_runs_the_program_with_the_env():
    cmd = release.build_release(LAY, RID, "/srv/app/venvs/h", "PROG", "app.settings", "www-data")
    assert cmd.render().startswith(
        f"set -e; ln -sfn /srv/app/venvs/h {REL}/.venv ; cd {REL} && while IFS= read -r _l"
    )
    assert cmd.render().endswith(
        "done < ./.env && ./.venv/bin/python -c PROG app.settings www-data ;"
    )


def test_record_writes_metadata_and_history_and_unlocks_last():
    cmd = release.record(LAY, [{"id": RID}], {"event": "x"}, [], lockcmd.release(LAY, "run1"))
    text = cmd.render()
    meta = f"/srv/app/.mlctl/releases/{RID}.json"
    assert text.startswith("set -e; mkdir -p /srv/app/.mlctl/releases ; printf %s '{\n")
    assert f"mv -f {meta}.tmp {meta} ; mkdir -p /srv/app/.mlctl ;" in text
    assert text.endswith(
        "printf '%s\\n' '{\"event\": \"x\"}' >> /srv/app/.mlctl/history.jsonl ;"
        ' if grep -qF \'"run_id": "run1"\' /srv/app/.mlctl/lock/holder.json 2>/dev/null;'
        " then rm -rf /srv/app/.mlctl/lock ; fi ;"
    )
    assert release.record(LAY).render() == "set -e;"


def test_removing_releases_never_fails_the_script():
    assert prunecmd.remove_releases(LAY, [RID]).render() == (
        f"rm -rf {REL} || echo 'mlctl: could not remove old releases' >&2"
    )
