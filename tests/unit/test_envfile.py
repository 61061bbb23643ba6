"""The one .env reader (remote/envfile.py) and the shell export that follows its rules
(commands/db.load_env), held to one table of cases; the facts program's .env fields."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mlctl import remote
from mlctl.commands import db
from mlctl.remote import envfile, facts

# (line, (key, value) or None): the rules written in remote/envfile.py, case by case.
CASES = [
    ("KEY=value", ("KEY", "value")),
    ("  KEY = value  ", ("KEY", "value")),
    ("export KEY=value", ("KEY", "value")),
    ("export   KEY=value", ("KEY", "value")),
    ("export=1", ("export", "1")),
    ('KEY="a b"', ("KEY", "a b")),
    ("KEY='a b'", ("KEY", "a b")),
    ("KEY='a\"b'", ("KEY", 'a"b')),
    ('KEY="it\'s"', ("KEY", "it's")),
    ('KEY="unclosed', ("KEY", '"unclosed')),
    ("KEY='", ("KEY", "'")),
    ("KEY='a'b", ("KEY", "'a'b")),
    ("KEY=", ("KEY", "")),
    ("KEY=''", ("KEY", "")),
    ("URL=postgresql://u:p@h/db?sslmode=require", ("URL", "postgresql://u:p@h/db?sslmode=require")),
    ("PASS=ab#cd ef", ("PASS", "ab#cd ef")),
    ("PASS=a $(id) `id` ;x", ("PASS", "a $(id) `id` ;x")),
    ("KEY=value\r", ("KEY", "value")),
    ("# KEY=value", None),
    ("#KEY=value", None),
    ("", None),
    ("   ", None),
    ("just words", None),
    ("export KEY", None),
    ("1KEY=x", None),
    ("MY-KEY=x", None),
    ("=x", None),
    ("_ok=1", ("_ok", "1")),
]


@pytest.mark.parametrize(("line", "expected"), CASES, ids=[repr(c[0]) for c in CASES])
def test_parse_line(line, expected):
    assert envfile.parse_line(line) == expected


def test_env_pairs_keeps_order_and_skips_what_sets_nothing():
    text = "# Managed\nA=1\n\nB='two'\nA=3\nnope\n"
    assert envfile.env_pairs(text) == [("A", "1"), ("B", "two"), ("A", "3")]
    assert envfile.env_pairs(None) == []


def exported(tmp_path, text: str) -> dict:
    """What a shell has in its environment after commands/db.load_env read `text`."""
    env_file = tmp_path / "env"
    env_file.write_text(text)
    dump = f"{sys.executable} -c 'import json, os; print(json.dumps(dict(os.environ)))'"
    cmd = f"{db.load_env(str(env_file)).render()} && {dump}"
    p = subprocess.run(["sh", "-c", cmd], env={"PATH": "/usr/bin:/bin"}, capture_output=True)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_the_shell_export_follows_the_same_rules(tmp_path):
    text = "\n".join(line for line, _ in CASES) + "\nLAST=no newline at the end"
    got = exported(tmp_path, text)
    want = dict(envfile.env_pairs(text))
    assert {k: got.get(k) for k in want} == want
    assert want["LAST"] == "no newline at the end" and want["PASS"] == "a $(id) `id` ;x"
    assert not {k for k in got if k.startswith("#") or k in ("1KEY", "MY-KEY")}


def test_the_shell_export_fails_on_a_missing_file(tmp_path):
    cmd = db.load_env(str(tmp_path / "none")).render() + " && echo reached"
    p = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True)
    assert p.returncode != 0 and "reached" not in p.stdout


def test_secret_values_leave_out_public_names_and_short_values():
    text = "DEBUG=0\nPGUSER=notes\nSECRET_KEY=s3cr3t-long\nPGPASSWORD='pw12'\nN=1\nE=\n"
    assert envfile.secret_values(text) == ["s3cr3t-long", "pw12", "1"]
    assert envfile.secret_values(text, shortest=4) == ["s3cr3t-long", "pw12"]
    assert envfile.secret_values(text, public=("DEBUG", "SECRET_KEY", "PGPASSWORD", "N", "E")) == [
        "notes"
    ]
    assert envfile.is_public("pguser") and not envfile.is_public("PGPASSWORD")


def test_facts_report_the_env_keys_set_and_mask_values(tmp_path):
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / ".env").write_text("export SECRET_KEY='k-123456'\nDEBUG=0\nEMPTY=\n")
    out = facts.facts(str(tmp_path), ["DEBUG"])
    assert out["env_keys"] == ["DEBUG", "SECRET_KEY"]
    assert out["env_values"] == ["k-123456"]
    assert out["env_file"] is True and out["current"] is None and out["releases"] == []


def test_facts_program_runs_as_one_text(tmp_path):
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / ".env").write_text("SECRET_KEY=abc\n")
    p = subprocess.run(
        [sys.executable, "-c", remote.source("facts"), str(tmp_path), "DEBUG"],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["env_values"] == ["abc"]
