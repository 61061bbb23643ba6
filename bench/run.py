"""`python -m bench`: boot the bench's own farm, set the app up with mlctl, measure every case,
print the tables, write RESULTS.md, and take the farm down again (also on error and Ctrl-C)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench import report, scenarios
from bench.peers import Capistrano, Pyinfra
from bench.tools import ENV, Ansible, BenchError, Floor, Mlctl, Workspace
from tests.hosts.farm import placed

# never "mlctl": that farm belongs to the test suite and other people
FARM_PREFIX, FARM_NETWORK, FARM_DIR = placed(
    "mlbench", "198.51.100.192/26", Path("/tmp/mlctl-bench-farm")
)
WORK_DIR = Path("/tmp/mlctl-bench-work")
BENCH_DIR = Path(__file__).resolve().parent
HOSTS = 8  # the farm; the timed cases use --warm-hosts, the growth case GROWTH
GROWTH = [1, 3, 8]
PEERS = ["floor", "ansible", "capistrano", "pyinfra"]


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--repeat", type=int, default=3, help="runs per case (default 3)")
    p.add_argument(
        "--cold-repeat", type=int, default=1, help="runs per cold-deploy case (default 1)"
    )
    p.add_argument(
        "--load-repeat", type=int, default=1, help="runs per under-load case (default 1)"
    )
    p.add_argument(
        "--budget",
        type=float,
        default=900,
        help="seconds of measuring after which each case runs once more at most (default 900)",
    )
    p.add_argument(
        "--warm-hosts",
        default="1,3",
        help="host counts of the warm (and ops, cold) cases (default 1,3)",
    )
    p.add_argument("--farm-hosts", type=int, default=HOSTS, help=f"hosts to boot (default {HOSTS})")
    p.add_argument("--quick", action="store_true", help="one run of every case; no RESULTS.md")
    p.add_argument(
        "--cases",
        default="load,growth,warm,cli",
        help="comma list of warm (with rollback), ops (check, diag), cli, cold, load, growth",
    )
    p.add_argument(
        "--tools",
        default=",".join(["mlctl"] + PEERS),
        help="comma list of mlctl, floor, ansible, capistrano, pyinfra (mlctl always runs)",
    )
    p.add_argument(
        "--out", help="where to write the results (default bench/RESULTS.md; none with --quick)"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.repeat = args.cold_repeat = args.load_repeat = 1
    if args.out is None and not args.quick:
        args.out = str(Path(__file__).with_name("RESULTS.md"))
    args.cases = {c.strip() for c in args.cases.split(",") if c.strip()}
    args.warm_hosts = sorted({int(n) for n in args.warm_hosts.split(",") if n.strip()})
    chosen = {t.strip() for t in args.tools.split(",")}
    args.tools = ["mlctl"] + [t for t in PEERS if t in chosen]
    return args


def say(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


def _sigterm(_signum, _frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if os.geteuid() != 0:
        print("bench: needs root (the farm boots hosts in network namespaces)", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    signal.signal(signal.SIGTERM, _sigterm)
    started = time.monotonic()
    load_before = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    versions = install_tools(args.tools)
    res = report.Results()
    code = run_farm(args, res)
    if code and not res.times and not res.load:
        return code
    if code:  # what was measured before the stop is still worth reading: written, and said so
        res.notes.append(f"the run stopped early (exit {code}); the tables hold what it measured")
    facts = report.machine() + versions
    at_end = next(i for i, (k, _) in enumerate(facts) if k.startswith("load average"))
    facts.insert(at_end, ("load average at the start (1/5/15 min)", load_before))
    facts.append(("bench wall time", f"{time.monotonic() - started:.0f} s"))
    facts.append(("mlctl", mlctl_revision()))
    settings = (
        f"Runs per case: {args.repeat} (cold deploys: {args.cold_repeat}; under load: "
        f"{args.load_repeat}); {args.farm_hosts} test hosts booted on this machine, "
        "sharing its CPUs."
    )
    text = report.results_md(res, args.warm_hosts, facts, settings)
    print()
    print(text.split("## Analysis")[0])
    if args.out:
        Path(args.out).write_text(text)
        say(f"wrote {args.out}")
    return code


def install_tools(tools: list[str]) -> list[tuple[str, str]]:
    """Install (or find) the peers that need it; their versions for the machine table."""
    out = []
    if "ansible" in tools:
        out.append(("ansible-core", Ansible.install()))
    if "capistrano" in tools:
        out.append(("Capistrano", Capistrano.install()))
    if "pyinfra" in tools:
        out.append(("pyinfra", Pyinfra.install()))
    return out


def mlctl_revision() -> str:
    here = Path(__file__).resolve().parent.parent
    git = ["git", "-C", str(here), "log", "-1", "--format=%h %s"]
    return subprocess.run(git, capture_output=True, text=True).stdout.strip()[:90]


def run_farm(args, res: report.Results) -> int:
    """Boot the farm, run the cases into `res`, take the farm down (also on error, Ctrl-C)."""
    from tests.hosts import Farm

    farm = Farm(args.farm_hosts, workdir=FARM_DIR, prefix=FARM_PREFIX, network=FARM_NETWORK)
    bench = None
    code = 0
    try:
        say(f"booting {args.farm_hosts} hosts ({FARM_PREFIX}, {FARM_NETWORK}) …")
        farm.up()
        ws = Workspace(WORK_DIR, farm)
        ws.create()
        bench = Bench(args, ws, res)
        bench.setup()
        bench.measure()
    except KeyboardInterrupt:
        print("\nbench: interrupted; taking the farm down", file=sys.stderr)
        code = 130
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        code = 1
    finally:
        code = teardown(farm, bench) or code
    return code


def teardown(farm, bench) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop teardown
    try:
        if bench and "ansible" in bench.tools:
            bench.ansible.close()
        say("taking the farm down …")
        farm.down()
        leftovers = check_clean()
        if leftovers:
            print("bench: left behind: " + "; ".join(leftovers), file=sys.stderr)
            return 1
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def check_clean() -> list[str]:
    """What of ours is still there after teardown (namespaces, mounts, nspawn, ssh masters)."""
    left = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    left += [f"netns {ln.split()[0]}" for ln in netns.splitlines() if ln.startswith(FARM_PREFIX)]
    mounts = Path("/proc/mounts").read_text().splitlines()
    left += [f"mount {m.split()[1]}" for m in mounts if str(FARM_DIR) in m.split()[1]]
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        text = b" ".join(argv).decode(errors="replace")
        if f"--machine={FARM_PREFIX}-" in text or ("ControlPath" in text and str(WORK_DIR) in text):
            left.append(f"process {pid}: {text[:80]}")
        elif argv[0].startswith(b"ssh: ") and str(WORK_DIR).encode() in argv[0]:
            left.append(f"ssh master {pid}: {text[:80]}")
    return left


class Bench:
    def __init__(self, args, ws: Workspace, res: report.Results):
        self.args, self.ws, self.res = args, ws, res
        self.started = time.monotonic()
        self.mlctl = Mlctl(ws)
        self.pyver, self.platforms = self.host_python()
        self.floor = Floor(ws, self.pyver, self.platforms)
        self.ansible = Ansible(ws, self.pyver, self.platforms)
        self.capistrano = Capistrano(ws, self.pyver, self.platforms)
        self.pyinfra = Pyinfra(ws, self.pyver, self.platforms)
        self.tools = args.tools

    def host_python(self) -> tuple[str, list[str]]:
        from mlctl.project.wheelhouse import platform_tags

        code = (
            "import json, platform, sys; print(json.dumps(['%d.%d' % sys.version_info[:2], "
            "platform.machine(), platform.libc_ver()[1]]))"
        )
        r = self.ws.farm.ssh(self.ws.farm.hosts[0], f'/usr/bin/python3 -c "{code}"', check=True)
        pyver, machine, libc = json.loads(r.stdout)
        return pyver, platform_tags(machine, libc)

    # ------------------------------------------------------------ setup

    def setup(self) -> None:
        n = self.args.farm_hosts
        say(f"setup: mlctl {ENV} setup + first deploy on {n} hosts (builds the venv) …")
        self.mlctl.run(n, ENV, "setup")
        self.mlctl.deploy(n)
        self.install_restart_app()
        if "ansible" in self.tools:
            self.ansible.prepare()
        # One unmeasured round of each tool: caches, compiled bytecode, Ansible's master
        # connections (ControlPersist keeps them across runs: its best case).
        if "load" in self.args.cases:
            return  # the load case comes first and deploys every tool to h1 already
        say("warm-up: one unmeasured deploy of each tool on h1 …")
        for tool in self.tools:
            self.deploy(tool, 1, self.ws.code_change(f"warm-up {tool}"))

    def rounds(self, repeat: int, case: str):
        """range(repeat), cut short (after a first round) once the run is over its budget."""
        for i in range(repeat):
            if i and time.monotonic() - self.started > self.args.budget:
                self.res.notes.append(f"{case}: {i} of {repeat} runs (over the time budget)")
                return
            yield i

    def install_restart_app(self) -> None:
        """bench/app-restart.sh on every host: the peers' "restart gunicorn" step."""
        script = (BENCH_DIR / "app-restart.sh").read_text()
        dest = "/usr/local/sbin/bench-restart-app"
        for h in self.ws.farm.hosts:
            argv = self.ws.farm.ssh_argv(h, f"cat > {dest} && chmod 0755 {dest}")
            subprocess.run(argv, input=script, text=True, check=True, capture_output=True)

    def deploy(self, tool: str, n: int, commit: str, cold: bool = False, ok=(0,)):
        """One deploy of `commit` (the repository's HEAD: mlctl deploys that) by `tool`."""
        return getattr(self, tool).deploy(n, commit, cold, ok=ok)

    # ------------------------------------------------------------ cases

    def measure(self) -> None:
        self.started = time.monotonic()
        cases = self.args.cases
        counts = self.args.warm_hosts
        if "load" in cases:
            self.res.load = scenarios.load_case(self, say)
        if "growth" in cases:
            self.res.growth = scenarios.growth_case(
                self, say, [n for n in GROWTH if n <= self.args.farm_hosts]
            )
        if "warm" in cases:
            for n in counts:
                self.warm(n)
        if "ops" in cases:
            for n in counts:
                self.ops(n)
        if "cli" in cases:
            self.cli()
        if "cold" in cases:
            for n in counts:
                self.cold(n)

    def warm(self, n: int) -> None:
        """Warm code-only redeploys, each tool its own new commit. mlctl deploys twice in a row
        (both timed), then rolls back (code-only) to the first: the release its previous slot
        still runs, on every host (a warm slot under the nginx cutover)."""
        for i in self.rounds(self.args.repeat, f"warm {n}h"):
            for tool in self.tools:
                runs = [self.warm_one(tool, n) for _ in range(2 if tool == "mlctl" else 1)]
                line = f"warm {n}h #{i + 1}: {tool} " + ", ".join(f"{r.seconds:.2f}" for r in runs)
                if tool == "mlctl":
                    back = self.mlctl.rollback(n)
                    self.res.s("rollback", "mlctl", n).add(back.seconds)
                    line += f" s, rollback {back.seconds:.2f}"
                say(line + " s")

    def warm_one(self, tool: str, n: int):
        run = self.deploy(tool, n, self.ws.code_change(f"warm {tool} {n}h"))
        self.res.s("warm", tool, n).add(run.seconds)
        self.count_trips("warm", tool, run)
        if tool == "mlctl":
            self.res.add_steps(n, run.remote_records())
        return run

    def ops(self, n: int) -> None:
        for i in self.rounds(self.args.repeat, f"ops {n}h"):
            for task in ("check", "diag"):
                run = self.mlctl.run(n, ENV, task, ok=(0, 1, 2))
                self.res.s(task, "mlctl", n).add(run.seconds)
                if run.code and i == 0:
                    meaning = {1: "warnings", 2: "failures"}[run.code]
                    self.res.notes.append(
                        f"`mlctl {ENV} {task}` on {n} host(s) exited {run.code} ({meaning}; "
                        "timed all the same)"
                    )
            say(
                f"ops {n}h #{i + 1}: check {self.res.s('check', 'mlctl', n).values[-1]:.2f} s, "
                f"diag {self.res.s('diag', 'mlctl', n).values[-1]:.2f} s"
            )

    def cli(self) -> None:
        for i in self.rounds(self.args.repeat, "cli"):
            a = self.mlctl.run(None, "--help")
            b = self.mlctl.run(1, ENV, "status")
            self.res.s("help", "mlctl", 1).add(a.seconds)
            self.res.s("status", "mlctl", 1).add(b.seconds)
            say(f"cli #{i + 1}: --help {a.seconds:.2f} s, status {b.seconds:.2f} s")

    def cold(self, n: int) -> None:
        for i in self.rounds(self.args.cold_repeat, f"cold {n}h"):
            for tool in self.tools:
                commit = self.ws.requirements_change(f"{tool} {n}h")
                run = self.deploy(tool, n, commit, cold=True)
                self.res.s("cold", tool, n).add(run.seconds)
                self.count_trips("cold", tool, run)
                say(f"cold {n}h #{i + 1}: {tool} {run.seconds:.2f} s")

    def count_trips(self, kind: str, tool: str, run) -> None:
        trips = self.res.trips.setdefault((kind, tool), [])
        if tool == "mlctl":
            trips += list(run.per_host().values())
        elif tool == "floor":
            trips.append(Floor.round_trips(kind == "cold"))
        else:
            trips.append(type(getattr(self, tool)).round_trips(run))
