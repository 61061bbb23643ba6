"""The two cases of issue 15 beyond the timings: every tool deploying under load (a good release,
then one whose `/` answers 500), and how mlctl's cost grows from 1 to 3 to 8 hosts."""

from __future__ import annotations

from bench.growth import Growth
from bench.load import LoadRun, fetch, under_load
from bench.tools import ENV
from tests.integration.helpers import commit_file

INDEX_RAISES = """

def index(request):  # the root page raises; /healthz still answers
    raise ValueError("bench: a release whose / answers 500")
"""
ANY_EXIT = tuple(range(256))


def serving(address: str) -> str:
    status, release = fetch(address, "/healthz", timeout=5.0)
    return release if status == 200 else f"HTTP {status}"


def load_case(bench, say) -> list[LoadRun]:
    """For every tool: a good deploy and a failing one (its health check decides), under load on
    host h1; after the failing one, the fix is deployed (not measured)."""
    runs: list[LoadRun] = []
    for i in bench.rounds(bench.args.load_repeat, "load"):
        for tool in bench.tools:
            runs.append(load_good(bench, tool))
            runs.append(load_failing(bench, tool))
            if tool == "mlctl":
                runs.append(load_rollback(bench))
            for r in runs[-3 if tool == "mlctl" else -2 :]:
                say(
                    f"load #{i + 1}: {tool} {r.kind}: exit {r.code}, {r.seconds:.2f} s, "
                    f"errors {r.during.errors}, failing {r.during.failing}, "
                    f"max {r.during.max * 1000:.0f} ms (base p99 {r.base.p99 * 1000:.0f} ms)"
                )
    return runs


def _loaded(bench, tool: str, kind: str, deploy, failing: str = "") -> LoadRun:
    address = bench.ws.hosts(1)[0].address
    run, base, during = under_load(deploy, [address], failing)
    return LoadRun(tool, kind, run.code, run.seconds, base, during, serving(address))


def load_good(bench, tool: str) -> LoadRun:
    commit = bench.ws.code_change(f"load {tool}")
    return _loaded(bench, tool, "good", lambda: bench.deploy(tool, 1, commit))


def load_failing(bench, tool: str) -> LoadRun:
    repo = bench.ws.repo
    views = (repo / "notes" / "views.py").read_text()
    bad = commit_file(repo, "notes/views.py", views + INDEX_RAISES, f"bench {tool}: / raises")
    r = _loaded(
        bench,
        tool,
        "failing /",
        lambda: bench.deploy(tool, 1, bad, ok=ANY_EXIT),
        failing=bad[:12],
    )
    fixed = commit_file(repo, "notes/views.py", views, f"bench {tool}: / fixed")
    # the fix, not measured: by mlctl itself (its rollback case comes next), else by the floor
    bench.deploy("mlctl" if tool == "mlctl" else "floor", 1, fixed)
    return r


def load_rollback(bench) -> LoadRun:
    """mlctl only: a deploy (not measured), then its rollback under load."""
    bench.deploy("mlctl", 1, bench.ws.code_change("load rollback"))
    return _loaded(bench, "mlctl", "rollback", lambda: bench.mlctl.rollback(1))


def growth_case(bench, say, counts: list[int]) -> Growth:
    """status, check and a warm deploy at each host count, `repeat` times, interleaved."""
    g = Growth()
    m = bench.mlctl
    for i in bench.rounds(bench.args.repeat, "growth"):
        for n in counts:
            hosts = bench.ws.hosts(n)
            s = g.measure("status", hosts, lambda n=n: m.run(n, ENV, "status"))
            c = g.measure("check", hosts, lambda n=n: m.run(n, ENV, "check", ok=(0, 1, 2)))
            commit = bench.ws.code_change(f"growth {n}h")
            d = g.measure("warm", hosts, lambda n=n, commit=commit: m.deploy(n, commit))
            say(
                f"growth {n}h #{i + 1}: status {s.seconds:.2f} s, check {c.seconds:.2f} s, "
                f"deploy {d.seconds:.2f} s (CPU {s.cpu:.2f}/{c.cpu:.2f}/{d.cpu:.2f} s)"
            )
    return g
