"""The operations as data: what to send and how to read the answer.

No I/O here. Each function returns a :class:`Call` (method, path, JSON body,
and a parser for the response's ``data``); :class:`cipherd.Client` and
:class:`cipherd.AsyncClient` only send calls and apply the retry policy, so the
two clients cannot drift apart.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, Union
from urllib.parse import quote

from .errors import CipherdError, classify

T = TypeVar("T")

Bytes = Union[bytes, bytearray, memoryview, str]
"""Binary input; ``str`` is encoded as UTF-8."""


@dataclass(frozen=True)
class EncryptItem:
    """One item of :meth:`Client.encrypt_batch`."""

    plaintext: Bytes
    context: Bytes | None = None
    associated_data: Bytes | None = None
    key_version: int | None = None


@dataclass(frozen=True)
class DecryptItem:
    """One item of :meth:`Client.decrypt_batch` (and :meth:`Client.rewrap_batch`,
    which ignores ``associated_data``: the server's rewrap does not take it)."""

    ciphertext: str
    context: Bytes | None = None
    associated_data: Bytes | None = None


@dataclass(frozen=True)
class DataKey:
    """A generated data key: ``plaintext`` is ``None`` for a wrapped-only key."""

    ciphertext: str
    key_version: int
    plaintext: bytes | None


@dataclass(frozen=True)
class Call(Generic[T]):
    """One HTTP request and the parser of its ``data``."""

    method: str
    path: str
    body: dict[str, Any] | None
    parse: Callable[[dict[str, Any]], T]
    #: Safe to send twice (crypto operations are; rotating a key is not).
    idempotent: bool = True
    #: A 404 on this path means "no such key".
    missing_is_key: bool = False
    #: A batch: a 4xx/5xx body that still carries ``batch_results`` is an answer.
    batch: bool = False


def b64(value: Bytes) -> str:
    if isinstance(value, str):
        value = value.encode("utf-8")
    return base64.b64encode(bytes(value)).decode("ascii")


def unb64(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


def _name(key: str) -> str:
    return quote(key, safe="")


def _put(body: dict[str, Any], field: str, value: Bytes | None) -> None:
    if value is not None:
        body[field] = b64(value)


def _version(body: dict[str, Any], key_version: int | None) -> None:
    if key_version is not None:
        body["key_version"] = key_version


def _encrypt_body(item: EncryptItem) -> dict[str, Any]:
    body: dict[str, Any] = {"plaintext": b64(item.plaintext)}
    _put(body, "context", item.context)
    _put(body, "associated_data", item.associated_data)
    _version(body, item.key_version)
    return body


def _decrypt_body(item: DecryptItem, with_aad: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"ciphertext": item.ciphertext}
    _put(body, "context", item.context)
    if with_aad:
        _put(body, "associated_data", item.associated_data)
    return body


def _field(name: str) -> Callable[[dict[str, Any]], Any]:
    def parse(data: dict[str, Any]) -> Any:
        return data[name]

    return parse


def _plaintext(data: dict[str, Any]) -> bytes:
    return unb64(data.get("plaintext") or "")


# --------------------------------------------------------------------------- #
# Single calls
# --------------------------------------------------------------------------- #
def encrypt(mount: str, key: str, item: EncryptItem) -> Call[str]:
    return Call("POST", f"{mount}/encrypt/{_name(key)}", _encrypt_body(item), _field("ciphertext"))


def decrypt(mount: str, key: str, item: DecryptItem) -> Call[bytes]:
    return Call("POST", f"{mount}/decrypt/{_name(key)}", _decrypt_body(item), _plaintext)


def rewrap(mount: str, key: str, item: DecryptItem, key_version: int | None) -> Call[str]:
    body = _decrypt_body(item, with_aad=False)
    _version(body, key_version)
    return Call("POST", f"{mount}/rewrap/{_name(key)}", body, _field("ciphertext"))


def datakey(mount: str, key: str, *, wrapped: bool, bits: int, context: Bytes | None,
            associated_data: Bytes | None) -> Call[DataKey]:
    body: dict[str, Any] = {"bits": bits}
    _put(body, "context", context)
    _put(body, "associated_data", associated_data)

    def parse(data: dict[str, Any]) -> DataKey:
        plain = data.get("plaintext")
        return DataKey(data["ciphertext"], int(data["key_version"]), None if plain is None else unb64(plain))

    kind = "wrapped" if wrapped else "plaintext"
    return Call("POST", f"{mount}/datakey/{kind}/{_name(key)}", body, parse)


def _algorithm_path(base: str, algorithm: str | None) -> str:
    return base if algorithm is None else f"{base}/{_name(algorithm)}"


def sign(
    mount: str, key: str, data: Bytes, *, hash_algorithm: str | None, context: Bytes | None,
    key_version: int | None, prehashed: bool, options: dict[str, Any],
) -> Call[str]:
    body: dict[str, Any] = {"input": b64(data), **options}
    _put(body, "context", context)
    _version(body, key_version)
    if prehashed:
        body["prehashed"] = True
    return Call("POST", _algorithm_path(f"{mount}/sign/{_name(key)}", hash_algorithm), body, _field("signature"))


def verify(
    mount: str, key: str, data: Bytes, *, field: str, value: str, algorithm: str | None,
    context: Bytes | None, prehashed: bool, options: dict[str, Any],
) -> Call[bool]:
    """``field`` is ``signature`` or ``hmac``: the server verifies either on one path."""
    body: dict[str, Any] = {"input": b64(data), field: value, **options}
    _put(body, "context", context)
    if prehashed:
        body["prehashed"] = True
    return Call(
        "POST", _algorithm_path(f"{mount}/verify/{_name(key)}", algorithm), body,
        lambda d: bool(d.get("valid", False)),
    )


def hmac(mount: str, key: str, data: Bytes, *, algorithm: str | None, key_version: int | None) -> Call[str]:
    body: dict[str, Any] = {"input": b64(data)}
    _version(body, key_version)
    return Call("POST", _algorithm_path(f"{mount}/hmac/{_name(key)}", algorithm), body, _field("hmac"))


# --------------------------------------------------------------------------- #
# Batches
# --------------------------------------------------------------------------- #
Outcome = Union[T, CipherdError]


def _batch_parser(read: Callable[[dict[str, Any]], T], count: int) -> Callable[[dict[str, Any]], list[Outcome[T]]]:
    def parse(data: dict[str, Any]) -> list[Outcome[T]]:
        results = data.get("batch_results")
        if not isinstance(results, list) or len(results) != count:
            got = len(results) if isinstance(results, list) else "no"
            raise CipherdError(f"malformed batch reply: {got} results for {count} items")
        out: list[Outcome[T]] = []
        for item in results:
            error = item.get("error") if isinstance(item, dict) else "malformed batch item"
            out.append(classify(str(error)) if error else read(item))
        return out

    return parse


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    if size < 1:
        raise ValueError("batch_size must be at least 1")
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _batch(
    path: str, items: Sequence[Any], size: int, encode: Callable[[Any], dict[str, Any]],
    read: Callable[[dict[str, Any]], T], options: dict[str, Any] | None = None,
) -> list[Call[list[Outcome[T]]]]:
    calls = []
    for chunk in _chunks(items, size):
        body: dict[str, Any] = {"batch_input": [encode(i) for i in chunk], **(options or {})}
        calls.append(Call("POST", path, body, _batch_parser(read, len(chunk)), batch=True))
    return calls


def as_encrypt_item(value: Bytes | EncryptItem) -> EncryptItem:
    return value if isinstance(value, EncryptItem) else EncryptItem(value)


def as_decrypt_item(value: str | DecryptItem) -> DecryptItem:
    return value if isinstance(value, DecryptItem) else DecryptItem(value)


def encrypt_batch(mount: str, key: str, items: Sequence[EncryptItem], size: int) -> list[Call[list[Outcome[str]]]]:
    return _batch(f"{mount}/encrypt/{_name(key)}", items, size, _encrypt_body, _field("ciphertext"))


def decrypt_batch(mount: str, key: str, items: Sequence[DecryptItem], size: int) -> list[Call[list[Outcome[bytes]]]]:
    return _batch(f"{mount}/decrypt/{_name(key)}", items, size, _decrypt_body, _plaintext)


def rewrap_batch(
    mount: str, key: str, items: Sequence[DecryptItem], size: int, key_version: int | None
) -> list[Call[list[Outcome[str]]]]:
    def encode(item: DecryptItem) -> dict[str, Any]:
        body = _decrypt_body(item, with_aad=False)
        _version(body, key_version)
        return body

    return _batch(f"{mount}/rewrap/{_name(key)}", items, size, encode, _field("ciphertext"))


def hmac_batch(
    mount: str, key: str, items: Sequence[Bytes], size: int, algorithm: str | None
) -> list[Call[list[Outcome[str]]]]:
    path = _algorithm_path(f"{mount}/hmac/{_name(key)}", algorithm)
    return _batch(path, items, size, lambda data: {"input": b64(data)}, _field("hmac"))


def sign_batch(
    mount: str, key: str, items: Sequence[Bytes], size: int, hash_algorithm: str | None, options: dict[str, Any]
) -> list[Call[list[Outcome[str]]]]:
    path = _algorithm_path(f"{mount}/sign/{_name(key)}", hash_algorithm)
    return _batch(path, items, size, lambda data: {"input": b64(data)}, _field("signature"), options)


def verify_batch(
    mount: str, key: str, items: Sequence[tuple[Bytes, str]], size: int, field: str, algorithm: str | None,
    options: dict[str, Any],
) -> list[Call[list[Outcome[bool]]]]:
    """``field``: ``signature`` or ``hmac``. A failed HMAC item omits ``valid`` (Vault's omitempty)."""
    path = _algorithm_path(f"{mount}/verify/{_name(key)}", algorithm)
    return _batch(path, items, size, lambda pair: {"input": b64(pair[0]), field: pair[1]},
                  lambda item: bool(item.get("valid", False)), options)


# --------------------------------------------------------------------------- #
# Key management
# --------------------------------------------------------------------------- #
def _key_info(data: dict[str, Any]) -> dict[str, Any]:
    return data


def create_key(mount: str, key: str, options: dict[str, Any]) -> Call[dict[str, Any]]:
    return Call("POST", f"{mount}/keys/{_name(key)}", options, _key_info, idempotent=False)


def read_key(mount: str, key: str) -> Call[dict[str, Any]]:
    return Call("GET", f"{mount}/keys/{_name(key)}", None, _key_info, missing_is_key=True)


def rotate_key(mount: str, key: str) -> Call[dict[str, Any]]:
    return Call("POST", f"{mount}/keys/{_name(key)}/rotate", {}, _key_info, idempotent=False, missing_is_key=True)


def configure_key(mount: str, key: str, options: dict[str, Any]) -> Call[dict[str, Any]]:
    return Call("POST", f"{mount}/keys/{_name(key)}/config", options, _key_info, idempotent=False, missing_is_key=True)


def delete_key(mount: str, key: str) -> Call[dict[str, Any]]:
    return Call("DELETE", f"{mount}/keys/{_name(key)}", None, _key_info, idempotent=False, missing_is_key=True)
