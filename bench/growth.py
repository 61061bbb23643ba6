"""How cost grows with hosts: wall seconds, control-side CPU seconds (getrusage of the children
around each mlctl subprocess) and bytes each host's link carried (the machine-side veth end's
counters in /sys/class/net: tx = sent to the host, rx = received from it), at 1, 3 and 8 hosts,
with a straight line through the medians so 100 hosts can be drawn on paper."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from bench.markdown import md_table

OPS = (("status", "mlctl test status"), ("check", "mlctl test check"), ("warm", "warm deploy"))


def link_bytes(hosts) -> dict[str, tuple[int, int]]:
    """host name → (bytes sent to it, bytes received from it) so far."""
    out = {}
    for h in hosts:
        stats = Path("/sys/class/net") / h.netns / "statistics"
        out[h.name] = (int((stats / "tx_bytes").read_text()), int((stats / "rx_bytes").read_text()))
    return out


@dataclass
class Point:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    sent: list[float] = field(default_factory=list)  # bytes to one host (mean over hosts)
    received: list[float] = field(default_factory=list)


class Growth:
    def __init__(self):
        self.points: dict[tuple[str, int], Point] = {}

    def measure(self, op: str, hosts: list, run_it):
        """run_it() → Run; record its wall and CPU time and the bytes per host."""
        before = link_bytes(hosts)
        run = run_it()
        after = link_bytes(hosts)
        p = self.points.setdefault((op, len(hosts)), Point())
        p.wall.append(run.seconds)
        p.cpu.append(run.cpu)
        p.sent.append(statistics.mean(after[h][0] - before[h][0] for h in after))
        p.received.append(statistics.mean(after[h][1] - before[h][1] for h in after))
        return run

    def counts(self) -> list[int]:
        return sorted({n for _, n in self.points})

    def med(self, op: str, n: int, what: str) -> float:
        p = self.points.get((op, n))
        return statistics.median(getattr(p, what)) if p and getattr(p, what) else float("nan")

    def table(self) -> str:
        rows = []
        for op, label in OPS:
            for n in self.counts():
                if (op, n) not in self.points:
                    continue
                rows.append(
                    [
                        label,
                        str(n),
                        f"{self.med(op, n, 'wall'):.2f}",
                        f"{self.med(op, n, 'cpu'):.2f}",
                        f"{self.med(op, n, 'sent') / 1024:.1f}",
                        f"{self.med(op, n, 'received') / 1024:.1f}",
                    ]
                )
        head = [
            "operation",
            "hosts",
            "wall s",
            "control CPU s",
            "KiB to each host",
            "KiB from each host",
        ]
        return md_table(head, rows) if rows else ""

    def lines(self) -> list[list[str]]:
        """Per operation and quantity: the least-squares line a + b·n and its value at 100."""
        rows = []
        for op, label in OPS:
            for what, unit, scale in (
                ("wall", "s", 1),
                ("cpu", "CPU s", 1),
                ("sent", "KiB sent", 1024),
            ):
                ns = [n for n in self.counts() if (op, n) in self.points]
                if len(ns) < 2:
                    continue
                total = [self.med(op, n, what) * (n if what == "sent" else 1) / scale for n in ns]
                a, b = fit(ns, total)
                rows.append([label, unit, f"{a:.2f}", f"{b:.3f}", f"{a + 100 * b:.1f}"])
        return rows

    def lines_table(self) -> str:
        rows = self.lines()
        head = ["operation", "quantity (all hosts)", "fixed a", "per host b", "100 hosts"]
        return md_table(head, rows) if rows else ""


def fit(xs: list[int], ys: list[float]) -> tuple[float, float]:
    """Least-squares intercept and slope."""
    mx, my = statistics.mean(xs), statistics.mean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return my - b * mx, b
