"""Every `mlctl`, `fab`, `inv` and `make` command shown in README.md and WORKFLOW.md exists."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from mlctl.cli.main import build_parser, split_env
from mlctl.cli.registry import BY_NAME

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("mlctl", "fab", "inv", "make")


def commands() -> list[tuple[str, str]]:
    found = []
    for doc in ("README.md", "WORKFLOW.md"):
        in_code = False
        for line in (ROOT / doc).read_text().splitlines():
            if line.strip().startswith("```"):
                in_code = not in_code
                continue
            text = line.split("#", 1)[0].strip() if in_code else ""
            spans = [text] if text else re.findall(r"`([^`]+)`", line)
            for span in spans:
                for part in re.split(r"\s*(?:&&|\|\||;|\|)\s*", span):
                    words = part.strip().split()
                    while words and "=" in words[0] and not words[0].startswith("-"):
                        words = words[1:]  # VAR=value prefixes
                    if words and words[0] in TOOLS and len(words) > 1:
                        found.append((doc, " ".join(words)))
    return sorted(set(found))


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    targets = set()
    for m in re.finditer(r"^([a-z][\w .-]*):(?!=)", text, re.M):
        targets.update(m.group(1).split())
    return targets


def check_mlctl(words: list[str]) -> None:
    env, rest = split_env(words)
    args = build_parser().parse_args(rest)
    assert args.task in BY_NAME


def check_fab_inv(words: list[str]) -> None:
    while words and words[0].startswith("-"):
        words = words[2:] if words[0] in ("-H", "-i") else words[1:]
    names = [w for w in words if not w.startswith("-") and w in BY_NAME]
    assert names, f"no known task in {words}"
    for name in names:
        opts = {"--" + o.name.replace("_", "-") for o in BY_NAME[name].opts}
        opts |= {o.short for o in BY_NAME[name].opts if o.short}
        for w in words:
            if w.startswith("-") and w not in ("-H", "--list", "-l"):
                assert w.split("=")[0] in opts, f"{w} is not an option of {name}"


CASES = commands()


def test_the_docs_show_commands():
    assert len(CASES) > 20


@pytest.mark.parametrize("doc,command", CASES, ids=[c for _, c in CASES])
def test_documented_command_parses(doc, command):
    words = shlex.split(command.rstrip("\\ ").replace("<", "").replace(">", "").replace("…", ""))
    tool, rest = words[0], words[1:]
    rest = [w for w in rest if w not in ("[", "]") and not w.startswith("[")]
    if tool == "mlctl":
        try:
            check_mlctl(rest)
        except SystemExit as e:
            assert e.code == 0, f"{doc}: `{command}` does not parse"
    elif tool == "make":
        targets = [w for w in rest if "=" not in w and not w.startswith("-")]
        assert set(targets) <= make_targets(), f"{doc}: `{command}`"
    elif "--list" not in rest and "-l" not in rest:
        check_fab_inv(rest)
