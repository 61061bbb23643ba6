"""Deploy under load: a bounded HTTP client on the control machine requests `/`, `/healthz` and a
static file through each host's nginx at a steady rate (threads; a ticker hands out slots, a fixed
pool of workers answers them; a slot no worker could take is counted as dropped, never queued
without bound). Latency is measured from the slot's scheduled time, so a stalled server shows as
the wait its users had, not hidden by the client slowing down."""

from __future__ import annotations

import http.client
import json
import queue
import re
import threading
import time
from dataclasses import dataclass

from bench.markdown import md_table

PATHS = ("/", "/healthz", "/static/notes/style.css")
FOOTER = re.compile(rb"<footer>release (\S+)</footer>")


@dataclass
class Sample:
    t: float  # scheduled time (monotonic)
    path: str
    status: int  # 0: connection error or timeout; -1: dropped (every worker busy)
    latency: float  # seconds from the scheduled time to the whole answer
    release: str = ""  # the release /healthz or the page's footer names


def fetch(address: str, path: str, timeout: float) -> tuple[int, str]:
    """(status, release named by the body); (0, "") on a connection error or a timeout."""
    conn = http.client.HTTPConnection(address, 80, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        body = resp.read()
    except (OSError, http.client.HTTPException):
        return 0, ""
    finally:
        conn.close()
    return resp.status, release_of(path, body)


def release_of(path: str, body: bytes) -> str:
    if path == "/healthz":
        try:
            return str(json.loads(body).get("release", ""))
        except (ValueError, AttributeError):
            return ""
    m = FOOTER.search(body) if path == "/" else None
    return m.group(1).decode(errors="replace") if m else ""


class Load:
    """`with Load(addresses) as load:` runs the client; load.samples afterwards."""

    def __init__(self, addresses: list[str], rate: float = 50.0, workers: int = 64):
        self.addresses, self.rate, self.workers = addresses, rate, workers
        self.samples: list[Sample] = []
        self._slots: queue.Queue = queue.Queue(maxsize=workers)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Load:
        self._threads = [threading.Thread(target=self._work) for _ in range(self.workers)]
        self._threads.append(threading.Thread(target=self._tick))
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def _tick(self) -> None:
        start, i = time.monotonic(), 0
        while not self._stop.is_set():
            due = start + i / self.rate
            time.sleep(max(0.0, due - time.monotonic()))
            slot = (due, PATHS[i % len(PATHS)], self.addresses[i % len(self.addresses)])
            try:
                self._slots.put_nowait(slot)
            except queue.Full:
                self._record(Sample(due, slot[1], -1, 0.0))
            i += 1
        for _ in range(self.workers):
            self._slots.put((None, "", ""))

    def _work(self) -> None:
        while True:
            due, path, address = self._slots.get()
            if due is None:
                return
            status, release = fetch(address, path, timeout=10.0)
            self._record(Sample(due, path, status, time.monotonic() - due, release))

    def _record(self, s: Sample) -> None:
        with self._lock:
            self.samples.append(s)


# ---------------------------------------------------------------- figures of a window


@dataclass
class Figures:
    requests: int
    errors: int  # connection errors, timeouts and 5xx
    dropped: int  # slots no worker was free for (the client's own limit)
    failing: int  # answers from the failing release: its Django 500s, bodies naming it
    p99: float  # seconds
    max: float
    where: str  # errors per path, e.g. "/ 12, /healthz 3"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def figures(samples: list[Sample], t0: float, t1: float, failing: str = "") -> Figures:
    """The figures of the requests scheduled in [t0, t1); `failing` is the commit prefix of a
    release that fails health (its Django answers 500: nginx's own 502/504 are not counted)."""
    win = [s for s in samples if t0 <= s.t < t1]
    sent = [s for s in win if s.status >= 0]
    errs = [s for s in sent if s.status == 0 or s.status >= 500]
    bad = [s for s in sent if failing and (s.status == 500 or failing in s.release)]
    where: dict[str, int] = {}
    for s in errs:
        where[s.path] = where.get(s.path, 0) + 1
    lat = [s.latency for s in sent]
    return Figures(
        requests=len(sent),
        errors=len(errs),
        dropped=len(win) - len(sent),
        failing=len(bad),
        p99=percentile(lat, 0.99),
        max=max(lat, default=float("nan")),
        where=", ".join(f"{p} {n}" for p, n in sorted(where.items())),
    )


@dataclass
class LoadRun:
    tool: str
    kind: str  # "good" or "failing /"
    code: int  # the deploy's exit status
    seconds: float
    base: Figures  # the window before the deploy
    during: Figures  # from the deploy's start to its end plus the tail
    serving: str  # the release /healthz names once the deploy is over


def under_load(deploy, addresses: list[str], failing: str = "", baseline=4.0, tail=1.0):
    """Run deploy() while the client runs: `baseline` seconds before it, `tail` after it.
    Returns (the deploy's Run, baseline Figures, Figures during the deploy)."""
    with Load(addresses) as load:
        start = time.monotonic()
        time.sleep(baseline)
        t0 = time.monotonic()
        run = deploy()
        t1 = time.monotonic() + tail
        time.sleep(tail)
    base = figures(load.samples, start, t0, failing)
    return run, base, figures(load.samples, t0, t1, failing)


# ---------------------------------------------------------------- tables and verdicts


def ms(x: float) -> str:
    return "—" if x != x else f"{x * 1000:.0f}"


def load_table(runs: list[LoadRun]) -> str:
    """One row per deploy under load (every run: they are few, and each one counts)."""
    rows = []
    for r in runs:
        d, b = r.during, r.base
        rows.append(
            [
                r.tool,
                r.kind,
                str(r.code),
                f"{r.seconds:.2f}",
                str(d.requests),
                f"{d.errors}" + (f" ({d.where})" if d.where else ""),
                str(d.failing),
                str(d.dropped),
                ms(b.p99),
                ms(d.p99),
                ms(d.max),
                f"{d.max / b.p99:.1f}×" if b.p99 == b.p99 and b.p99 else "—",
                r.serving[:27],
            ]
        )
    head = [
        "tool",
        "deploy",
        "exit",
        "s",
        "requests",
        "errors (where)",
        "failing release",
        "dropped",
        "base p99 ms",
        "p99 ms",
        "max ms",
        "max / base p99",
        "serving after",
    ]
    return md_table(head, rows) if rows else ""


def load_verdicts(runs: list[LoadRun]) -> list[tuple[str, str, bool]]:
    """mlctl's targets under load, per kind of deploy, over every run of that kind."""
    out = []
    for kind in ("good", "failing /", "rollback"):
        mine = [r for r in runs if r.tool == "mlctl" and r.kind == kind]
        if not mine:
            continue
        errors = sum(r.during.errors for r in mine)
        failing = sum(r.during.failing for r in mine)
        worst = max(r.during.max / r.base.p99 for r in mine)
        name = f"under load, mlctl {kind}"
        out.append((f"{name}: zero errors", str(errors), errors == 0))
        if kind == "failing /":
            out.append(
                (f"{name}: zero answers from the failing release", str(failing), failing == 0)
            )
        out.append((f"{name}: max latency ≤ 2× no-deploy p99", f"{worst:.1f}×", worst <= 2))
    return out
