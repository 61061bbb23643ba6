"""setup's TLS files, read on this machine: the operator's certificate and key (`tls: files`) and
the extra CA (`tls.ca_file`), checked before any host changes: a key that does not serve the
certificate stops setup with one line, so nginx never sees the pair."""

from __future__ import annotations

from pathlib import Path

from mlctl.commands import tls as tlscmd
from mlctl.config.validation import origin
from mlctl.core.errors import InventoryError


def uploads(cfg) -> dict[str, bytes]:
    """Host path -> content of the TLS files setup uploads (empty with `tls: off`)."""
    t = cfg.tls
    if not t.on:
        return {}
    paths = tlscmd.cert_paths(cfg.project["name"], t)
    out = {}
    if t.mode == "files":
        cert, key = read(cfg, "cert"), read(cfg, "key")
        problem = tlscmd.key_problem(cert, key)
        if problem:
            where = origin(cfg.inventory, cfg.sources, "tls.key")
            raise InventoryError(f"{where}: {problem}; nginx was not changed")
        out.update({paths.cert: cert, paths.key: key})
    if paths.ca:
        out[paths.ca] = read(cfg, "ca_file")
    return out


def read(cfg, key: str) -> bytes:
    path = getattr(cfg.tls, key)
    try:
        return Path(path).read_bytes()
    except OSError as e:
        where = origin(cfg.inventory, cfg.sources, f"tls.{key}")
        raise InventoryError(f"{where}: {path}: {e.strerror}") from None
