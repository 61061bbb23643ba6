"""A bounded, steady client for the zero-downtime tests: a few threads request the site's pages
through nginx at a fixed rate and record every answer (status, the release /healthz names, the
error of a request that got no answer)."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

STATIC = re.compile(r"/static/[^\"'\s>]+\.css")


@dataclass(frozen=True)
class Answer:
    path: str
    status: int | None
    release: str | None
    error: str
    seconds: float


def get(url: str, timeout: float) -> tuple[int | None, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 — the test's host
            return r.status, r.read().decode(errors="replace"), ""
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace"), ""
    except Exception as e:  # noqa: BLE001 — no answer is what the test counts
        return None, "", f"{type(e).__name__}: {e}"


def static_path(address: str) -> str:
    """The hashed URL of the stylesheet the site's root page links to."""
    _, body, _ = get(f"http://{address}/", 10)
    found = STATIC.search(body)
    assert found, f"no stylesheet link on http://{address}/"
    return found.group(0)


class Load:
    """`with Load(address) as load:` — requests /, /healthz and a static file while the block
    runs, `rate` requests a second in all, from `threads` threads."""

    def __init__(self, address: str, rate: float = 30, threads: int = 3, timeout: float = 10):
        self.base = f"http://{address}"
        self.paths = ["/", "/healthz", static_path(address)]
        self.interval = threads / rate
        self.threads = threads
        self.timeout = timeout
        self.answers: list[Answer] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.workers: list[threading.Thread] = []

    def __enter__(self) -> Load:
        for i in range(self.threads):
            t = threading.Thread(target=self.loop, args=(i,), daemon=True)
            t.start()
            self.workers.append(t)
        time.sleep(0.5)  # answers from before the change too
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(0.5)  # and from after it
        self.stop.set()
        for t in self.workers:
            t.join(self.timeout + 5)

    def loop(self, offset: int) -> None:
        n = offset
        while not self.stop.is_set():
            path = self.paths[n % len(self.paths)]
            n += 1
            started = time.monotonic()
            status, body, error = get(self.base + path, self.timeout)
            release = release_of(body) if path == "/healthz" else None
            answer = Answer(path, status, release, error, time.monotonic() - started)
            with self.lock:
                self.answers.append(answer)
            self.stop.wait(max(0.0, self.interval - answer.seconds))

    def failed(self) -> list[Answer]:
        """Requests without an answer, or answered with a server error."""
        return [a for a in self.answers if a.status is None or a.status >= 500]

    def releases(self) -> list[str]:
        """The releases /healthz named, in order, each once."""
        seen = [a.release for a in self.answers if a.release]
        return list(dict.fromkeys(seen))

    def summary(self) -> str:
        counts: dict = {}
        for a in self.answers:
            counts[(a.path, a.status)] = counts.get((a.path, a.status), 0) + 1
        return f"{len(self.answers)} requests: {counts}; failed: {self.failed()[:5]}"


def release_of(body: str) -> str | None:
    try:
        return json.loads(body).get("release")
    except (ValueError, AttributeError):
        return None
