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

from bench.growth import Growth
from bench.load import load_table, load_verdicts
from bench.markdown import fmt_ratio, md_table


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
        self.load: list = []  # load.LoadRun
        self.growth = None  # growth.Growth

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


TOOLS = ["mlctl", "floor", "ansible", "capistrano", "pyinfra"]
NAMES = {
    "mlctl": "mlctl",
    "floor": "floor",
    "ansible": "Ansible",
    "capistrano": "Capistrano",
    "pyinfra": "pyinfra",
}


def deploy_rows(res: Results, host_counts: list[int]) -> list[list[str]]:
    rows = []
    for case, label in (("warm", "warm code-only redeploy"), ("cold", "cold deploy (new venv)")):
        for n in host_counts:
            if not res.has(case, "mlctl", n):
                continue
            row = [label, str(n)] + [res.s(case, t, n).cell() for t in TOOLS]
            row.append(fmt_ratio(res.ratio((case, "mlctl", n), (case, "floor", n))))
            row += [fmt_ratio(res.ratio((case, t, n), (case, "mlctl", n))) for t in TOOLS[2:]]
            rows.append(row)
    return rows


def tables(res: Results, host_counts: list[int]) -> str:
    out = []
    rows = deploy_rows(res, host_counts)
    if rows:
        out.append("**Deploys** — wall seconds, median (min–max); ratios of medians\n")
        head = ["case", "hosts"] + [NAMES[t] for t in TOOLS] + ["mlctl / floor"]
        head += [f"{NAMES[t]} / mlctl" for t in TOOLS[2:]]
        out.append(md_table(head, rows))
    out += hosts_table(res, host_counts) + cli_table(res) + trips_table(res) + steps_table(res)
    return "\n".join(out) + "\n"


def hosts_table(res: Results, host_counts: list[int]) -> list[str]:
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
        ("warm", "capistrano", "Capistrano warm deploy (reference)"),
        ("warm", "pyinfra", "pyinfra warm deploy (reference)"),
    ):
        if not res.has(case, tool, lo):
            continue
        cells = [res.s(case, tool, lo).cell(), res.s(case, tool, hi).cell()]
        ratio = fmt_ratio(res.ratio((case, tool, hi), (case, tool, lo)))
        rows.append([label, *cells, ratio])
    if not rows or lo == hi:
        return []
    head = ["operation", f"{lo} host", f"{hi} hosts", f"{hi}h / {lo}h"]
    return [
        f"\n**{lo} host vs {hi} hosts** — wall seconds, median (min–max)\n",
        md_table(head, rows),
    ]


def cli_table(res: Results) -> list[str]:
    rows = []
    for case, label in (("help", "mlctl --help"), ("status", "mlctl test status (1 warm host)")):
        if res.has(case, "mlctl", 1):
            rows.append([label, res.s(case, "mlctl", 1).cell()])
    if not rows:
        return []
    return [
        "\n**CLI start-up** — wall seconds, median (min–max)\n",
        md_table(["command", "seconds"], rows),
    ]


def trips_table(res: Results) -> list[str]:
    rows = []
    for kind, label in (("warm", "warm redeploy"), ("cold", "cold deploy")):
        cells = [label]
        for tool in TOOLS:
            counts = sorted(set(res.trips.get((kind, tool), [])))
            cells.append("/".join(map(str, counts)) if counts else "—")
        if any(c != "—" for c in cells[1:]):
            rows.append(cells)
    if not rows:
        return []
    return [
        "\n**Remote round trips per host** (mlctl: journal records with a host; floor: ssh "
        "invocations; Ansible: module runs incl. loop items and retries; Capistrano: "
        "commands its log shows, test/capture not counted; pyinfra: operations, each after the "
        "facts it reads)\n",
        md_table(["deploy"] + [NAMES[t] for t in TOOLS], rows),
    ]


def steps_table(res: Results) -> list[str]:
    if not res.steps:
        return []
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
    return [
        "\n**mlctl warm deploy, remote steps** — median ms per run (slowest host; a step "
        "run twice is summed)\n",
        md_table(["step"] + [f"{n} host(s)" for n in counts], rows),
    ]


TARGETS = """\
- warm redeploy ≤ 1.1× the floor and faster than every peer (Ansible ≥ 5× slower), 1 and 3 hosts
- rollback ≤ 0.5 s per host (1 host: its wall time; 3 hosts: wall time ÷ 3)
- under load: zero errors, zero answers from a failing release, max latency ≤ 2× no-deploy p99
- `check` on 8 hosts ≤ 2× one host"""


def verdicts(res: Results, host_counts: list[int]) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for every target of issue 15 the run has numbers for."""
    out = []
    for n in host_counts:
        out += deploy_verdicts(res, n)
    for n in host_counts:
        if res.has("rollback", "mlctl", n):
            m = res.med("rollback", "mlctl", n)
            label = f"rollback ≤ 0.5 s per host ({n}h: {m:.2f} s)"
            out.append((label, f"{m / n:.2f} s/host", m / n <= 0.5))
    out += load_verdicts(res.load)
    g: Growth | None = res.growth
    if g and (g.counts() or [0])[-1] > 1:
        hi = g.counts()[-1]
        r = g.med("check", hi, "wall") / g.med("check", 1, "wall")
        out.append((f"check on {hi} hosts ≤ 2× 1 host", f"{r:.2f}×", r <= 2))
    return out


def deploy_verdicts(res: Results, n: int) -> list[tuple[str, str, bool]]:
    out = []
    r = res.ratio(("warm", "mlctl", n), ("warm", "floor", n))
    if r == r:
        out.append((f"warm redeploy ≤ 1.1× floor ({n}h)", f"{r:.2f}×", r <= 1.1))
    peers = [t for t in TOOLS[2:] if res.has("warm", t, n)]
    if peers:
        fastest = min(peers, key=lambda t: res.med("warm", t, n))
        r = res.ratio(("warm", fastest, n), ("warm", "mlctl", n))
        label = f"warm redeploy faster than every peer ({n}h; fastest: {NAMES[fastest]})"
        out.append((label, f"{NAMES[fastest]} / mlctl {r:.2f}×", r > 1))
    r = res.ratio(("warm", "ansible", n), ("warm", "mlctl", n))
    if r == r:
        out.append((f"Ansible ≥ 5× slower ({n}h)", f"{r:.2f}×", r >= 5))
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


def extra_sections(res: Results) -> list[str]:
    out = []
    if res.load:
        out += [
            "## Deploy under load",
            "",
            "Host h1, 50 requests/s (`/`, `/healthz`, `/static/notes/style.css` in turn) through "
            "its nginx from the control machine, 64 workers, one new connection per request, "
            "latency from each request's scheduled time; *base*: the 4 s before the deploy; the "
            "deploy's window runs from its start to 1 s after it ends. *errors*: connection "
            "errors, timeouts and 5xx; *failing release*: Django's 500s of the release whose `/` "
            "raises and bodies naming it; *serving after*: the release /healthz names then.",
            "",
            load_table(res.load),
            "",
        ]
    g: Growth | None = res.growth
    if g and g.points:
        out += [
            "## How cost grows",
            "",
            "Medians per host count. Control CPU: `getrusage(RUSAGE_CHILDREN)` around the mlctl "
            "subprocess. Bytes: the machine-side veth end of each host "
            "(`/sys/class/net/<veth>/statistics/tx_bytes`, `rx_bytes`), mean per host.",
            "",
            g.table(),
            "",
            "Straight lines through the medians (least squares over 1, 3, 8 hosts), totals for "
            "all hosts: *a* + *b*·hosts, and the line's value at 100 hosts:",
            "",
            g.lines_table(),
            "",
        ]
    return out


def results_md(
    res: Results, host_counts: list[int], facts: list[tuple[str, str]], settings: str
) -> str:
    analysis = (Path(__file__).with_name("ANALYSIS.md")).read_text()
    body = [
        "# mlctl benchmark results",
        "",
        "Written by `python -m bench` (issues 8 and 15); rerun it to refresh. " + settings,
        "",
        "## Machine",
        "",
        md_table(["", ""], [[k, v] for k, v in facts]),
        "",
        "## Results",
        "",
        tables(res, host_counts),
        *extra_sections(res),
        "## Targets",
        "",
        TARGETS,
        "",
        verdict_table(res, host_counts),
    ]
    notes = run_notes(res)
    if notes:
        body += ["Notes from this run:", ""] + [f"- {n}" for n in notes] + [""]
    body += [analysis.rstrip(), ""]
    return "\n".join(body)
