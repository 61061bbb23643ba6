"""Series of timings, the result tables (markdown), the machine description, RESULTS.md."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Series:
    values: list[float] = field(default_factory=list)

    def add(self, v: float) -> None:
        self.values.append(v)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    def cell(self) -> str:
        if not self.values:
            return "—"
        if len(self.values) == 1:
            return f"{self.values[0]:.2f}"
        return f"{self.median:.2f} ({min(self.values):.2f}–{max(self.values):.2f})"


class Results:
    """Everything measured, keyed (case, tool, hosts) → Series of seconds."""

    def __init__(self):
        self.times: dict[tuple, Series] = {}
        self.trips: dict[tuple, list[int]] = {}  # (kind, tool) → per-host counts
        self.steps: dict[int, dict[str, list[float]]] = {}  # hosts → step → ms (slowest host)
        self.notes: list[str] = []

    def s(self, case: str, tool: str, hosts: int = 1) -> Series:
        return self.times.setdefault((case, tool, hosts), Series())

    def has(self, case: str, tool: str, hosts: int = 1) -> bool:
        return bool(self.times.get((case, tool, hosts), Series()).values)

    def med(self, case: str, tool: str, hosts: int = 1) -> float:
        return self.s(case, tool, hosts).median

    def ratio(self, a: tuple, b: tuple) -> float:
        x, y = self.med(*a), self.med(*b)
        return x / y if y and y == y and x == x else float("nan")

    def add_steps(self, hosts: int, records: list[dict]) -> None:
        """Per step, the slowest host's duration (ms) in one mlctl run; a step that runs twice
        on a host (release metadata, facts) is summed per host."""
        per_host: dict[tuple, float] = {}
        for r in records:
            k = (r["step"], r["host"])
            per_host[k] = per_host.get(k, 0.0) + float(r.get("duration_ms") or 0)
        slowest: dict[str, float] = {}
        for (step, _), ms in per_host.items():
            slowest[step] = max(slowest.get(step, 0.0), ms)
        table = self.steps.setdefault(hosts, {})
        for step, ms in slowest.items():
            table.setdefault(step, []).append(ms)


def run_notes(res: Results) -> list[str]:
    return list(res.notes)


def fmt_ratio(x: float) -> str:
    return "—" if x != x else f"{x:.2f}×"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *[line(r) for r in rows]])


def tables(res: Results, host_counts: list[int]) -> str:
    out = []
    rows = []
    for case, label in (("warm", "warm code-only redeploy"), ("cold", "cold deploy (new venv)")):
        for n in host_counts:
            if not res.has(case, "mlctl", n):
                continue
            rows.append(
                [
                    label,
                    str(n),
                    res.s(case, "mlctl", n).cell(),
                    res.s(case, "floor", n).cell(),
                    res.s(case, "ansible", n).cell(),
                    fmt_ratio(res.ratio((case, "mlctl", n), (case, "floor", n))),
                    fmt_ratio(res.ratio((case, "ansible", n), (case, "mlctl", n))),
                ]
            )
    if rows:
        out.append("**Deploys** — wall seconds, median (min–max); ratios of medians\n")
        head = ["case", "hosts", "mlctl", "floor", "Ansible", "mlctl / floor", "Ansible / mlctl"]
        out.append(md_table(head, rows))

    rows = []
    lo, hi = host_counts[0], host_counts[-1]
    for case, tool, label in (
        ("warm", "mlctl", "mlctl warm deploy"),
        ("rollback", "mlctl", "mlctl rollback --db code-only"),
        ("check", "mlctl", "mlctl check"),
        ("diag", "mlctl", "mlctl diag"),
        ("cold", "mlctl", "mlctl cold deploy"),
        ("warm", "floor", "floor warm deploy (reference)"),
        ("warm", "ansible", "Ansible warm deploy (reference)"),
    ):
        if not res.has(case, tool, lo):
            continue
        rows.append(
            [
                label,
                res.s(case, tool, lo).cell(),
                res.s(case, tool, hi).cell(),
                fmt_ratio(res.ratio((case, tool, hi), (case, tool, lo))),
            ]
        )
    if rows and lo != hi:
        out.append(f"\n**{lo} host vs {hi} hosts** — wall seconds, median (min–max)\n")
        out.append(md_table(["operation", f"{lo} host", f"{hi} hosts", f"{hi}h / {lo}h"], rows))

    rows = []
    for case, label in (("help", "mlctl --help"), ("status", "mlctl test status (1 warm host)")):
        if res.has(case, "mlctl", 1):
            rows.append([label, res.s(case, "mlctl", 1).cell()])
    if rows:
        out.append("\n**CLI start-up** — wall seconds, median (min–max)\n")
        out.append(md_table(["command", "seconds"], rows))

    rows = []
    for kind, label in (("warm", "warm redeploy"), ("cold", "cold deploy")):
        cells = [label]
        for tool in ("mlctl", "floor", "ansible"):
            counts = sorted(set(res.trips.get((kind, tool), [])))
            cells.append("/".join(map(str, counts)) if counts else "—")
        if any(c != "—" for c in cells[1:]):
            rows.append(cells)
    if rows:
        out.append(
            "\n**Remote round trips per host** (mlctl: journal records with a host; floor: ssh "
            "invocations; Ansible: module runs incl. loop items and retries)\n"
        )
        out.append(md_table(["deploy", "mlctl", "floor", "Ansible"], rows))

    if res.steps:
        counts = sorted(res.steps)
        steps: list[str] = []
        for n in counts:
            steps += [s for s in res.steps[n] if s not in steps]
        rows = []
        for step in steps:
            cells = [step]
            for n in counts:
                vals = res.steps[n].get(step)
                cells.append(f"{statistics.median(vals):.0f}" if vals else "—")
            rows.append(cells)
        total = ["**sum of remote steps**"]
        for n in counts:
            total.append(f"**{sum(statistics.median(v) for v in res.steps[n].values()):.0f}**")
        rows.append(total)
        out.append(
            "\n**mlctl warm deploy, remote steps** — median ms per run (slowest host; a step "
            "run twice is summed)\n"
        )
        out.append(md_table(["step"] + [f"{n} host(s)" for n in counts], rows))
    return "\n".join(out) + "\n"


TARGETS = """\
- warm redeploy ≤ 1.3× the floor and ≥ 5× faster than Ansible, on 1 and 3 hosts
- 3 hosts ≤ 1.3× 1 host for deploy, rollback, check and diag
- rollback ≤ 1.5 s per environment; `mlctl --help` ≤ 0.5 s"""


def verdicts(res: Results, host_counts: list[int]) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for every target the run has numbers for."""
    out = []
    for n in host_counts:
        r = res.ratio(("warm", "mlctl", n), ("warm", "floor", n))
        if r == r:
            out.append((f"warm redeploy ≤ 1.3× floor ({n}h)", f"{r:.2f}×", r <= 1.3))
        r = res.ratio(("warm", "ansible", n), ("warm", "mlctl", n))
        if r == r:
            out.append((f"warm redeploy ≥ 5× faster than Ansible ({n}h)", f"{r:.2f}×", r >= 5))
    lo, hi = host_counts[0], host_counts[-1]
    if lo != hi:
        for case in ("warm", "rollback", "check", "diag"):
            r = res.ratio((case, "mlctl", hi), (case, "mlctl", lo))
            if r == r:
                name = "deploy" if case == "warm" else case
                out.append((f"{name}: {hi}h ≤ 1.3× {lo}h", f"{r:.2f}×", r <= 1.3))
    for n in host_counts:
        if res.has("rollback", "mlctl", n):
            m = res.med("rollback", "mlctl", n)
            out.append((f"rollback ≤ 1.5 s ({n}h)", f"{m:.2f} s", m <= 1.5))
    if res.has("help", "mlctl", 1):
        m = res.med("help", "mlctl", 1)
        out.append(("`mlctl --help` ≤ 0.5 s", f"{m:.2f} s", m <= 0.5))
    return out


def verdict_table(res: Results, host_counts: list[int]) -> str:
    rows = [[t, m, "met" if ok else "**missed**"] for t, m, ok in verdicts(res, host_counts)]
    return md_table(["target", "measured", "verdict"], rows) + "\n" if rows else ""


# ---------------------------------------------------------------- the machine


def machine() -> list[tuple[str, str]]:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = ""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    ssh = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    return [
        ("date", time.strftime("%Y-%m-%d %H:%M %Z")),
        ("nproc", str(os.cpu_count())),
        ("memory", mem),
        ("CPU", cpu or platform.processor()),
        ("kernel", platform.release()),
        ("Python (control)", sys.version.split()[0]),
        ("OpenSSH", ssh.split(",")[0]),
        ("load average at the end (1/5/15 min)", " / ".join(f"{x:.1f}" for x in os.getloadavg())),
    ]


def results_md(
    res: Results, host_counts: list[int], facts: list[tuple[str, str]], settings: str
) -> str:
    analysis = (Path(__file__).with_name("ANALYSIS.md")).read_text()
    body = [
        "# mlctl benchmark results",
        "",
        "Written by `python -m bench` (issue 8); rerun it to refresh. " + settings,
        "",
        "## Machine",
        "",
        md_table(["", ""], [[k, v] for k, v in facts]),
        "",
        "## Results",
        "",
        tables(res, host_counts),
        "## Targets",
        "",
        verdict_table(res, host_counts),
    ]
    notes = run_notes(res)
    if notes:
        body += ["Notes from this run:", ""] + [f"- {n}" for n in notes] + [""]
    body += [analysis.rstrip(), ""]
    return "\n".join(body)
