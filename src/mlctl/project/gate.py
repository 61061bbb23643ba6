"""The pytest gate before a deploy: the project's own tests on the exact commit, run on this
machine with what they need prepared (collected static files for a manifest storage), and a
failure line that names the failing tests and the first error."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from mlctl.core.errors import PreflightFailed
from mlctl.project.settings_scan import scan


def run(archive: bytes, argv: list[str], path: str) -> None:
    """The gate on the project at a commit (its archive): the tests (argv), then
    `makemigrations --check`.

    When the tests' settings use a manifest static storage, the tests need collected static
    files: collectstatic runs first, into a scratch STATIC_ROOT of the gate's own settings (the
    tests' settings plus that STATIC_ROOT), which the tests then use."""
    with tempfile.TemporaryDirectory(prefix="mlctl-gate-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            tar.extractall(tmp, filter="data")
        env = {
            "SECRET_KEY": "mlctl-gate-" + "x" * 50,
            "DEBUG": "0",
            "PATH": path,
            "PYTHONPATH": tmp,
        }
        steps = []
        settings = gate_settings_module(Path(tmp), argv)
        if settings and needs_manifest(Path(tmp), settings):
            wrapper = write_gate_settings(Path(tmp), settings)
            env["DJANGO_SETTINGS_MODULE"] = wrapper
            argv = argv + _settings_option(argv, wrapper)
            collect = [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"]
            steps.append((f"collectstatic (the manifest storage of {settings})", collect))
        steps += [
            ("tests", argv),
            (
                "makemigrations --check",
                [sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"],
            ),
        ]
        for label, step in steps:
            p = subprocess.run(step, cwd=tmp, capture_output=True, text=True, env=env)
            if p.returncode != 0:
                raise PreflightFailed(
                    f"pytest gate: {label} failed: {failure_summary(p.stdout + p.stderr)}",
                    "fix it, or deploy to a non-protected env with --skip-tests",
                )


GATE_SETTINGS = "_mlctl_gate_settings"
SETTINGS_OPTION = re.compile(r"(?:--ds|--settings)[= ]\s*([A-Za-z_][\w.]*)")
INI_SETTINGS = re.compile(r"^\s*DJANGO_SETTINGS_MODULE\s*=\s*[\"']?([A-Za-z_][\w.]*)", re.M)
NOISE = re.compile(
    r"^(Destroying|Creating|Cloning) test database|^System check identified|^Ran \d+ test|^\s*$"
)


def _settings_option(argv: list[str], module: str) -> list[str]:
    """The runner's own option (it wins over a --ds in addopts); other runners get the
    environment variable only."""
    if _is_pytest(argv):
        return [f"--ds={module}"]
    if "manage.py" in argv[:3]:
        return [f"--settings={module}"]
    return []


def _is_pytest(argv: list[str]) -> bool:
    return any(Path(a).name in ("pytest", "py.test") for a in argv[:3])


def gate_settings_module(root: Path, argv: list[str]) -> str | None:
    """The settings the tests run with: --ds/--settings, the pytest configuration, manage.py."""
    m = SETTINGS_OPTION.search(" ".join(argv))
    if m:
        return m.group(1)
    if _is_pytest(argv):
        for name in ("pytest.ini", "pyproject.toml", "setup.cfg", "tox.ini"):
            path = root / name
            text = path.read_text(errors="replace") if path.is_file() else ""
            m = SETTINGS_OPTION.search(text) or INI_SETTINGS.search(text)
            if m:
                return m.group(1)
    manage = root / "manage.py"
    m = re.search(
        r"DJANGO_SETTINGS_MODULE['\"]\s*,\s*['\"]([A-Za-z_][\w.]*)",
        manage.read_text(errors="replace") if manage.is_file() else "",
    )
    return m.group(1) if m else None


def needs_manifest(root: Path, settings: str) -> bool:
    """Whether the settings (through their imports) store static files with a manifest, which
    a page rendered in a test looks up (ManifestStaticFilesStorage and its subclasses)."""

    def read(rel: str) -> str | None:
        path = root / rel
        return path.read_text(errors="replace") if path.is_file() else None

    found = scan(read, settings)
    storage = (found.value("STORAGES") or "") + (found.value("STATICFILES_STORAGE") or "")
    return "Manifest" in storage


def write_gate_settings(root: Path, settings: str) -> str:
    static_root = root / ".mlctl-gate-static"
    (root / f"{GATE_SETTINGS}.py").write_text(
        "# The pytest gate's settings: the tests' own, with collected static files.\n"
        f"from {settings} import *  # noqa: F401,F403\n\n"
        f"STATIC_ROOT = {str(static_root)!r}\n"
    )
    return GATE_SETTINGS


def failure_summary(output: str) -> str:
    """One line for a failed test run: the failing tests (pytest's FAILED/ERROR lines, unittest's
    FAIL:/ERROR: headers) and the first error, else the last meaningful line."""
    lines = output.splitlines()
    failing, first = [], ""
    for line in lines:
        m = re.match(r"^(FAILED|ERROR) (\S+)(?: - (.*))?$", line)
        if m:
            failing.append(m.group(2))
            first = first or (m.group(3) or "")
            continue
        m = re.match(r"^(FAIL|ERROR): (\S+) \((\S+)\)", line)
        if m:
            test, where = m.group(2), m.group(3)  # Python 3.11+ names the test in both
            failing.append(where if where.endswith(f".{test}") else f"{where}.{test}")
    if not first:
        first = _first_error(lines)
    if failing:
        shown = ", ".join(failing[:3]) + (
            f" and {len(failing) - 3} more" if len(failing) > 3 else ""
        )
        text = f"{len(failing)} failing ({shown})"
        return (f"{text}; first error: {first}" if first else text)[:400]
    meaningful = [line for line in lines if not NOISE.search(line)]
    return (first or (meaningful[-1].strip() if meaningful else "no output"))[:300]


def _first_error(lines: list[str]) -> str:
    """The exception line that ends the first traceback (`E   ...` in pytest's report)."""
    for line in lines:
        m = re.match(r"^E\s+(\S.*)$", line)
        if m:
            return m.group(1).strip()
    for line in lines:
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Failure|Interrupt)\b.*", line):
            return line.strip()
    return ""
