"""Why pip failed, in one line that names the package and the reason.

pip ends its output with advice ("note: This error originates from a subprocess…", "hint: …",
"ERROR: ResolutionImpossible: for help visit …"); the cause is earlier. This finds it.
"""

from __future__ import annotations

import re

from mlctl.core.console import clip

NO_MATCH = re.compile(r"No matching distribution found for (\S+)")
VERSIONS = re.compile(r"satisfies the requirement (\S+) \(from versions: ([^)]*)\)")
CONFLICT = re.compile(r"Cannot install (.+?) because these package versions have conflicting")
BUILD = re.compile(r"Failed building wheel for (\S+)|Building wheel for (\S+) .*did not run")
METADATA = re.compile(r"Preparing metadata .*did not run successfully|metadata-generation-failed")
MISSING = re.compile(r"(?:No such file or directory|Could not open requirements file)[^\n]*")
ERROR_LINE = re.compile(r"^(?:error|(?:[A-Z][A-Za-z]*)?(?:Error|Exception)):")
ADVICE = ("note:", "hint:", "error: subprocess-exited-with-error", "╰─>", "×")


def reason(output: str, where: str = "") -> str:
    """One line: which package and why (no wheel for this Python/platform, version conflict,
    missing file, build failure), else pip's last line that is not advice.
    `where` describes the target ("Python 3.11 on manylinux_2_36_x86_64")."""
    text = output or ""
    target = f" {where}" if where else " for this Python/platform"
    found = VERSIONS.search(text)
    if found:
        name, versions = found.group(1), found.group(2).strip()
        if versions in ("", "none"):
            return clip(f"{name}: no wheel or release{target}")
        return clip(f"{name}: no version matches{target} (available: {versions})")
    found = NO_MATCH.search(text)
    if found:
        return clip(f"{found.group(1)}: no wheel or release{target}")
    found = CONFLICT.search(text)
    if found:
        causes = _conflict_causes(text)
        return clip(
            f"version conflict between {found.group(1)}" + (f": {causes}" if causes else "")
        )
    found = BUILD.search(text)
    if found:
        name = found.group(1) or found.group(2)
        return clip(f"{name}: building it from source failed{_first_error(text)}")
    found = MISSING.search(text)
    if found:
        return clip(f"missing file: {found.group(0).strip()}")
    if METADATA.search(text):
        return clip(f"a package's metadata could not be prepared{_first_error(text)}")
    return clip(_last_cause(text) or "pip failed")


def _conflict_causes(text: str) -> str:
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("The conflict is caused by"):
            causes = []
            for nxt in lines[i + 1 :]:
                if not nxt.strip():
                    break
                causes.append(nxt.strip())
            return "; ".join(causes)
    return ""


def _first_error(text: str) -> str:
    """The build's own first error line (a compiler's or setup.py's), when there is one."""
    for line in text.splitlines():
        s = line.strip().lstrip("│ ").strip()
        if ERROR_LINE.match(s) and "subprocess-exited" not in s:
            return f": {s}"
    return ""


def _last_cause(text: str) -> str:
    for line in reversed(text.strip().splitlines()):
        s = line.strip()
        if s and not s.lower().startswith(ADVICE) and "for help visit" not in s:
            return s.removeprefix("ERROR: ")
    return ""
