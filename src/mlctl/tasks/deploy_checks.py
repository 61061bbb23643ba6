"""The remote preflight of a deploy: from each host's facts, before anything changes.

A server of another environment, one not set up, too little disk, the wrong Python, and every
variable the settings need but nobody sets: each is one line naming the fix.
"""

from __future__ import annotations

from mlctl.config import pyversion
from mlctl.core.errors import PreflightFailed
from mlctl.project import settings_scan, source
from mlctl.tasks import hoststeps, serving
from mlctl.tasks import setup_hosts as setup

MIN_FREE = 300 * 1024 * 1024  # a venv build needs about this much


class Preflight:
    """Checks of `deploy.Deploy` (its state: sess, cfg, src)."""

    def preflight(self, host) -> None:
        facts = host.facts  # gathered by `reach`
        name = self.cfg.name
        if facts["marker"] and facts["marker"] != name:
            raise PreflightFailed(
                f"{host.name}: this server belongs to {facts['marker']!r}, " f"not {name!r}",
                "check the inventory's hosts",
            )
        if not facts["env_file"] and not self.cfg.local:
            raise PreflightFailed(
                f"{host.name}: not set up (no shared .env)", f"run `mlctl {name} setup` first"
            )
        pyversion.check(host.name, facts.get("python_version", ""), self.python_need())
        if facts["free_bytes"] < MIN_FREE:
            free = facts["free_bytes"] // (1024 * 1024)
            raise PreflightFailed(
                f"{host.name}: only {free} MiB free in {self.cfg.deploy_to}",
                f"free at least {MIN_FREE // (1024 * 1024)} MiB",
            )
        if self.cfg.service == "pidfile":
            hoststeps.check_port(host)  # in a dry run, planned like every command
        else:
            serving.require_slots(host)

    def python_need(self) -> tuple[str, str] | None:
        """The project's Python constraint: the inventory's, else the commit's own files."""
        return pyversion.needed(self.cfg.project["requires_python"], self.src.text)

    def require_settings_env(self) -> None:
        """Every variable the settings read without a default (through their imports, at this
        commit) is set: in the inventory's env:/secrets: or each host's shared .env. All the
        missing ones are named at once, before anything changes on a host."""
        needed = settings_env_needed(self.src, self.cfg.project["settings_module"])
        if not needed:
            return
        inventory = {k for k, v in setup.inventory_env(self.cfg).items() if v != ""}
        on_hosts = {h.name: set(h.facts.get("env_keys", [])) for h in self.sess.hosts}
        missing = [
            n for n in needed if n not in inventory and any(n not in k for k in on_hosts.values())
        ]
        if missing:
            raise PreflightFailed(
                f"missing environment variables for the settings: {', '.join(missing)}",
                "set them under env:/secrets: in environments.yaml",
            )
        for host, keys in on_hosts.items():
            unwritten = [n for n in needed if n not in keys]
            if unwritten and not self.cfg.local:  # a local deploy writes its .env each time
                raise PreflightFailed(
                    f"{host}: the shared .env lacks {', '.join(unwritten)} (set in the "
                    "inventory since the last setup)",
                    f"run `mlctl {self.cfg.name} setup` to write them",
                )


def settings_env_needed(src: source.Source, settings_module: str) -> list[str]:
    """Variables the settings module at this commit reads without a default, unconditionally."""
    tree = source.git(src.repo, "ls-tree", "-r", "--name-only", src.commit, "--", src.subdir or ".")
    prefix = f"{src.subdir.strip('/')}/" if src.subdir else ""
    files = {p.removeprefix(prefix) for p in tree.splitlines()}

    def read(rel: str) -> str | None:
        return src.file(rel).decode(errors="replace") if rel in files else None

    found = settings_scan.scan(read, settings_module)
    skip = found.provided | settings_scan.WRITTEN_BY_MLCTL
    return [n for n in found.required_names() if n not in skip]
