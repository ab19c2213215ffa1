"""Fixtures: a real cipherd dev server ($CIPHERD_BIN) and a real PostgreSQL.

PostgreSQL comes from $CIPHERD_TEST_POSTGRES_URL (scripts/test-all starts one);
without it, this conftest starts its own with scripts/pg-test-cluster and stops
it at the end. Each run works in a database of its own, dropped at the end.
Every process started here is stopped at session end, also when tests fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from cipherd import Client
from cipherd.testing import DevServer, PgCluster, sqlalchemy_url

REPO = Path(__file__).resolve().parents[3]
TOKEN = "root"


def cipherd_bin() -> str:
    binary = os.environ.get("CIPHERD_BIN")
    if not binary:
        raise pytest.UsageError("set CIPHERD_BIN to a built cipherd binary (scripts/test-all does)")
    return binary


@pytest.fixture(scope="session")
def cipherd_binary() -> str:
    return cipherd_bin()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    srv = DevServer(cipherd_bin(), TOKEN, tmp_path_factory.mktemp("cipherd"))
    yield srv
    srv.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[DevServer]:
    """A server of this test's own (for tests that seal it)."""
    srv = DevServer(cipherd_bin(), TOKEN, tmp_path / "cipherd")
    yield srv
    srv.stop()


class Counter:
    """Counts the HTTP requests a client sends (an httpx request event hook)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        #: Per request: did its body carry ``batch_input``?
        self.batched: list[bool] = []

    def __call__(self, request: httpx.Request) -> None:
        self.requests.append((request.method, request.url.path))
        self.batched.append(b'"batch_input"' in request.content)

    async def async_hook(self, request: httpx.Request) -> None:
        self(request)

    @property
    def count(self) -> int:
        return len(self.requests)

    def reset(self) -> None:
        self.requests.clear()
        self.batched.clear()


@pytest.fixture
def counter() -> Counter:
    return Counter()


@pytest.fixture
def client(server: DevServer, counter: Counter) -> Iterator[Client]:
    c = server.client(event_hooks={"request": [counter]})
    yield c
    c.close()


@pytest.fixture
def name() -> object:
    def make(prefix: str = "k") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:12]}"

    return make


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database of this run's own, as a libpq URL."""
    base = os.environ.get("CIPHERD_TEST_POSTGRES_URL")
    cluster = None
    if not base:
        cluster = PgCluster(REPO / "scripts" / "pg-test-cluster", tmp_path_factory.mktemp("pg"))
        base = cluster.url
    db = f"cipherd_py_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    head, _, _ = base.rpartition("/")
    try:
        yield f"{head}/{db}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        if cluster is not None:
            cluster.stop()


@pytest.fixture
def database_url(postgres_url: str) -> str:
    return sqlalchemy_url(postgres_url)
