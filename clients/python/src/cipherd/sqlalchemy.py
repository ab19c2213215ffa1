"""Encrypted SQLAlchemy columns, batched.

::

    from cipherd import Client
    from cipherd.sqlalchemy import Encrypted, install

    class Customer(Base):
        __tablename__ = "customers"
        id: Mapped[int] = mapped_column(primary_key=True)
        ref: Mapped[str] = mapped_column(String(36), unique=True)  # known before INSERT
        email: Mapped[str] = mapped_column(Encrypted("customers", String, context="ref"))
        card: Mapped[str] = mapped_column(Encrypted("payments", String, context="ref"))

    engine = create_engine(url)
    install(engine, Client())

The column stores the ciphertext (``vault:vN:...``, as ``TEXT``); Python code sees
the plaintext value of ``type_`` (``str``, ``bytes``, ``int``, ``float``,
``Decimal``, ``date``, ``datetime``, JSON).

**Binding to another column.** With ``context="ref"`` the value is encrypted with
that row's ``ref`` as associated data (AEAD AAD), so a ciphertext copied into
another row (another ``ref``) fails to open with
:class:`~cipherd.errors.InvalidCiphertext`. ``binding="derived"`` sends it as
the ``context`` of a derived key instead (the key gets ``derived=true`` on first
use): the binding is then a per-row key, and the server can ``rewrap`` such
ciphertext without the plaintext ever leaving it, which it cannot do for
associated data. The bound column must hold its value when the row is written
(a client-side value, not a database-generated id). On load it is taken from
the same result, else looked up by primary key (deferred or expired attributes).

**Batching.** :func:`install` hooks the engine so that

* an INSERT or UPDATE executed with many parameter sets (``session.add_all()`` +
  flush, ``conn.execute(insert(t), rows)``, ORM bulk inserts) encrypts all its
  values in batch requests before the statement runs: one request per
  ``batch_size`` values per key, not one per value;
* a SELECT whose result has encrypted columns fetches its rows, decrypts them
  in batch requests, and hands SQLAlchemy the plaintext. Server-side cursors
  (``stream_results``/``yield_per``) are left alone: unbound values open one
  request each, bound ones raise (their rows are not seen together).

Without :func:`install`, unbound columns still work, one request per value;
bound columns refuse, because a single value does not know its row.
"""

from __future__ import annotations

import datetime
import decimal
import json
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import String, Text, TypeDecorator, bindparam, event, select, type_coerce, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.engine.cursor import FullyBufferedCursorFetchStrategy
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.orm import Session, attributes
from sqlalchemy.sql import ColumnElement, operators
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Insert, Update
from sqlalchemy.sql.elements import BinaryExpression, BindParameter
from sqlalchemy.sql.schema import Column, Table
from sqlalchemy.types import TypeEngine

from ._ops import DecryptItem, EncryptItem
from .client import AsyncClient, Client
from .errors import CipherdError

__all__ = ["Encrypted", "install", "reencrypt", "set_default_client"]

BINDINGS = ("associated_data", "derived")

_default_client: Client | AsyncClient | None = None


def set_default_client(client: Client | AsyncClient | None) -> None:
    """The client used by :class:`Encrypted` columns that name none (:func:`install` sets it)."""
    global _default_client
    _default_client = client


# --------------------------------------------------------------------------- #
# Value codecs: Python value <-> plaintext bytes
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class _Codec:
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]


def _text(to: Callable[[str], Any], frm: Callable[[Any], str] = str) -> _Codec:
    return _Codec(lambda v: frm(v).encode("utf-8"), lambda b: to(b.decode("utf-8")))


_CODECS: dict[type, _Codec] = {
    str: _text(str),
    bytes: _Codec(bytes, bytes),
    int: _text(int),
    float: _text(float, repr),
    decimal.Decimal: _text(decimal.Decimal),
    datetime.datetime: _text(datetime.datetime.fromisoformat, lambda v: v.isoformat()),
    datetime.date: _text(datetime.date.fromisoformat, lambda v: v.isoformat()),
    dict: _text(json.loads, json.dumps),
    list: _text(json.loads, json.dumps),
}


def _codec_for(type_: TypeEngine[Any]) -> _Codec:
    try:
        python_type = type_.python_type
    except NotImplementedError:
        python_type = str
    for cls in python_type.__mro__:
        if cls in _CODECS:
            return _CODECS[cls]
    raise TypeError(f"Encrypted: no codec for {type_!r} (python type {python_type.__name__})")


# --------------------------------------------------------------------------- #
# Markers that carry work done in batch to the per-value type hooks
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class _Sealed:
    """A value already encrypted by the batch hook; the bind processor passes it on."""

    ciphertext: str


@dataclass(frozen=True)
class _Opened:
    """A value already decrypted by the batch hook (or the error it got)."""

    plaintext: bytes | None
    error: CipherdError | None = None


def _binding_bytes(value: Any) -> bytes:
    """The associated data (or derivation context) for a bound column's value."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return str(value).encode("utf-8")


class Encrypted(TypeDecorator[Any]):
    """A column whose values are encrypted by cipherd under ``key``.

    ``type_``: the Python-side type (default ``String``); the database column is
    ``TEXT`` holding the ciphertext. ``context``: the name of another column of
    the same table whose value binds each ciphertext to its row; ``binding``:
    ``"associated_data"`` (default) or ``"derived"`` (see the module doc).
    ``client``: defaults to the one given to :func:`install`.
    """

    impl = Text
    cache_ok = True

    def __init__(
        self,
        key: str,
        type_: TypeEngine[Any] | type[TypeEngine[Any]] = String,
        context: str | None = None,
        *,
        binding: str = "associated_data",
        client: Client | AsyncClient | None = None,
    ) -> None:
        if binding not in BINDINGS:
            raise ValueError(f"binding must be one of {BINDINGS}, not {binding!r}")
        super().__init__()
        self.key = key
        self.value_type = type_() if isinstance(type_, type) else type_
        self.context = context
        self.binding = binding
        self.client = client
        self._codec = _codec_for(self.value_type)

    @property
    def python_type(self) -> type:
        return self.value_type.python_type

    def copy(self, **kw: Any) -> Encrypted:
        return Encrypted(self.key, self.value_type, self.context, binding=self.binding, client=self.client)

    def _client(self) -> Client | AsyncClient:
        client = self.client or _default_client
        if client is None:
            raise CipherdError("Encrypted column has no client: pass client= or call cipherd.sqlalchemy.install()")
        return client

    def _group(self) -> tuple[int, str, str]:
        """Values that can share a batch request: same client, key and binding kind."""
        return (id(self.client), self.key, self.binding)

    def item(self, plaintext: bytes, bound: bytes | None) -> EncryptItem:
        if self.binding == "derived":
            return EncryptItem(plaintext, context=bound)
        return EncryptItem(plaintext, associated_data=bound)

    def open_item(self, ciphertext: str, bound: bytes | None) -> DecryptItem:
        if self.binding == "derived":
            return DecryptItem(ciphertext, context=bound)
        return DecryptItem(ciphertext, associated_data=bound)

    def _unbound(self, what: str) -> CipherdError:
        return CipherdError(
            f"cannot {what} a value of a column bound to {self.context!r} on its own: "
            f"call cipherd.sqlalchemy.install(engine) and include {self.context!r} in the statement"
        )

    # -- per-value hooks (SQLAlchemy calls these for every value) ------------ #
    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if isinstance(value, _Sealed):
            return value.ciphertext
        if self.context is not None:
            raise self._unbound("encrypt")
        return cast(str, _single(self._client(), self.key, self.item(self._codec.encode(value), None)))

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, _Opened):
            if value.error is not None:
                raise value.error
            assert value.plaintext is not None  # invariant: _Opened holds one or the other
            return self._codec.decode(value.plaintext)
        if self.context is not None:
            raise self._unbound("decrypt")
        return self._codec.decode(_single(self._client(), self.key, self.open_item(value, None)))


def _wait(client: Client | AsyncClient, result: Any) -> Any:
    """An AsyncClient's coroutine is awaited through SQLAlchemy's greenlet bridge
    (the asyncio engine runs these hooks inside one)."""
    if isinstance(client, AsyncClient):
        from sqlalchemy.util import await_only

        return await_only(result)
    return result


def _call(client: Client | AsyncClient, method: str, key: str, items: Sequence[Any], **kw: Any) -> list[Any]:
    """Run a batch method of either client from synchronous SQLAlchemy code."""
    return _wait(client, getattr(client, method)(key, items, **kw))  # type: ignore[no-any-return]


def _single(client: Client | AsyncClient, key: str, item: EncryptItem | DecryptItem) -> Any:
    """One value, one request (single mode, no ``batch_input``)."""
    if isinstance(item, EncryptItem):
        return _wait(client, client.encrypt(key, item.plaintext, context=item.context,
                                            associated_data=item.associated_data))
    return _wait(client, client.decrypt(key, item.ciphertext, context=item.context,
                                        associated_data=item.associated_data))


# --------------------------------------------------------------------------- #
# The batch hooks
# --------------------------------------------------------------------------- #
@dataclass
class _Hooks:
    client: Client | AsyncClient
    batch: bool
    batch_size: int | None

    def run(self, col_type: Encrypted, method: str, items: list[Any], **kw: Any) -> list[Any]:
        client = col_type.client or self.client
        if self.batch:
            return _call(client, method, col_type.key, items, batch_size=self.batch_size, **kw)
        # One request per value: the baseline the benchmark compares against.
        out: list[Any] = []
        for item in items:
            try:
                out.append(_single(client, col_type.key, item))
            except CipherdError as error:
                if not kw.get("return_exceptions"):
                    raise
                out.append(error)
        return out


def _encrypted_columns(table: Any) -> list[Column[Any]]:
    if not isinstance(table, Table):
        return []
    return [c for c in table.columns if isinstance(c.type, Encrypted)]


def _before_execute(hooks: _Hooks) -> Callable[..., Any]:
    def before_execute(conn: Connection, clause: Any, multiparams: Any, params: Any, options: Any) -> Any:
        if not isinstance(clause, (Insert, Update)):
            return clause, multiparams, params
        columns = _encrypted_columns(clause.table)
        rows: list[dict[str, Any]] = list(multiparams) if multiparams else ([params] if params else [])
        if not columns or not rows:
            return clause, multiparams, params
        rows = [dict(r) for r in rows]
        todo: dict[tuple[int, str, str], list[tuple[dict[str, Any], str, EncryptItem, Encrypted]]] = {}
        for row in rows:
            for col in columns:
                value = row.get(col.key)
                if value is None or isinstance(value, _Sealed):
                    continue
                col_type: Encrypted = col.type  # type: ignore[assignment]
                bound = None
                if col_type.context is not None:
                    ctx_col = clause.table.c[col_type.context]
                    if row.get(ctx_col.key) is None:
                        raise CipherdError(
                            f"{col.table.name}.{col.name} is bound to {col_type.context!r}, "
                            f"which has no value in this statement"
                        )
                    bound = _binding_bytes(row[ctx_col.key])
                item = col_type.item(col_type._codec.encode(value), bound)
                todo.setdefault(col_type._group(), []).append((row, col.key, item, col_type))
        for work in todo.values():
            ciphertexts = hooks.run(work[0][3], "encrypt_batch", [w[2] for w in work])
            for (row, key, _item, _t), ciphertext in zip(work, ciphertexts, strict=True):
                row[key] = _Sealed(ciphertext)
        if multiparams:
            return clause, rows, {}
        return clause, [], rows[0]

    return before_execute


def _result_table(entry: Any) -> tuple[Any, str] | None:
    for obj in entry.objects:
        if isinstance(obj, ColumnElement) and getattr(obj, "table", None) is not None and hasattr(obj, "name"):
            return obj.table, obj.name
    return None


def _binding_reader(conn: Connection, context: Any, entry: Any, col_type: Encrypted, rows: list[list[Any]],
                    located: dict[tuple[int, str], int]) -> Callable[[list[Any]], Any] | None:
    """How to find a row's binding value: in the result itself; else, when the
    statement did not select it (a deferred or separately expired attribute, an
    ORM refresh), by primary key, with one extra query for all the rows. The
    primary key comes from the result, or from a ``WHERE pk = :value`` clause
    (how the ORM loads one object's attributes)."""
    where = _result_table(entry)
    if col_type.context is None or where is None:
        return None
    table = where[0]
    ctx_pos = located.get((id(table), col_type.context))
    if ctx_pos is not None:
        return lambda row: row[ctx_pos]
    pk = list(table.primary_key.columns) if isinstance(table, Table) else []
    if len(pk) != 1:
        return None
    pk_pos = located.get((id(table), pk[0].name))
    if pk_pos is not None:
        keys = list({row[pk_pos] for row in rows if row[pk_pos] is not None})
    else:
        only = _pk_in_where(context, table, pk[0])
        if only is None:
            return None
        keys = [only]
    ctx_col = table.c[col_type.context]
    found: dict[Any, Any] = {}
    for start in range(0, len(keys), 10_000):
        query = select(pk[0], ctx_col).where(pk[0].in_(keys[start : start + 10_000]))
        found.update((k, v) for k, v in conn.execute(query))
    if pk_pos is None:
        return lambda row: found.get(keys[0])
    return lambda row: found.get(row[pk_pos])


def _pk_in_where(context: Any, table: Table, pk: Column[Any]) -> Any:
    """The value ``v`` of a statement whose whole WHERE clause is ``pk = :v``, else None."""
    where = getattr(getattr(context.compiled, "statement", None), "whereclause", None)
    if not (isinstance(where, BinaryExpression) and where.operator is operators.eq):
        return None
    left, right = where.left, where.right
    if not isinstance(right, BindParameter) or getattr(left, "table", None) is not table:
        return None
    if getattr(left, "name", None) != pk.name or not context.compiled_parameters:
        return None
    return context.compiled_parameters[0].get(right.key)


def _after_cursor_execute(hooks: _Hooks) -> Callable[..., Any]:
    def after_cursor_execute(conn: Connection, cursor: Any, statement: Any, parameters: Any,
                             context: Any, executemany: bool) -> None:
        compiled = context.compiled
        if not isinstance(compiled, SQLCompiler) or context.isddl or context.is_crud:
            return
        description = cursor.description
        entries = compiled._result_columns
        if description is None or len(entries) != len(description):
            return
        if context._is_server_side or context.execution_options.get("stream_results", False):
            return
        positions = [i for i, e in enumerate(entries) if isinstance(e.type, Encrypted)]
        if not positions:
            return
        located = {}
        for i, entry in enumerate(entries):
            where = _result_table(entry)
            if where is not None:
                located[(id(where[0]), where[1])] = i
        rows = [list(r) for r in cursor.fetchall()]
        todo: dict[tuple[int, str, str], list[tuple[list[Any], int, DecryptItem, Encrypted]]] = {}
        readers: dict[tuple[int, str | None], Callable[[list[Any]], Any] | None] = {}
        for pos in positions:
            col_type: Encrypted = entries[pos].type  # type: ignore[assignment]
            where = _result_table(entries[pos])
            reader_key = (0 if where is None else id(where[0]), col_type.context)
            if reader_key not in readers:  # one lookup per table and binding column
                readers[reader_key] = _binding_reader(conn, context, entries[pos], col_type, rows, located)
            binding = readers[reader_key]
            for row in rows:
                value = row[pos]
                if not isinstance(value, str):  # NULL, or opened by an earlier hook
                    continue
                bound = None
                if col_type.context is not None:
                    bound = None if binding is None else binding(row)
                    if bound is None:
                        row[pos] = _Opened(None, col_type._unbound("decrypt"))
                        continue
                item = col_type.open_item(value, None if bound is None else _binding_bytes(bound))
                todo.setdefault(col_type._group(), []).append((row, pos, item, col_type))
        for work in todo.values():
            results = hooks.run(work[0][3], "decrypt_batch", [w[2] for w in work], return_exceptions=True)
            for (row, pos, _item, _t), result in zip(work, results, strict=True):
                row[pos] = _Opened(None, result) if isinstance(result, CipherdError) else _Opened(result)
        context.cursor_fetch_strategy = FullyBufferedCursorFetchStrategy(
            cursor, description, [tuple(r) for r in rows]
        )

    return after_cursor_execute


def _before_flush(session: Session, flush_context: Any, instances: Any) -> None:
    """ORM updates: an UPDATE of a bound column's value must carry the binding
    column too (the hook needs its value), and a change of the binding column
    must re-encrypt the bound values under the new one."""
    for obj in session.dirty:
        state = attributes.instance_state(obj)
        mapper = state.mapper
        for col in _encrypted_columns(mapper.local_table):
            col_type: Encrypted = col.type  # type: ignore[assignment]
            if col_type.context is None:
                continue
            value_key = mapper.get_property_by_column(col).key
            ctx_key = mapper.get_property_by_column(mapper.local_table.c[col_type.context]).key
            value_changed = value_key in state.committed_state
            ctx_changed = ctx_key in state.committed_state
            if value_changed and not ctx_changed:
                getattr(obj, ctx_key)  # load it if expired
                attributes.flag_modified(obj, ctx_key)
            elif ctx_changed and not value_changed:
                if getattr(obj, value_key) is not None:  # loads it if expired
                    attributes.flag_modified(obj, value_key)


_session_hook_installed = False
_installed: weakref.WeakKeyDictionary[Engine, _Hooks] = weakref.WeakKeyDictionary()


def install(
    engine: Engine | Any,
    client: Client | AsyncClient | None = None,
    *,
    batch: bool = True,
    batch_size: int | None = None,
) -> None:
    """Hook ``engine`` (an ``Engine``, or an ``AsyncEngine``) so that statements over
    many rows encrypt and decrypt in batch requests, and make ``client`` the
    default for :class:`Encrypted` columns. ``batch=False`` sends one request per
    value instead (for comparison). ``client`` defaults to ``Client()`` (from the
    environment)."""
    global _session_hook_installed
    sync_engine = getattr(engine, "sync_engine", engine)
    if client is None:
        client = _default_client or Client()
    set_default_client(client)
    hooks = _installed.get(sync_engine)
    if hooks is not None:  # installed before: change the settings, keep one set of listeners
        hooks.client, hooks.batch, hooks.batch_size = client, batch, batch_size
    else:
        hooks = _installed[sync_engine] = _Hooks(client, batch, batch_size)
        event.listen(sync_engine, "before_execute", _before_execute(hooks), retval=True)
        event.listen(sync_engine, "after_cursor_execute", _after_cursor_execute(hooks))
    if not _session_hook_installed:
        event.listen(Session, "before_flush", _before_flush)
        _session_hook_installed = True


# --------------------------------------------------------------------------- #
# After a key rotation
# --------------------------------------------------------------------------- #
def reencrypt(conn: Connection, column: Any, *, chunk_size: int = 1000, client: Client | None = None) -> int:
    """Move every value of ``column`` to the key's latest version; returns how many
    rows changed. Unbound and ``derived`` columns are rewrapped by the server
    (the plaintext never leaves it); ``associated_data`` columns are decrypted
    and encrypted again, since the server's rewrap does not take associated data.
    ``column`` is a table column or an ORM attribute (``Customer.email``).
    Runs on ``conn`` in chunks of ``chunk_size`` rows (by primary key); commit
    afterwards."""
    if hasattr(column, "__clause_element__"):  # an ORM attribute: Customer.email
        column = column.__clause_element__()
    col_type = getattr(column, "type", None)
    if not isinstance(column, Column) or not isinstance(col_type, Encrypted):
        raise TypeError(f"{column} is not an Encrypted table column")
    cli = client or col_type.client or _default_client
    if not isinstance(cli, Client):
        raise CipherdError("reencrypt needs a synchronous cipherd.Client")
    table = column.table
    pk = list(table.primary_key.columns)
    if len(pk) != 1:
        raise CipherdError("reencrypt needs a single-column primary key")
    latest = int(cli.read_key(col_type.key)["latest_version"])
    prefix = f"vault:v{latest}:"
    raw = type_coerce(column, Text)
    ctx = table.c[col_type.context] if col_type.context else None
    cols: list[Any] = [pk[0], raw] + ([ctx] if ctx is not None else [])
    stmt = update(table).where(pk[0] == bindparam("_pk")).values({column.key: type_coerce(bindparam("_ct"), Text)})
    changed, last = 0, None
    while True:
        query = select(*cols).where(raw.is_not(None)).order_by(pk[0]).limit(chunk_size)
        if last is not None:
            query = query.where(pk[0] > last)
        rows = conn.execute(query).all()
        if not rows:
            return changed
        last = rows[-1][0]
        stale = [r for r in rows if not r[1].startswith(prefix)]
        if stale:
            bound = [None if ctx is None else _binding_bytes(r[2]) for r in stale]
            fresh = _refresh(cli, col_type, [r[1] for r in stale], bound, chunk_size)
            conn.execute(stmt, [{"_pk": r[0], "_ct": c} for r, c in zip(stale, fresh, strict=True)])
            changed += len(stale)


def _refresh(cli: Client, col_type: Encrypted, ciphertexts: list[str], bound: list[bytes | None],
             size: int) -> Iterable[str]:
    items = [col_type.open_item(c, b) for c, b in zip(ciphertexts, bound, strict=True)]
    if col_type.binding == "derived" or col_type.context is None:
        return cli.rewrap_batch(col_type.key, items, batch_size=size)
    plain = cli.decrypt_batch(col_type.key, items, batch_size=size)
    return cli.encrypt_batch(col_type.key, [col_type.item(p, b) for p, b in zip(plain, bound, strict=True)],
                             batch_size=size)
