"""Where things live under DEPLOY_TO on a server, in one place.

releases/<id>/        code of one commit, static files, REVISION, MANIFEST, .venv -> venvs/<hash>
venvs/<hash>          -> <hash>.<id>/: a virtualenv keyed by requirements hash, shared by
                      releases, built in <hash>.<id>/ and linked into place once complete
wheelhouse/<hash>/    wheels uploaded once per requirements hash (unpacked aside, renamed)
shared/               .env (0640 root:APP_USER), media/, logs/ — linked into releases
current -> releases/<id>
slots/blue, slots/green  -> ../releases/<id>: the release each app slot runs (see AppSlots)
backups/db/<id>-{before,after}-migrate.<ext>
.mlctl/lock/          the deploy lock (atomic mkdir) with holder.json and its heartbeat
.mlctl/history.jsonl  one JSON line per deploy/rollback event
.mlctl/releases/<id>.json  release metadata: status (building|partial|good|bad), commit, who, when
.mlctl/marker         the environment this server belongs to
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mlctl.core.errors import UsageError

RELEASE_ID = re.compile(r"^[0-9]{14}-[0-9a-f]{7,40}$")


def check_release_id(value: str) -> str:
    if not RELEASE_ID.match(value or ""):
        raise UsageError(f"invalid release id {value!r} (expected YYYYmmddHHMMSS-<commit>)")
    return value


def check_shared_name(name: str) -> str:
    """A shared file or dir is linked (after an `rm -rf`) in a release: a plain relative name."""
    from mlctl.config.validation import shared_problem

    if shared_problem(name):
        raise UsageError(f"shared entry {name!r} must be a relative name inside the release")
    return name


@dataclass(frozen=True)
class Layout:
    root: str

    @classmethod
    def of(cls, cfg) -> Layout:
        """The layout of an environment's DEPLOY_TO."""
        return cls(cfg["deploy_to"])

    def _p(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    @property
    def releases(self) -> str:
        return self._p("releases")

    def release(self, rid: str) -> str:
        return self._p("releases", check_release_id(rid))

    @property
    def current(self) -> str:
        return self._p("current")

    @property
    def venvs(self) -> str:
        return self._p("venvs")

    def venv(self, req_hash: str) -> str:
        return self._p("venvs", req_hash)

    def wheelhouse(self, req_hash: str) -> str:
        return self._p("wheelhouse", req_hash)

    @property
    def shared(self) -> str:
        return self._p("shared")

    @property
    def env_file(self) -> str:
        return self._p("shared", ".env")

    @property
    def backups(self) -> str:
        return self._p("backups", "db")

    @property
    def state(self) -> str:
        return self._p(".mlctl")

    @property
    def lock(self) -> str:
        return self._p(".mlctl", "lock")

    @property
    def history(self) -> str:
        return self._p(".mlctl", "history.jsonl")

    @property
    def metas(self) -> str:
        return self._p(".mlctl", "releases")

    def meta(self, rid: str) -> str:
        return self._p(".mlctl", "releases", check_release_id(rid) + ".json")

    @property
    def marker(self) -> str:
        return self._p(".mlctl", "marker")

    @property
    def slots(self) -> str:
        return self._p("slots")

    def slot(self, name: str) -> str:
        return self._p("slots", name)

    @property
    def run(self) -> str:
        """Pidfile and socket directory of the local (pidfile) service."""
        return self._p("run")


def unit_name(project: str) -> str:
    return f"gunicorn-{project}"


SLOTS = ("blue", "green")


@dataclass(frozen=True)
class AppSlots:
    """The two app slots of a project on a server: systemd template instances
    gunicorn-<project>@blue|green, each with its own socket; nginx's upstream for the site is one
    included file naming the live slot's socket."""

    project: str

    @property
    def base(self) -> str:
        return unit_name(self.project)

    def unit(self, slot: str) -> str:
        return f"{self.base}@{slot}"

    def socket(self, slot: str) -> str:
        return f"/run/{self.base}-{slot}.sock"

    @property
    def upstream_file(self) -> str:
        return f"/etc/nginx/mlctl/{self.project}.upstream.conf"

    @property
    def static_file(self) -> str:
        """Included in the site's /static/ location: the live slot's staticfiles/."""
        return f"/etc/nginx/mlctl/{self.project}.static.conf"

    def retire_unit(self, slot: str) -> str:
        """The transient timer (and its service) that stops a slot left by a cutover."""
        return f"mlctl-retire-{self.base}-{slot}"

    @staticmethod
    def other(slot: str) -> str:
        return SLOTS[1] if slot == SLOTS[0] else SLOTS[0]


def sqlite_path(cfg) -> str:
    """The SQLite file: `database.name` if absolute, else under shared/."""
    name = cfg["database"]["name"]
    return name if name.startswith("/") else f"{Layout(cfg['deploy_to']).shared}/{name}"
