#!/usr/bin/env python3
"""Customer records with encrypted columns in PostgreSQL.

Creates a table ``example_customers`` whose ``email`` and ``card`` columns are
encrypted by cipherd (each bound to the row's ``ref``), inserts ``--rows``
customers (10,000 by default) in one ORM flush, reads them back and checks them,
rotates both keys, re-encrypts the rows to the new versions and checks again.

    export CIPHERD_ADDR=http://127.0.0.1:8200 CIPHERD_TOKEN=root
    python examples/customers.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

The database URL may also come from ``DATABASE_URL``. Exits non-zero if a value
read back differs from what was written.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid

from sqlalchemy import String, create_engine, func, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from cipherd import CipherdError, Client
from cipherd.sqlalchemy import Encrypted, install, reencrypt
from cipherd.testing import sqlalchemy_url

EMAIL_KEY = "example-customers"
CARD_KEY = "example-payments"


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "example_customers"
    id: Mapped[int] = mapped_column(primary_key=True)
    ref: Mapped[str] = mapped_column(String(36), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(Encrypted(EMAIL_KEY, String, context="ref"))
    card: Mapped[str] = mapped_column(Encrypted(CARD_KEY, String, context="ref"))


def expected(i: int) -> tuple[str, str, str]:
    return f"Customer {i}", f"customer{i}@example.com", f"4111 1111 {i // 10000:04d} {i % 10000:04d}"


def check(engine, rows: int) -> None:
    with Session(engine) as s:
        loaded = s.scalars(select(Customer).order_by(Customer.id)).all()
    got = [(c.name, c.email, c.card) for c in loaded]
    want = [expected(i) for i in range(rows)]
    if got != want:
        bad = next(i for i, (g, w) in enumerate(zip(got, want)) if g != w) if len(got) == len(want) else "count"
        sys.exit(f"mismatch reading back rows (first at {bad})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    if not args.database_url:
        parser.error("--database-url or DATABASE_URL is required")

    requests: list[object] = []
    client = Client(event_hooks={"request": [requests.append]})
    engine = create_engine(sqlalchemy_url(args.database_url))
    install(engine, client)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)

    start = time.perf_counter()
    with Session(engine) as s:
        s.add_all(Customer(ref=str(uuid.uuid4()), name=n, email=e, card=c)
                  for n, e, c in map(expected, range(args.rows)))
        s.commit()
    took = time.perf_counter() - start
    print(f"inserted {args.rows} rows in {took:.2f} s ({args.rows / took:,.0f} rows/s), "
          f"{len(requests)} cipherd requests")

    requests.clear()
    start = time.perf_counter()
    check(engine, args.rows)
    print(f"read back {args.rows} rows in {time.perf_counter() - start:.2f} s, {len(requests)} cipherd requests")

    with engine.connect() as conn:
        sample = conn.execute(text("SELECT email, card FROM example_customers ORDER BY id LIMIT 1")).one()
    print(f"stored: email={sample[0][:24]}... card={sample[1][:24]}...")

    versions = {}
    for key in (EMAIL_KEY, CARD_KEY):
        versions[key] = client.rotate_key(key)["latest_version"]
        print(f"rotated {key} to version {versions[key]}")
    check(engine, args.rows)
    print("old rows still decrypt after the rotation")
    with engine.begin() as conn:
        moved = [reencrypt(conn, Customer.email), reencrypt(conn, Customer.card)]
    print(f"re-encrypted {moved[0]} emails and {moved[1]} cards to the new versions")
    with engine.connect() as conn:
        stale = conn.execute(
            select(func.count()).select_from(Customer.__table__).where(
                text("email NOT LIKE :e OR card NOT LIKE :c")
            ), {"e": f"vault:v{versions[EMAIL_KEY]}:%", "c": f"vault:v{versions[CARD_KEY]}:%"}
        ).scalar_one()
    if stale:
        sys.exit(f"{stale} rows not on the latest key version")
    check(engine, args.rows)
    print("all rows on the latest version and read back intact")
    Base.metadata.drop_all(engine)
    engine.dispose()
    client.close()


if __name__ == "__main__":
    try:
        main()
    except CipherdError as exc:
        sys.exit(f"cipherd: {type(exc).__name__}: {exc}")
