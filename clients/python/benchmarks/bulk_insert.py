#!/usr/bin/env python3
"""Bulk insert throughput with two encrypted columns: batched vs unbatched.

Each round inserts ``--rows`` rows (10,000 by default) into an empty table with
``session.add_all()`` + commit, once with batch requests (``install(engine)``)
and once with one request per value (``install(engine, batch=False)``); the two
modes alternate within every round (which goes first alternates too), so drift
on the machine affects both alike. Prints rows/s per round, the medians, and
their ratio, as a Markdown table.

    python clients/python/benchmarks/bulk_insert.py --cipherd-bin target/release/cipherd

Starts a cipherd dev server from ``--cipherd-bin`` (else uses ``CIPHERD_ADDR`` /
``CIPHERD_TOKEN``) and a throwaway PostgreSQL from ``scripts/pg-test-cluster``
(else uses ``--database-url``).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

from sqlalchemy import String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from cipherd import Client
from cipherd.sqlalchemy import Encrypted, install
from cipherd.testing import DevServer, PgCluster, sqlalchemy_url

REPO = Path(__file__).resolve().parents[3]


class Base(DeclarativeBase):
    pass


class Row(Base):
    __tablename__ = "bench_customers"
    id: Mapped[int] = mapped_column(primary_key=True)
    ref: Mapped[str] = mapped_column(String(36))
    email: Mapped[str] = mapped_column(Encrypted("bench-customers", String, context="ref"))
    card: Mapped[str] = mapped_column(Encrypted("bench-payments", String, context="ref"))


class PlainRow(Base):
    """The same row without encryption: what the database and the ORM cost alone."""

    __tablename__ = "bench_customers_plain"
    id: Mapped[int] = mapped_column(primary_key=True)
    ref: Mapped[str] = mapped_column(String(36))
    email: Mapped[str] = mapped_column(String)
    card: Mapped[str] = mapped_column(String)


MODES = ("batched", "unbatched", "no encryption")


def one_round(url: str, client: Client, rows: int, mode: str, counter: list[object]) -> tuple[float, int]:
    engine = create_engine(url)
    if mode != "no encryption":
        install(engine, client, batch=mode == "batched")
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    model = PlainRow if mode == "no encryption" else Row
    objects = [model(ref=str(uuid.uuid4()), email=f"customer{i}@example.com", card=f"4111 1111 1111 {i % 10000:04d}")
               for i in range(rows)]
    counter.clear()
    start = time.perf_counter()
    with Session(engine) as s:
        s.add_all(objects)
        s.commit()
    took = time.perf_counter() - start
    requests = len(counter)
    Base.metadata.drop_all(engine)
    engine.dispose()
    return rows / took, requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cipherd-bin")
    parser.add_argument("--database-url")
    args = parser.parse_args()

    with ExitStack() as stack:
        if args.cipherd_bin:
            server = stack.enter_context(DevServer(args.cipherd_bin))
            addr, token = server.url, server.token
        else:
            addr, token = None, None
        if args.database_url:
            db = args.database_url
        else:
            pg_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-pg-"))
            db = stack.enter_context(PgCluster(REPO / "scripts" / "pg-test-cluster", Path(pg_dir) / "pg")).url
        counter: list[object] = []
        client = stack.enter_context(Client(addr, token, event_hooks={"request": [counter.append]}))
        url = sqlalchemy_url(db)
        one_round(url, client, min(args.rows, 500), "batched", counter)  # warm-up: keys, connections
        results: dict[str, list[float]] = {m: [] for m in MODES}
        requests: dict[str, int] = {}
        print("| round | mode | rows | cipherd requests | rows/s |\n|---|---|---|---|---|")
        for r in range(args.rounds):
            order = MODES if r % 2 == 0 else MODES[::-1]
            for mode in order:
                rate, requests[mode] = one_round(url, client, args.rows, mode, counter)
                results[mode].append(rate)
                print(f"| {r + 1} | {mode} | {args.rows} | {requests[mode]} | {rate:,.0f} |", flush=True)
        med = {m: statistics.median(v) for m, v in results.items()}
        print("\nmedians: " + ", ".join(f"{m} {med[m]:,.0f} rows/s ({requests[m]} requests)" for m in MODES))
        print(f"batched / unbatched = {med['batched'] / med['unbatched']:.1f}x; "
              f"batched / no encryption = {med['batched'] / med['no encryption']:.2f}")


if __name__ == "__main__":
    main()
