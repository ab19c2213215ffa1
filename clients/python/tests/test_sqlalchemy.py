"""Encrypted columns in a real PostgreSQL, with a real cipherd.

Request counts are exact: they are what makes "batched" a checked property.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
from sqlalchemy import JSON, Date, Integer, LargeBinary, Numeric, String, create_engine, insert, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, defer, mapped_column

from cipherd import CipherdError, Client, InvalidCiphertext, PermissionDenied
from cipherd.sqlalchemy import Encrypted, install, reencrypt, set_default_client

BATCH = 200
RUN = uuid.uuid4().hex[:8]  # keys of this run's own: rotations here touch nothing else


class Base(DeclarativeBase):
    pass


class Customer(Base):
    """Two bound columns under two keys, one unbound column."""

    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(primary_key=True)
    ref: Mapped[str] = mapped_column(String(36), unique=True)
    email: Mapped[str] = mapped_column(Encrypted(f"py-customers-{RUN}", String, context="ref"))
    card: Mapped[str | None] = mapped_column(Encrypted(f"py-payments-{RUN}", String, context="ref"), nullable=True)
    note: Mapped[str | None] = mapped_column(Encrypted(f"py-notes-{RUN}", String), nullable=True)


class Account(Base):
    """Binding through a derived key's context; several value types."""

    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(primary_key=True)
    ref: Mapped[str] = mapped_column(String(36))
    iban: Mapped[str] = mapped_column(Encrypted(f"py-accounts-{RUN}", String, context="ref", binding="derived"))
    balance: Mapped[Decimal | None] = mapped_column(Encrypted(f"py-accounts-misc-{RUN}", Numeric), nullable=True)
    opened: Mapped[datetime.date | None] = mapped_column(Encrypted(f"py-accounts-misc-{RUN}", Date), nullable=True)
    pin: Mapped[int | None] = mapped_column(Encrypted(f"py-accounts-misc-{RUN}", Integer), nullable=True)
    blob: Mapped[bytes | None] = mapped_column(Encrypted(f"py-accounts-misc-{RUN}", LargeBinary), nullable=True)
    meta: Mapped[dict | None] = mapped_column(Encrypted(f"py-accounts-misc-{RUN}", JSON), nullable=True)


class Memo(Base):
    """Only an unbound column: works without install(), one request per value."""

    __tablename__ = "memos"
    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[str] = mapped_column(Encrypted(f"py-memos-{RUN}", String))


def customers(n: int, start: int = 0) -> list[Customer]:
    return [
        Customer(ref=str(uuid.uuid4()), email=f"user{i}@example.com", card=f"4111-0000-0000-{i:04d}")
        for i in range(start, start + n)
    ]


@pytest.fixture
def engine(database_url: str, client: Client) -> Iterator[Engine]:
    eng = create_engine(database_url)
    Base.metadata.drop_all(eng)
    Base.metadata.create_all(eng)
    install(eng, client, batch_size=BATCH)
    yield eng
    Base.metadata.drop_all(eng)
    eng.dispose()
    set_default_client(None)


def raw(engine: Engine, sql: str, **params) -> list:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).all()


def test_bulk_insert_and_select_are_batched(engine: Engine, counter) -> None:
    rows = customers(500)
    counter.reset()
    with Session(engine, expire_on_commit=False) as s:
        s.add_all(rows)
        s.commit()
    # 500 emails under one key + 500 cards under another, 200 per request:
    # ceil(500/200) * 2 = 6 requests (one per value would be 1000).
    assert counter.count == 6 and all(counter.batched)
    assert sorted(p for _, p in counter.requests) == (
        [f"/v1/transit/encrypt/py-customers-{RUN}"] * 3 + [f"/v1/transit/encrypt/py-payments-{RUN}"] * 3
    )
    counter.reset()
    with Session(engine, expire_on_commit=False) as s:
        loaded = s.scalars(select(Customer).order_by(Customer.id)).all()
    assert counter.count == 6
    assert [(c.ref, c.email, c.card) for c in loaded] == [(c.ref, c.email, c.card) for c in rows]


def test_database_holds_only_ciphertext(engine: Engine) -> None:
    with Session(engine, expire_on_commit=False) as s:
        s.add_all(customers(3))
        s.commit()
    for email, card in raw(engine, "SELECT email, card FROM customers"):
        assert email.startswith("vault:v") and card.startswith("vault:v")
        assert "example.com" not in email and "4111" not in card


def test_unbatched_mode_sends_one_request_per_value(database_url: str, client: Client, counter) -> None:
    eng = create_engine(database_url)
    Base.metadata.create_all(eng)
    try:
        install(eng, client, batch=False)
        counter.reset()
        with Session(eng, expire_on_commit=False) as s:
            s.add_all(customers(20))
            s.commit()
        assert counter.count == 40 and not any(counter.batched)  # single-mode requests
        counter.reset()
        with Session(eng, expire_on_commit=False) as s:
            assert len(s.scalars(select(Customer)).all()) == 20
        assert counter.count == 40 and not any(counter.batched)
    finally:
        Base.metadata.drop_all(eng)
        eng.dispose()


def test_core_executemany_insert_is_batched(engine: Engine, counter) -> None:
    table = Customer.__table__
    values = [{"ref": f"core-{i}", "email": f"c{i}@example.com", "note": f"n{i}"} for i in range(250)]
    counter.reset()
    with engine.begin() as conn:
        conn.execute(insert(table), values)
    assert counter.count == 4  # emails: ceil(250/200)=2; notes: 2; no cards (absent)
    with engine.connect() as conn:
        got = conn.execute(select(table.c.ref, table.c.email, table.c.note).order_by(table.c.id)).all()
    assert [tuple(r) for r in got] == [(v["ref"], v["email"], v["note"]) for v in values]


def test_orm_bulk_insert_is_batched(engine: Engine, counter) -> None:
    values = [{"ref": f"bulk-{i}", "email": f"b{i}@example.com", "card": f"c{i}"} for i in range(450)]
    counter.reset()
    with Session(engine, expire_on_commit=False) as s:
        s.execute(insert(Customer), values)
        s.commit()
    assert counter.count == 6  # ceil(450/200) per key, two keys
    with Session(engine, expire_on_commit=False) as s:
        got = s.execute(select(Customer.ref, Customer.email, Customer.card).order_by(Customer.id)).all()
    assert [tuple(r) for r in got] == [(v["ref"], v["email"], v["card"]) for v in values]


def test_unbound_column_works_without_install(database_url: str, client: Client, counter) -> None:
    eng = create_engine(database_url)
    Base.metadata.create_all(eng)
    set_default_client(client)
    try:
        counter.reset()
        with Session(eng, expire_on_commit=False) as s:
            s.add_all([Memo(body=f"memo {i}") for i in range(3)])
            s.commit()
        assert counter.count == 3 and not any(counter.batched)
        assert all(r[0].startswith("vault:v") for r in raw(eng, "SELECT body FROM memos"))
        with Session(eng, expire_on_commit=False) as s:
            assert [m.body for m in s.scalars(select(Memo).order_by(Memo.id))] == ["memo 0", "memo 1", "memo 2"]
        assert counter.count == 6
    finally:
        Base.metadata.drop_all(eng)
        eng.dispose()
        set_default_client(None)


def test_ciphertext_copied_to_another_row_fails_to_open(engine: Engine) -> None:
    a, b = customers(2)
    with Session(engine, expire_on_commit=False) as s:
        s.add_all([a, b])
        s.commit()
    with engine.begin() as conn:
        conn.execute(text("UPDATE customers SET email = (SELECT email FROM customers WHERE ref = :a) WHERE ref = :b"),
                     {"a": a.ref, "b": b.ref})
    with Session(engine, expire_on_commit=False) as s:
        assert s.scalars(select(Customer).where(Customer.ref == a.ref)).one().email == a.email
        with pytest.raises(InvalidCiphertext):
            s.scalars(select(Customer).where(Customer.ref == b.ref)).one()


def test_changing_the_binding_column_reencrypts(engine: Engine) -> None:
    (c,) = customers(1)
    with Session(engine, expire_on_commit=False) as s:
        s.add(c)
        s.commit()
        before = raw(engine, "SELECT email FROM customers")[0][0]
        c.ref = "moved-" + c.ref[:20]
        s.commit()
    after = raw(engine, "SELECT email FROM customers")[0][0]
    assert after != before
    with Session(engine, expire_on_commit=False) as s:
        assert s.scalars(select(Customer)).one().email == c.email


def test_updating_only_the_value_keeps_the_binding(engine: Engine, counter) -> None:
    rows = customers(5)
    with Session(engine, expire_on_commit=False) as s:
        s.add_all(rows)
        s.commit()
    with Session(engine, expire_on_commit=False) as s:
        loaded = s.scalars(select(Customer).order_by(Customer.id)).all()
        for obj in loaded:
            obj.email = obj.email.upper()
        counter.reset()
        s.commit()
        assert counter.requests  # the new values were encrypted
    with Session(engine, expire_on_commit=False) as s:
        assert [c.email for c in s.scalars(select(Customer).order_by(Customer.id))] == [
            r.email.upper() for r in rows
        ]


def test_bound_column_without_its_binding_is_refused(engine: Engine) -> None:
    with Session(engine, expire_on_commit=False) as s:
        s.add_all(customers(1))
        s.commit()
    with engine.connect() as conn:
        with pytest.raises(CipherdError, match="bound to 'ref'"):
            conn.execute(select(Customer.__table__.c.email)).all()
    with Session(engine, expire_on_commit=False) as s:
        s.add(Customer(email="no-ref@example.com"))  # ref missing at insert time
        with pytest.raises(CipherdError, match="has no value"):
            s.flush()


def test_binding_found_by_primary_key_when_not_selected(engine: Engine, counter) -> None:
    rows = customers(3)
    with Session(engine) as s:  # default expire_on_commit: attributes reload after commit
        s.add_all(rows)
        s.commit()
        assert [c.email for c in rows] == [f"user{i}@example.com" for i in range(3)]
        s.expire(rows[0], ["email"])  # reloads email alone (with the primary key)
        assert rows[0].email == "user0@example.com"
    with Session(engine) as s:
        loaded = s.scalars(select(Customer).options(defer(Customer.ref)).order_by(Customer.id)).all()
        assert [c.card for c in loaded] == [f"4111-0000-0000-{i:04d}" for i in range(3)]


def test_install_twice_keeps_one_set_of_hooks(engine: Engine, client: Client, counter) -> None:
    install(engine, client, batch_size=BATCH)  # a second time
    rows = customers(10)
    counter.reset()
    with Session(engine, expire_on_commit=False) as s:
        s.add_all(rows)
        s.commit()
    assert counter.count == 2
    counter.reset()
    with Session(engine) as s:
        assert [c.email for c in s.scalars(select(Customer).order_by(Customer.id))] == [r.email for r in rows]
    assert counter.count == 2


def test_server_errors_surface_through_sqlalchemy(engine: Engine, server) -> None:
    with Session(engine, expire_on_commit=False) as s:
        s.add_all(customers(2))
        s.commit()
    with Client(server.url, token="not-a-token") as bad:
        install(engine, bad)
        with Session(engine) as s:
            with pytest.raises(PermissionDenied):
                s.scalars(select(Customer)).all()
            s.add_all(customers(2, start=2))
            with pytest.raises(PermissionDenied):
                s.flush()


def test_nulls_stay_null(engine: Engine, counter) -> None:
    counter.reset()
    with Session(engine, expire_on_commit=False) as s:
        s.add(Customer(ref="r-null", email="e@example.com", card=None, note=None))
        s.commit()
    assert counter.count == 1  # only the email
    assert raw(engine, "SELECT card, note FROM customers") == [(None, None)]
    with Session(engine, expire_on_commit=False) as s:
        c = s.scalars(select(Customer)).one()
        assert (c.card, c.note) == (None, None)


def test_derived_binding_and_value_types(engine: Engine) -> None:
    acct = Account(
        ref="acct-1", iban="DE89 3704 0044 0532 0130 00", balance=Decimal("1234.56"),
        opened=datetime.date(2024, 2, 29), pin=4321, blob=b"\x00\xff", meta={"tier": "gold", "n": [1, 2]},
    )
    other = Account(ref="acct-2", iban="FR76 3000 6000 0112 3456 7890 189")
    with Session(engine, expire_on_commit=False) as s:
        s.add_all([acct, other])
        s.commit()
    with Session(engine, expire_on_commit=False) as s:
        got = s.scalars(select(Account).where(Account.ref == "acct-1")).one()
        assert (got.iban, got.balance, got.opened, got.pin, got.blob, got.meta) == (
            acct.iban, acct.balance, acct.opened, acct.pin, acct.blob, acct.meta)
    with engine.begin() as conn:
        conn.execute(text("UPDATE accounts SET iban = (SELECT iban FROM accounts WHERE ref = 'acct-1') "
                          "WHERE ref = 'acct-2'"))
    with Session(engine, expire_on_commit=False) as s:
        with pytest.raises(InvalidCiphertext):
            s.scalars(select(Account).where(Account.ref == "acct-2")).one()


@pytest.mark.parametrize("model,column", [(Customer, "email"), (Account, "iban")], ids=["aad", "derived"])
def test_rotation_then_old_rows_decrypt_and_reencrypt(engine: Engine, client: Client, model, column) -> None:
    key = model.__table__.c[column].type.key
    table = model.__table__
    make = customers if model is Customer else (
        lambda n, start=0: [Account(ref=f"a{i}", iban=f"IBAN{i}") for i in range(start, start + n)])
    first = make(30)
    with Session(engine, expire_on_commit=False) as s:
        s.add_all(first)
        s.commit()
    assert client.rotate_key(key)["latest_version"] >= 2
    latest = client.read_key(key)["latest_version"]
    second = make(10, start=30)
    with Session(engine, expire_on_commit=False) as s:
        s.add_all(second)
        s.commit()
    versions = sorted({r[0].split(":")[1] for r in raw(engine, f"SELECT {column} FROM {table.name}")})
    assert len(versions) == 2
    with Session(engine, expire_on_commit=False) as s:  # old (v1) and new rows all open
        got = [getattr(o, column) for o in s.scalars(select(model).order_by(model.id))]
    assert got == [getattr(o, column) for o in first + second]
    with engine.begin() as conn:
        assert reencrypt(conn, table.c[column], chunk_size=16) == 30
    assert {r[0].split(":")[1] for r in raw(engine, f"SELECT {column} FROM {table.name}")} == {f"v{latest}"}
    client.configure_key(key, min_decryption_version=latest)  # old versions now refused
    try:
        with Session(engine, expire_on_commit=False) as s:
            got = [getattr(o, column) for o in s.scalars(select(model).order_by(model.id))]
        assert got == [getattr(o, column) for o in first + second]
    finally:
        client.configure_key(key, min_decryption_version=1)


async def test_async_engine_with_async_client(database_url: str, server, counter) -> None:
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    from cipherd import AsyncClient

    eng = create_async_engine(database_url)
    try:
        async with AsyncClient(server.url, token=server.token, event_hooks={"request": [counter.async_hook]}) as ac:
            install(eng, ac, batch_size=BATCH)
            async with eng.begin() as conn:
                await conn.run_sync(Base.metadata.drop_all)
                await conn.run_sync(Base.metadata.create_all)
            rows = customers(300)
            want = [(c.ref, c.email, c.card) for c in rows]
            counter.reset()
            async with AsyncSession(eng) as s:
                s.add_all(rows)
                await s.commit()
            assert counter.count == 4  # ceil(300/200) per key, two keys
            counter.reset()
            async with AsyncSession(eng) as s:
                got = (await s.scalars(select(Customer).order_by(Customer.id))).all()
                assert [(c.ref, c.email, c.card) for c in got] == want
            assert counter.count == 4
            async with eng.begin() as conn:
                await conn.run_sync(Base.metadata.drop_all)
    finally:
        await eng.dispose()
        set_default_client(None)
