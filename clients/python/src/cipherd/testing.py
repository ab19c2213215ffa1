"""Helpers to run a throwaway cipherd dev server (tests, examples, benchmarks).

>>> with DevServer("/path/to/cipherd") as server:
...     client = server.client()

The server listens on 127.0.0.1 port 0; its REST address is read from the
``cipherd listening rest=...`` line it prints, with a bounded wait. ``stop()``
terminates it (then kills it if it does not exit) and waits for it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from .client import Client

START_DEADLINE = 60.0


def _pdeathsig() -> Any:
    """Linux: the kernel sends SIGTERM to the server if this process dies first."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes
        import signal

        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except Exception:
        return None
    sigterm = int(signal.SIGTERM)

    def preexec() -> None:
        prctl(1, sigterm)  # PR_SET_PDEATHSIG

    return preexec


class DevServer:
    """``cipherd server --dev`` with a known root token, on loopback ports chosen by the OS."""

    def __init__(self, binary: str, token: str = "root", workdir: str | os.PathLike[str] | None = None,
                 extra_args: list[str] | None = None) -> None:
        if not os.access(binary, os.X_OK):
            raise RuntimeError(f"cipherd binary {binary!r} is not executable")
        self.token = token
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="cipherd-dev-")
        self.workdir = Path(workdir or self._tmp.name)  # type: ignore[union-attr]
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "cipherd.stderr.log"
        self._log = open(self.log_path, "ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "CIPHERD_"))}
        args = [binary, "server", "--dev", "--dev-root-token", token,
                "--listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0", *(extra_args or [])]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL,
            env=env, cwd=self.workdir, preexec_fn=_pdeathsig(),
        )
        self.stdout: list[str] = []
        found: dict[str, str] = {}
        ready = threading.Event()

        def pump() -> None:
            assert self.proc.stdout is not None  # invariant: stdout=PIPE above
            for raw in self.proc.stdout:  # keep draining so the server never blocks on a full pipe
                line = raw.decode(errors="replace").rstrip("\n")
                self.stdout.append(line)
                if "cipherd listening rest=" in line and not ready.is_set():
                    found["url"] = line.split("rest=", 1)[1].split()[0]
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(START_DEADLINE) or "url" not in found:
            self.stop()
            raise RuntimeError(f"cipherd did not print its listen line; stdout={self.stdout}\n{self.log()}")
        self.url = found["url"]

    def client(self, **kwargs: Any) -> Client:
        kwargs.setdefault("token", self.token)
        return Client(self.url, **kwargs)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return "<no log>"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> DevServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class PgCluster:
    """A throwaway PostgreSQL from the repository's ``scripts/pg-test-cluster``."""

    def __init__(self, script: str | os.PathLike[str], directory: str | os.PathLike[str]) -> None:
        self.script = str(script)
        self.directory = str(directory)
        out = subprocess.run([self.script, "start", self.directory], check=True, capture_output=True, text=True,
                             timeout=900)
        self.url = out.stdout.strip().splitlines()[-1]

    def stop(self) -> None:
        subprocess.run([self.script, "stop", self.directory], check=False, capture_output=True, timeout=120)

    def __enter__(self) -> PgCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def sqlalchemy_url(url: str) -> str:
    """``postgres://...`` -> ``postgresql+psycopg://...`` (psycopg 3)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url
