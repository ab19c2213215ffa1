"""Synchronous and asyncio clients for cipherd's Vault-compatible REST API.

Both take and return ``bytes`` (``str`` input is encoded as UTF-8); base64 is
handled inside. The address and token come from the arguments, else
``CIPHERD_ADDR``/``CIPHERD_TOKEN``, else ``VAULT_ADDR``/``VAULT_TOKEN``.

Batch calls (``*_batch``) send ``batch_input`` in requests of ``batch_size``
items and return one result per input, in order. When some items fail they
raise :class:`~cipherd.errors.BatchError`, whose ``results`` hold the values of
the items that worked and an exception for each one that did not; pass
``return_exceptions=True`` to get that list back instead.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar, cast

import httpx

from . import _ops
from ._core import DEFAULT_BATCH_SIZE, Retry, Settings, headers, outcome, settings, url
from ._ops import Bytes, Call, DataKey, DecryptItem, EncryptItem, Outcome
from .errors import BatchError, CipherdError

T = TypeVar("T")


def _flatten(parts: list[list[Outcome[T]]], return_exceptions: bool) -> list[Any]:
    results = [r for part in parts for r in part]
    if not return_exceptions and any(isinstance(r, CipherdError) for r in results):
        raise BatchError(results)
    return results


class _Api:
    """The operations, shared by both clients: each builds the calls; the
    subclass sends them (``_one``) and joins batches (``_many``)."""

    _s: Settings

    @property
    def batch_size(self) -> int:
        return self._s.batch_size

    def _calls_encrypt(self, key: str, items: Sequence[Bytes | EncryptItem], batch_size: int | None) -> list[Any]:
        prepared = [_ops.as_encrypt_item(i) for i in items]
        return _ops.encrypt_batch(self._s.mount, key, prepared, batch_size or self._s.batch_size)

    def _calls_decrypt(self, key: str, items: Sequence[str | DecryptItem], batch_size: int | None) -> list[Any]:
        prepared = [_ops.as_decrypt_item(i) for i in items]
        return _ops.decrypt_batch(self._s.mount, key, prepared, batch_size or self._s.batch_size)

    def _calls_rewrap(
        self, key: str, items: Sequence[str | DecryptItem], key_version: int | None, batch_size: int | None
    ) -> list[Any]:
        prepared = [_ops.as_decrypt_item(i) for i in items]
        return _ops.rewrap_batch(self._s.mount, key, prepared, batch_size or self._s.batch_size, key_version)

    def _calls_hmac(self, key: str, items: Sequence[Bytes], algorithm: str | None, batch_size: int | None) -> list[Any]:
        return _ops.hmac_batch(self._s.mount, key, items, batch_size or self._s.batch_size, algorithm)

    def _calls_sign(self, key: str, items: Sequence[Bytes], hash_algorithm: str | None, batch_size: int | None,
                    options: Mapping[str, Any]) -> list[Any]:
        size = batch_size or self._s.batch_size
        return _ops.sign_batch(self._s.mount, key, items, size, hash_algorithm, dict(options))

    def _calls_verify(self, key: str, items: Sequence[tuple[Bytes, str]], field: str, algorithm: str | None,
                      batch_size: int | None, options: Mapping[str, Any]) -> list[Any]:
        size = batch_size or self._s.batch_size
        return _ops.verify_batch(self._s.mount, key, items, size, field, algorithm, dict(options))

    def _call_encrypt(self, key: str, plaintext: Bytes, context: Bytes | None, associated_data: Bytes | None,
                      key_version: int | None) -> Call[str]:
        return _ops.encrypt(self._s.mount, key, EncryptItem(plaintext, context, associated_data, key_version))

    def _call_sign(self, key: str, data: Bytes, hash_algorithm: str | None, context: Bytes | None,
                   key_version: int | None, prehashed: bool, options: Mapping[str, Any]) -> Call[str]:
        return _ops.sign(self._s.mount, key, data, hash_algorithm=hash_algorithm, context=context,
                         key_version=key_version, prehashed=prehashed, options=dict(options))

    def _call_verify(self, key: str, data: Bytes, field: str, value: str, algorithm: str | None,
                     context: Bytes | None, prehashed: bool, options: Mapping[str, Any]) -> Call[bool]:
        return _ops.verify(self._s.mount, key, data, field=field, value=value, algorithm=algorithm,
                           context=context, prehashed=prehashed, options=dict(options))


class Client(_Api):
    """Synchronous client (one ``httpx.Client``, thread-safe, keeps connections alive).

    ``transport`` and ``event_hooks`` are passed to httpx (for a custom
    transport, or to observe each request). Use as a context manager or call
    :meth:`close`.
    """

    def __init__(
        self,
        addr: str | None = None,
        token: str | None = None,
        *,
        mount: str = "transit",
        batch_size: int = DEFAULT_BATCH_SIZE,
        retry: Retry | None = None,
        timeout: float = 30.0,
        verify: str | bool | ssl.SSLContext | None = None,
        transport: httpx.BaseTransport | None = None,
        event_hooks: Mapping[str, list[Any]] | None = None,
    ) -> None:
        self._s = settings(addr, token, mount, batch_size, retry, verify)
        self._http = httpx.Client(
            timeout=timeout, verify=self._s.verify, transport=transport,
            event_hooks=dict(event_hooks or {}), headers=headers(self._s),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ------------------------------------------------------------ #
    def _one(self, call: Call[T]) -> T:
        retry, result = self._s.retry, None
        for attempt in range(1, retry.attempts + 1):
            try:
                done, result = outcome(call, retry, self._http.request(call.method, url(self._s, call),
                                                                       json=call.body), None)
            except httpx.TransportError as exc:
                done, result = outcome(call, retry, None, exc)
            if done:
                return result  # type: ignore[no-any-return]
            if attempt < retry.attempts:
                time.sleep(retry.delay(attempt))
        raise cast(CipherdError, result)  # the last attempt's error

    def _many(self, calls: list[Call[list[Outcome[T]]]], return_exceptions: bool) -> list[Any]:
        return _flatten([self._one(c) for c in calls], return_exceptions)

    # -- encryption ----------------------------------------------------------- #
    def encrypt(self, key: str, plaintext: Bytes, *, context: Bytes | None = None,
                associated_data: Bytes | None = None, key_version: int | None = None) -> str:
        """Encrypt ``plaintext``; returns ``vault:vN:...``. Creates the key on first use (upsert)."""
        return self._one(self._call_encrypt(key, plaintext, context, associated_data, key_version))

    def decrypt(self, key: str, ciphertext: str, *, context: Bytes | None = None,
                associated_data: Bytes | None = None) -> bytes:
        return self._one(_ops.decrypt(self._s.mount, key, DecryptItem(ciphertext, context, associated_data)))

    def rewrap(self, key: str, ciphertext: str, *, context: Bytes | None = None, key_version: int | None = None) -> str:
        """Re-encrypt under the latest (or ``key_version``) version without returning plaintext.
        The server's rewrap takes no ``associated_data``: AAD-bound ciphertext must be
        decrypted and encrypted again instead."""
        return self._one(_ops.rewrap(self._s.mount, key, DecryptItem(ciphertext, context), key_version))

    def encrypt_batch(self, key: str, items: Sequence[Bytes | EncryptItem], *, batch_size: int | None = None,
                      return_exceptions: bool = False) -> list[Any]:
        return self._many(self._calls_encrypt(key, items, batch_size), return_exceptions)

    def decrypt_batch(self, key: str, items: Sequence[str | DecryptItem], *, batch_size: int | None = None,
                      return_exceptions: bool = False) -> list[Any]:
        return self._many(self._calls_decrypt(key, items, batch_size), return_exceptions)

    def rewrap_batch(self, key: str, items: Sequence[str | DecryptItem], *, key_version: int | None = None,
                     batch_size: int | None = None, return_exceptions: bool = False) -> list[Any]:
        return self._many(self._calls_rewrap(key, items, key_version, batch_size), return_exceptions)

    def datakey(self, key: str, *, bits: int = 256, context: Bytes | None = None,
                associated_data: Bytes | None = None, wrapped: bool = False) -> DataKey:
        """A fresh data key: its plaintext (unless ``wrapped``) and its ciphertext under ``key``
        (``associated_data``: an OpenBao extension, which cipherd supports)."""
        return self._one(_ops.datakey(self._s.mount, key, wrapped=wrapped, bits=bits, context=context,
                                      associated_data=associated_data))

    # -- signatures and MACs ------------------------------------------------- #
    def sign(self, key: str, data: Bytes, *, hash_algorithm: str | None = None, context: Bytes | None = None,
             key_version: int | None = None, prehashed: bool = False, **options: Any) -> str:
        """Sign ``data``; ``options`` are sent as is (``signature_algorithm``, ``marshaling_algorithm``, ...)."""
        return self._one(self._call_sign(key, data, hash_algorithm, context, key_version, prehashed, options))

    def verify(self, key: str, data: Bytes, signature: str, *, hash_algorithm: str | None = None,
               context: Bytes | None = None, prehashed: bool = False, **options: Any) -> bool:
        call = self._call_verify(key, data, "signature", signature, hash_algorithm, context, prehashed, options)
        return self._one(call)

    def sign_batch(self, key: str, items: Sequence[Bytes], *, hash_algorithm: str | None = None,
                   batch_size: int | None = None, return_exceptions: bool = False, **options: Any) -> list[Any]:
        return self._many(self._calls_sign(key, items, hash_algorithm, batch_size, options), return_exceptions)

    def verify_batch(self, key: str, items: Sequence[tuple[Bytes, str]], *, hash_algorithm: str | None = None,
                     batch_size: int | None = None, return_exceptions: bool = False, **options: Any) -> list[Any]:
        """``items``: ``(data, signature)`` pairs; returns one ``bool`` per pair."""
        calls = self._calls_verify(key, items, "signature", hash_algorithm, batch_size, options)
        return self._many(calls, return_exceptions)

    def hmac(self, key: str, data: Bytes, *, algorithm: str | None = None, key_version: int | None = None) -> str:
        return self._one(_ops.hmac(self._s.mount, key, data, algorithm=algorithm, key_version=key_version))

    def hmac_batch(self, key: str, items: Sequence[Bytes], *, algorithm: str | None = None,
                   batch_size: int | None = None, return_exceptions: bool = False) -> list[Any]:
        return self._many(self._calls_hmac(key, items, algorithm, batch_size), return_exceptions)

    def verify_hmac(self, key: str, data: Bytes, hmac: str, *, algorithm: str | None = None) -> bool:
        return self._one(self._call_verify(key, data, "hmac", hmac, algorithm, None, False, {}))

    def verify_hmac_batch(self, key: str, items: Sequence[tuple[Bytes, str]], *, algorithm: str | None = None,
                          batch_size: int | None = None, return_exceptions: bool = False) -> list[Any]:
        """``items``: ``(data, hmac)`` pairs; returns one ``bool`` per pair."""
        return self._many(self._calls_verify(key, items, "hmac", algorithm, batch_size, {}), return_exceptions)

    # -- keys ------------------------------------------------------------------ #
    def create_key(self, key: str, *, type: str = "aes256-gcm96", **options: Any) -> dict[str, Any]:
        return self._one(_ops.create_key(self._s.mount, key, {"type": type, **options}))

    def read_key(self, key: str) -> dict[str, Any]:
        return self._one(_ops.read_key(self._s.mount, key))

    def rotate_key(self, key: str) -> dict[str, Any]:
        return self._one(_ops.rotate_key(self._s.mount, key))

    def configure_key(self, key: str, **options: Any) -> dict[str, Any]:
        return self._one(_ops.configure_key(self._s.mount, key, options))

    def delete_key(self, key: str) -> None:
        self._one(_ops.delete_key(self._s.mount, key))


class AsyncClient(_Api):
    """The asyncio twin of :class:`Client` (same methods, awaited). The chunks of a
    batch call are sent concurrently, at most ``concurrency`` at a time."""

    def __init__(
        self,
        addr: str | None = None,
        token: str | None = None,
        *,
        mount: str = "transit",
        batch_size: int = DEFAULT_BATCH_SIZE,
        retry: Retry | None = None,
        timeout: float = 30.0,
        verify: str | bool | ssl.SSLContext | None = None,
        concurrency: int = 4,
        transport: httpx.AsyncBaseTransport | None = None,
        event_hooks: Mapping[str, list[Any]] | None = None,
    ) -> None:
        self._s = settings(addr, token, mount, batch_size, retry, verify)
        self._limit = asyncio.Semaphore(max(1, concurrency))
        self._http = httpx.AsyncClient(
            timeout=timeout, verify=self._s.verify, transport=transport,
            event_hooks=dict(event_hooks or {}), headers=headers(self._s),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- transport ------------------------------------------------------------ #
    async def _one(self, call: Call[T]) -> T:
        retry, result = self._s.retry, None
        for attempt in range(1, retry.attempts + 1):
            try:
                async with self._limit:
                    response = await self._http.request(call.method, url(self._s, call), json=call.body)
                done, result = outcome(call, retry, response, None)
            except httpx.TransportError as exc:
                done, result = outcome(call, retry, None, exc)
            if done:
                return result  # type: ignore[no-any-return]
            if attempt < retry.attempts:
                await asyncio.sleep(retry.delay(attempt))
        raise cast(CipherdError, result)  # the last attempt's error

    async def _many(self, calls: list[Call[list[Outcome[T]]]], return_exceptions: bool) -> list[Any]:
        parts = await asyncio.gather(*(self._one(c) for c in calls))
        return _flatten(list(parts), return_exceptions)

    # -- encryption ----------------------------------------------------------- #
    async def encrypt(self, key: str, plaintext: Bytes, *, context: Bytes | None = None,
                      associated_data: Bytes | None = None, key_version: int | None = None) -> str:
        return await self._one(self._call_encrypt(key, plaintext, context, associated_data, key_version))

    async def decrypt(self, key: str, ciphertext: str, *, context: Bytes | None = None,
                      associated_data: Bytes | None = None) -> bytes:
        return await self._one(_ops.decrypt(self._s.mount, key, DecryptItem(ciphertext, context, associated_data)))

    async def rewrap(self, key: str, ciphertext: str, *, context: Bytes | None = None,
                     key_version: int | None = None) -> str:
        return await self._one(_ops.rewrap(self._s.mount, key, DecryptItem(ciphertext, context), key_version))

    async def encrypt_batch(self, key: str, items: Sequence[Bytes | EncryptItem], *, batch_size: int | None = None,
                            return_exceptions: bool = False) -> list[Any]:
        return await self._many(self._calls_encrypt(key, items, batch_size), return_exceptions)

    async def decrypt_batch(self, key: str, items: Sequence[str | DecryptItem], *, batch_size: int | None = None,
                            return_exceptions: bool = False) -> list[Any]:
        return await self._many(self._calls_decrypt(key, items, batch_size), return_exceptions)

    async def rewrap_batch(self, key: str, items: Sequence[str | DecryptItem], *, key_version: int | None = None,
                           batch_size: int | None = None, return_exceptions: bool = False) -> list[Any]:
        return await self._many(self._calls_rewrap(key, items, key_version, batch_size), return_exceptions)

    async def datakey(self, key: str, *, bits: int = 256, context: Bytes | None = None,
                      associated_data: Bytes | None = None, wrapped: bool = False) -> DataKey:
        return await self._one(_ops.datakey(self._s.mount, key, wrapped=wrapped, bits=bits, context=context,
                                            associated_data=associated_data))

    # -- signatures and MACs ------------------------------------------------- #
    async def sign(self, key: str, data: Bytes, *, hash_algorithm: str | None = None, context: Bytes | None = None,
                   key_version: int | None = None, prehashed: bool = False, **options: Any) -> str:
        return await self._one(self._call_sign(key, data, hash_algorithm, context, key_version, prehashed, options))

    async def verify(self, key: str, data: Bytes, signature: str, *, hash_algorithm: str | None = None,
                     context: Bytes | None = None, prehashed: bool = False, **options: Any) -> bool:
        call = self._call_verify(key, data, "signature", signature, hash_algorithm, context, prehashed, options)
        return await self._one(call)

    async def sign_batch(self, key: str, items: Sequence[Bytes], *, hash_algorithm: str | None = None,
                         batch_size: int | None = None, return_exceptions: bool = False, **options: Any) -> list[Any]:
        return await self._many(self._calls_sign(key, items, hash_algorithm, batch_size, options), return_exceptions)

    async def verify_batch(self, key: str, items: Sequence[tuple[Bytes, str]], *, hash_algorithm: str | None = None,
                           batch_size: int | None = None, return_exceptions: bool = False,
                           **options: Any) -> list[Any]:
        calls = self._calls_verify(key, items, "signature", hash_algorithm, batch_size, options)
        return await self._many(calls, return_exceptions)

    async def hmac(self, key: str, data: Bytes, *, algorithm: str | None = None,
                   key_version: int | None = None) -> str:
        return await self._one(_ops.hmac(self._s.mount, key, data, algorithm=algorithm, key_version=key_version))

    async def hmac_batch(self, key: str, items: Sequence[Bytes], *, algorithm: str | None = None,
                         batch_size: int | None = None, return_exceptions: bool = False) -> list[Any]:
        return await self._many(self._calls_hmac(key, items, algorithm, batch_size), return_exceptions)

    async def verify_hmac(self, key: str, data: Bytes, hmac: str, *, algorithm: str | None = None) -> bool:
        return await self._one(self._call_verify(key, data, "hmac", hmac, algorithm, None, False, {}))

    async def verify_hmac_batch(self, key: str, items: Sequence[tuple[Bytes, str]], *, algorithm: str | None = None,
                                batch_size: int | None = None, return_exceptions: bool = False) -> list[Any]:
        calls = self._calls_verify(key, items, "hmac", algorithm, batch_size, {})
        return await self._many(calls, return_exceptions)

    # -- keys ------------------------------------------------------------------ #
    async def create_key(self, key: str, *, type: str = "aes256-gcm96", **options: Any) -> dict[str, Any]:
        return await self._one(_ops.create_key(self._s.mount, key, {"type": type, **options}))

    async def read_key(self, key: str) -> dict[str, Any]:
        return await self._one(_ops.read_key(self._s.mount, key))

    async def rotate_key(self, key: str) -> dict[str, Any]:
        return await self._one(_ops.rotate_key(self._s.mount, key))

    async def configure_key(self, key: str, **options: Any) -> dict[str, Any]:
        return await self._one(_ops.configure_key(self._s.mount, key, options))

    async def delete_key(self, key: str) -> None:
        await self._one(_ops.delete_key(self._s.mount, key))
