"""Secret values never reach the console, stdout or the JSON log."""

from __future__ import annotations

import json

import pytest

from mlctl.config import inventory
from mlctl.core import console
from mlctl.core.errors import RemoteCommandFailed
from mlctl.core.shell import MASK, Cmd
from mlctl.transport.journal import Journal
from mlctl.transport.session import Session
from tests.unit.conftest import BASE

SENTINEL = "sentinel-value-123"
DB_PASSWORD = "db-pass-456"
WITH_SECRETS = BASE.replace(
    "  user: deploy\n",
    "  user: deploy\n"
    f"  secrets: {{API_KEY: {SENTINEL}}}\n"
    f"  database: {{engine: postgresql, password: {DB_PASSWORD}}}\n",
)


def test_config_json_masks_secrets(mlctl, write_inventory, tmp_path):
    logs = tmp_path / "logs"
    r = mlctl(
        "-i", str(write_inventory(WITH_SECRETS)), "--log-dir", str(logs), "live", "config", "--json"
    )
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["environment"] == "live"
    assert data["settings"]["secrets"] == {"API_KEY": MASK}
    assert data["settings"]["database"]["password"] == MASK
    for text in (r.stdout, r.stderr):
        assert SENTINEL not in text and DB_PASSWORD not in text
    # a task that does log (a local one, no server needed) writes the log without the secrets
    r = mlctl("-i", str(write_inventory(WITH_SECRETS)), "--log-dir", str(logs), "dev", "lock")
    assert r.returncode == 0, r.stderr
    log = (logs / "mlctl.jsonl").read_text()
    assert json.loads(log.splitlines()[0])["env"] == "dev"
    for text in (r.stdout, r.stderr, log):
        assert SENTINEL not in text and DB_PASSWORD not in text


def test_config_yaml_masks_secrets_from_variables(mlctl, write_inventory):
    r = mlctl(
        "-i",
        str(write_inventory(WITH_SECRETS)),
        "test",
        "config",
        env={"MLCTL_SECRETS__OTHER": "var-secret-789", "MLCTL_DATABASE__URL": "pg://u:pw@h/db"},
    )
    assert r.returncode == 0, r.stderr
    for leaked in (SENTINEL, DB_PASSWORD, "var-secret-789", "pg://u:pw@h/db"):
        assert leaked not in r.stdout + r.stderr
    assert "OTHER: '********'" in r.stdout


def test_journal_masks_and_has_every_field(tmp_path):
    j = Journal("live", "deploy", secrets=[SENTINEL], log_dir=str(tmp_path))
    cmd = Cmd.of("curl", "-H", f"Authorization: {SENTINEL}", "https://example.invalid")
    rec = j.record(
        "web1",
        "probe",
        command=cmd.display(),
        detail=f"echoed {SENTINEL} back",
        exit_code=0,
        duration_ms=3,
        outcome="ok",
    )
    text = (tmp_path / "mlctl.jsonl").read_text()
    assert SENTINEL not in text
    line = json.loads(text)
    assert line == rec
    assert set(line) >= {
        "ts",
        "run_id",
        "env",
        "host",
        "user",
        "action",
        "step",
        "command",
        "exit_code",
        "duration_ms",
        "outcome",
    }
    assert line["command"] == f"curl -H 'Authorization: {MASK}' https://example.invalid"
    assert line["detail"] == f"echoed {MASK} back"


@pytest.fixture
def local_session(write_inventory, tmp_path):
    inv = inventory.load(write_inventory(WITH_SECRETS))
    cfg = inventory.resolve(inv, "dev", {}, {})
    sess = Session(cfg, "deploy", log_dir=str(tmp_path / "logs"))
    sess.connect()
    return sess


def test_failed_step_output_is_masked_in_error_console_and_log(local_session, tmp_path, capsys):
    host = local_session.hosts[0]
    leak = Cmd.of("sh", "-c", 'echo "token $0" >&2; exit 3', SENTINEL)
    with pytest.raises(RemoteCommandFailed) as e:
        host.run("leaky step", leak)
    assert str(e.value) == f"localhost: step 'leaky step' failed (exit 3): token {MASK}"
    host.run("chatty step", Cmd.of("echo", SENTINEL), quiet=False)  # a plain str, still masked
    console.fail(f"would print {SENTINEL}")
    captured = capsys.readouterr()
    log = (tmp_path / "logs" / "mlctl.jsonl").read_text()
    for text in (captured.out, captured.err, log):
        assert SENTINEL not in text
    records = [json.loads(ln) for ln in log.splitlines()]
    assert [r["step"] for r in records] == ["leaky step", "chatty step"]
    assert records[0]["exit_code"] == 3 and records[0]["outcome"] == "failed"
    assert MASK in records[0]["command"] and MASK in records[1]["command"]
    assert f"localhost {MASK}" in captured.err
