"""The release's virtualenv: reused when one for the same install set exists on the host, else
built there from an uploaded install set (and wheelhouse, when `build.install` is local)."""

from __future__ import annotations

from mlctl.commands import release as relcmd
from mlctl.core import console
from mlctl.core.errors import RemoteCommandFailed
from mlctl.core.shell import mask
from mlctl.project import installset, pipfail, wheelhouse


class VenvBuild:
    """The venv steps of `deploy.Deploy` (its state: sess, cfg, src, lay, rid, dry)."""

    def install_set(self):
        iset = self.src.install_set(self.cfg.project["requirements"])
        return installset.with_server(iset, self.cfg.build.server)

    def venv_hash(self, host) -> str:
        facts = host.facts
        return self.install_set().key(facts["python"], facts["platform"])

    def existing_venv(self, host) -> str | None:
        """The complete venv for these requirements on this host, if there is one."""
        req_hash = self.venv_hash(host)
        if req_hash not in host.facts.get("venvs", []):
            return None
        console.step(host.name, f"venv {req_hash} reused")
        return self.lay.venv(req_hash)

    def build_venv(self, host) -> str:
        facts = host.facts
        iset = self.install_set()
        req_hash = self.venv_hash(host)
        venv = self.lay.venv(req_hash)
        console.step(host.name, f"building venv {req_hash} from {iset.origin}")
        # The install set goes up with the wheels (or alone, when the host resolves them):
        # pip installs that copy, includes and generated lock exports alike.
        wh = self.lay.wheelhouse(req_hash)
        offline = self.cfg.build.install == "local"
        payload = iset.tarball()
        if offline and not self.dry:  # wheels are built here; a dry run only shows the upload
            local = wheelhouse.build(
                req_hash, iset, facts["python"], facts["machine"], facts["libc"]
            )
            payload = wheelhouse.tarball(local, tuple(sorted(iset.files)))
        receive = relcmd.receive_wheelhouse(wh, self.rid)
        host.stream("upload wheelhouse" if offline else "upload requirements", receive, payload)
        find_links = wh if offline else None
        requirements = f"{wh}/{iset.top}"
        server = f"{wh}/{iset.extra}" if iset.extra else None
        cmd = relcmd.build_venv(
            self.cfg.python, venv, find_links, requirements, self.rid, server, iset.complete
        )
        r = host.run("build venv", cmd, warn=True)
        if not r.ok:  # pip's last line is a "note:"; say which package and why instead
            why = pipfail.reason(mask(r.stderr or r.stdout, self.sess.secrets))
            raise RemoteCommandFailed(host.name, "build venv", r.code, why)
        return venv
