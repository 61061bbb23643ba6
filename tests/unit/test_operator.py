"""Operator commands and the maintenance page: builders as exact strings, options, guards."""

from __future__ import annotations

import pytest

from mlctl.cli.main import build_parser
from mlctl.commands import db
from mlctl.commands import maintenance as page
from mlctl.commands import operator as op
from mlctl.config import inventory
from mlctl.core.errors import GuardRefused, InventoryError, UsageError
from mlctl.tasks import guards
from mlctl.tasks.maintenance import maintenance_check, status_note
from mlctl.tasks.operator import _words

ENV = db.load_env("./.env").render()  # the .env loop, as commands/db.py's tests pin it
STDIN_ENV = ENV.removesuffix(" ./.env") + "&0"


def test_manage_runs_in_current_with_the_env_and_execs_the_command():
    cmd = op.manage("/srv/app", ["check", "--deploy"])
    assert cmd.render() == (
        f"cd /srv/app/current && {ENV} && exec ./.venv/bin/python manage.py check --deploy"
    )


def test_manage_with_extra_env_reads_it_from_stdin_not_argv():
    cmd = op.manage("/srv/app", ["createsuperuser", "--noinput"], extra_env=True)
    assert cmd.render() == (
        f"cd /srv/app/current && {ENV} && {STDIN_ENV} && "
        "exec ./.venv/bin/python manage.py createsuperuser --noinput"
    )
    assert STDIN_ENV.endswith("; done <&0")


def test_arguments_are_quoted_as_words():
    cmd = op.manage("/srv/app", ["shell", "-c", "import os; os.system('x')"])
    assert cmd.render().endswith("manage.py shell -c 'import os; os.system('\"'\"'x'\"'\"')'")


def test_shell_dbshell_and_login_builders():
    base = f"cd /srv/app/current && {ENV} && exec ./.venv/bin/python manage.py"
    assert op.django_shell("/srv/app").render() == f"{base} shell"
    assert op.django_shell("/srv/app", "print(6*7)").render() == f"{base} shell -c 'print(6*7)'"
    assert op.dbshell("/srv/app").render() == f"{base} dbshell"
    assert op.dbshell("/srv/app", "select 1").render() == f"{base} dbshell -- -c 'select 1'"
    assert op.login("/srv/app").render() == 'cd /srv/app/current && exec "${SHELL:-/bin/sh}" -l'
    assert op.login("/srv/app", "pwd; tty").render() == (
        "cd /srv/app/current && exec \"${SHELL:-/bin/sh}\" -l -c 'pwd; tty'"
    )


def test_env_lines_take_values_given_or_from_this_environment():
    data, values = op.env_lines(
        ["A=1", "DJANGO_SUPERUSER_PASSWORD"], {"DJANGO_SUPERUSER_PASSWORD": "s3cr=t"}
    )
    assert data == b"A=1\nDJANGO_SUPERUSER_PASSWORD=s3cr=t\n" and values == ["1", "s3cr=t"]
    for bad, why in (("1X=2", "expected KEY=VALUE"), ("MISSING", "not set"), ("A=x\ny", "newline")):
        with pytest.raises(UsageError, match=why):
            op.env_lines([bad], {})


def test_the_management_command_is_the_first_word_as_manage_py_reads_it():
    assert op.command_name(["check", "--deploy"]) == "check"
    # manage.py takes its first word as the command: an option there is no read-only command
    assert op.command_name(["--verbosity", "2", "check"]) == "--verbosity"
    assert op.command_name([]) == ""


def test_words_from_mlctl_and_from_fab():
    assert _words(["--", "check", "--deploy"]) == ["check", "--deploy"]
    assert _words("check --tag 'a b'") == ["check", "--tag", "a b"]
    assert _words(None) == []


def test_the_cli_passes_the_rest_of_the_line_to_manage():
    args = build_parser().parse_args(["manage", "--all-hosts", "--env", "A=1", "check", "--deploy"])
    assert (args.args, args.all_hosts, args.env) == (["check", "--deploy"], True, ["A=1"])
    args = build_parser().parse_args(["shell", "-c", "print(1)"])
    assert args.command == "print(1)"
    assert build_parser().parse_args(["maintenance", "on", "--message", "back at 5"]).state == "on"


# ---------------------------------------------------------------- guards


@pytest.fixture
def live(write_inventory):
    text = (
        "project: {name: app, settings_module: app.settings, wsgi: app.wsgi:application}\n"
        "environments:\n  live:\n    hosts: [web1]\n    protected: true\n"
        "    guards: {read_only_commands: [check, my_report]}\n"
        "    maintenance: {allow: [10.0.0.0/8, 192.0.2.7]}\n"
    )
    return inventory.resolve(inventory.load(write_inventory(text)), "live", {}, {})


def test_operator_commands_are_guarded_and_read_only_ones_listed(live):
    assert live.guards.read_only_commands == ("check", "my_report")
    assert live.maintenance.allow == ("10.0.0.0/8", "192.0.2.7")
    for action in ("manage", "shell", "dbshell", "ssh", "maintenance"):
        with pytest.raises(GuardRefused, match="needs confirmation"):
            guards.confirm(live, action, yes=False, interactive=False, environ={})
        guards.confirm(live, action, yes=True, interactive=False, environ={"MLCTL_CONFIRM": "live"})


def test_the_default_read_only_commands(write_inventory):
    text = (
        "project: {name: a, settings_module: a.s, wsgi: a.w:app}\n"
        "environments:\n  t: {hosts: [h]}\n"
    )
    cfg = inventory.resolve(inventory.load(write_inventory(text)), "t", {}, {})
    assert {"check", "showmigrations", "diffsettings"} <= set(cfg.guards.read_only_commands)
    assert "migrate" not in cfg.guards.read_only_commands and cfg.notify == []


@pytest.mark.parametrize(
    "extra, message",
    [
        ("maintenance: {allow: [10.0.0.300/8]}", "maintenance.allow[0]: '10.0.0.300/8' is not"),
        ("notify: [{webhook: ftp://x}]", "notify[0]: webhook: expected an http"),
        ("notify: [{webhook: 'http://x', on: [deploys]}]", "notify[0]: on: expected a list"),
        ("notify: [{url: 'http://x'}]", "notify[0]: unknown key 'url'"),
        ("notify: [http://x]", "notify[0]: expected {webhook"),
    ],
)
def test_bad_operator_settings_name_the_key(write_inventory, extra, message):
    text = (
        "project: {name: a, settings_module: a.s, wsgi: a.w:app}\n"
        f"environments:\n  t:\n    hosts: [h]\n    {extra}\n"
    )
    with pytest.raises(InventoryError, match=message.replace("[", r"\[").replace("(", r"\(")):
        inventory.load(write_inventory(text))


# ---------------------------------------------------------------- the maintenance page


def test_page_switch_builders():
    assert page.switch_on("app").render() == "touch /etc/nginx/mlctl/app/maintenance.on"
    assert page.switch_off("app").render() == "rm -f /etc/nginx/mlctl/app/maintenance.on"
    assert page.make_state_dir("app").render() == "install -d -m 755 /etc/nginx/mlctl/app"
    assert page.is_on("app").render() == (
        "test -f /etc/nginx/conf.d/mlctl-app-maintenance.conf || exit 3 && "
        "test -e /etc/nginx/mlctl/app/maintenance.on"
    )


def test_server_directives_except_the_health_path_and_the_page_itself():
    text = page.server_directives("my-app", "http://127.0.0.1/healthz?x=1")
    assert "    set $mlctl_maintenance $mlctl_my_app_maintenance_allowed;\n" in text
    assert "    if (-f /etc/nginx/mlctl/my-app/maintenance.on) {\n" in text
    assert '    if ($uri = "/healthz") {\n        set $mlctl_maintenance "";\n' in text
    assert '    if ($mlctl_maintenance = "on") {\n        return 503;\n    }\n' in text
    assert "        alias /etc/nginx/mlctl/my-app/maintenance.html;\n" in text
    assert "error_page 503 /__mlctl_maintenance.html;" in text


def test_a_health_path_nginx_cannot_quote_is_refused():
    with pytest.raises(InventoryError, match="cannot be excepted"):
        page.server_directives("app", 'http://127.0.0.1/he"alth$x')


def test_geo_block_lets_the_host_and_the_allowed_networks_through():
    assert page.geo_block("my-app", ["10.0.0.0/8", "192.0.2.7", "10.0.0.0/8", "2001:db8::/32"]) == (
        "# Managed by mlctl (setup): who still reaches my-app while its maintenance page is on\n"
        "# (the host itself, and maintenance.allow).\n"
        "geo $mlctl_my_app_maintenance_allowed {\n"
        '    default "";\n'
        "    127.0.0.1/32 allowed;\n"
        "    ::1/128 allowed;\n"
        "    10.0.0.0/8 allowed;\n"
        "    192.0.2.7/32 allowed;\n"
        "    2001:db8::/32 allowed;\n"
        "}\n"
    )


def test_the_page_escapes_its_message():
    text = page.page("Back at <5pm> & soon")
    assert '<p id="mlctl-maintenance">Back at &lt;5pm&gt; &amp; soon</p>' in text


def test_setup_writes_the_site_with_the_page_lines_the_geo_block_and_the_page(live):
    from mlctl.commands import provision

    files = provision.site_file(live)
    assert list(files) == [
        "/etc/nginx/sites-available/app",
        "/etc/nginx/conf.d/mlctl-app-maintenance.conf",
        "/etc/nginx/mlctl/app/maintenance.html",
    ]
    site = files["/etc/nginx/sites-available/app"]
    assert "client_max_body_size 20m;\n\n    # Maintenance page" in site
    assert (
        "{app_server_extra}" not in site
        and "192.0.2.7/32 allowed;" in files["/etc/nginx/conf.d/mlctl-app-maintenance.conf"]
    )


def test_check_and_status_say_the_page_is_on():
    on = maintenance_check({"on": True, "since": 0})
    assert on.status == "warn" and "clients get 503 except maintenance.allow" in on.detail
    assert maintenance_check({"on": False}).status == "ok"
    assert status_note({"maintenance": {"on": True}}) == "  maintenance page on"
    assert status_note({}) == ""
