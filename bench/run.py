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

from bench import report
from bench.tools import ENV, Ansible, BenchError, Floor, Mlctl, Workspace
from tests.hosts.farm import placed

# never "mlctl": that farm belongs to the test suite and other people
FARM_PREFIX, FARM_NETWORK, FARM_DIR = placed(
    "mlbench", "198.51.100.192/26", Path("/tmp/mlctl-bench-farm")
)
WORK_DIR = Path("/tmp/mlctl-bench-work")
HOSTS = 3


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--repeat", type=int, default=5, help="runs per case (default 5)")
    p.add_argument(
        "--cold-repeat", type=int, default=2, help="runs per cold-deploy case (default 2)"
    )
    p.add_argument("--quick", action="store_true", help="one run of every case; no RESULTS.md")
    p.add_argument(
        "--cases",
        default="warm,ops,cli,cold",
        help="comma list of warm (with rollback), ops (check, diag), cli, cold",
    )
    p.add_argument("--no-ansible", action="store_true", help="skip the Ansible playbook")
    p.add_argument(
        "--out", help="where to write the results (default bench/RESULTS.md; none with --quick)"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.repeat = args.cold_repeat = 1
    if args.out is None and not args.quick:
        args.out = str(Path(__file__).with_name("RESULTS.md"))
    args.cases = {c.strip() for c in args.cases.split(",") if c.strip()}
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

    from tests.hosts import Farm

    ansible_version = "" if args.no_ansible else Ansible.install()
    farm = Farm(HOSTS, workdir=FARM_DIR, prefix=FARM_PREFIX, network=FARM_NETWORK)
    res = report.Results()
    ansible = None
    code = 0
    try:
        say(f"booting {HOSTS} hosts ({FARM_PREFIX}, {FARM_NETWORK}) …")
        farm.up()
        ws = Workspace(WORK_DIR, farm)
        ws.create()
        bench = Bench(args, ws, res)
        bench.setup()
        ansible = None if args.no_ansible else bench.ansible
        bench.measure()
    except KeyboardInterrupt:
        print("\nbench: interrupted; taking the farm down", file=sys.stderr)
        code = 130
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop teardown
        try:
            if ansible:
                ansible.close()
            say("taking the farm down …")
            farm.down()
            leftovers = check_clean()
            if leftovers:
                print("bench: left behind: " + "; ".join(leftovers), file=sys.stderr)
                code = code or 1
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    if code:
        return code

    hosts = [1, HOSTS]
    text = report.tables(res, hosts)
    print()
    print(text)
    print(report.verdict_table(res, hosts))
    for note in report.run_notes(res):
        print(f"- {note}")
    facts = report.machine()
    if ansible_version:
        facts.append(("ansible-core", ansible_version))
    at_end = next(i for i, (k, _) in enumerate(facts) if k.startswith("load average"))
    facts.insert(at_end, ("load average at the start (1/5/15 min)", load_before))
    facts.append(("bench wall time", f"{time.monotonic() - started:.0f} s"))
    settings = (
        f"Runs per case: {args.repeat} (cold deploys: {args.cold_repeat}); "
        f"{HOSTS} test hosts booted on this machine, sharing its CPUs."
    )
    if args.out:
        Path(args.out).write_text(report.results_md(res, hosts, facts, settings))
        say(f"wrote {args.out}")
    return 0


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
        self.mlctl = Mlctl(ws)
        self.pyver, self.platforms = self.host_python()
        self.floor = Floor(ws, self.pyver, self.platforms)
        self.ansible = Ansible(ws, self.pyver, self.platforms)
        self.tools = ["mlctl", "floor"] + ([] if args.no_ansible else ["ansible"])

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
        n = HOSTS
        say(f"setup: mlctl {ENV} setup + first deploy on {n} hosts (builds the venv) …")
        self.mlctl.run(n, ENV, "setup")
        self.mlctl.deploy(n)
        if "ansible" in self.tools:
            self.ansible.prepare()
        # One unmeasured round of each tool: caches, compiled bytecode, Ansible's master
        # connections (ControlPersist keeps them across runs: its best case).
        say("warm-up: one unmeasured deploy of each tool on all hosts …")
        for tool in self.tools:
            self.deploy(tool, n, self.ws.code_change(f"warm-up {tool}"))

    def deploy(self, tool: str, n: int, commit: str, cold: bool = False):
        if tool == "mlctl":
            return self.mlctl.deploy(n)
        if tool == "floor":
            return self.floor.deploy(n, commit, cold)
        return self.ansible.deploy(n, commit, cold)

    # ------------------------------------------------------------ cases

    def measure(self) -> None:
        cases = self.args.cases
        counts = [1, HOSTS]
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
        """Warm code-only redeploys, each tool its own new commit; mlctl's is rolled back
        right after (code-only), so every rollback goes back to a release all hosts have."""
        res = self.res
        for i in range(self.args.repeat):
            for tool in self.tools:
                commit = self.ws.code_change(f"warm {tool} {n}h")
                run = self.deploy(tool, n, commit)
                res.s("warm", tool, n).add(run.seconds)
                self.count_trips("warm", tool, run)
                line = f"warm {n}h #{i + 1}: {tool} {run.seconds:.2f} s"
                if tool == "mlctl":
                    res.add_steps(n, run.remote_records())
                    back = self.mlctl.rollback(n)
                    res.s("rollback", "mlctl", n).add(back.seconds)
                    line += f", rollback {back.seconds:.2f} s"
                say(line)

    def ops(self, n: int) -> None:
        for i in range(self.args.repeat):
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
        for i in range(self.args.repeat):
            a = self.mlctl.run(None, "--help")
            b = self.mlctl.run(1, ENV, "status")
            self.res.s("help", "mlctl", 1).add(a.seconds)
            self.res.s("status", "mlctl", 1).add(b.seconds)
            say(f"cli #{i + 1}: --help {a.seconds:.2f} s, status {b.seconds:.2f} s")

    def cold(self, n: int) -> None:
        for i in range(self.args.cold_repeat):
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
            trips.append(Ansible.round_trips(run))
