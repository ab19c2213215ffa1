"""What the sync and async clients share: settings from the environment, the
retry policy, and the reading of a response into a value or an exception."""

from __future__ import annotations

import json
import os
import random
import ssl
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from ._ops import Call
from .errors import CipherdError, ConnectionFailed, from_response

T = TypeVar("T")

DEFAULT_ADDR = "http://127.0.0.1:8200"
DEFAULT_BATCH_SIZE = 200
"""Items per batch request. Small enough for OpenBao's default JSON limits
(1000 strings per body: an item with plaintext and associated data costs 4),
large enough that HTTP overhead is a small share of a request."""

RETRY_STATUSES = frozenset({429, 500, 502, 504})


@dataclass(frozen=True)
class Retry:
    """Retry policy.

    A call is retried, with exponential backoff and jitter, when the server
    cannot be reached or answers 429, 500, 502 or 504. Key management writes
    that are not idempotent (create, rotate, config, delete) are retried only
    when the connection failed before the request was sent.

    503 means sealed. Unsealing needs an operator with key shares, so by default
    :class:`~cipherd.errors.SealedError` is raised at once, without retrying: a
    caller learns in milliseconds rather than after the backoff. Set
    ``retry_sealed=True`` where a sealed server is expected to come back on its
    own within the backoff (a restart with ``--unseal-key-file``); a server still
    sealed after the last attempt then raises ``SealedError``.
    """

    attempts: int = 4
    backoff: float = 0.05
    max_backoff: float = 2.0
    retry_sealed: bool = False

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        base = min(self.max_backoff, self.backoff * 2.0 ** (attempt - 1))
        return base * (0.5 + random.random() / 2)


NO_RETRY = Retry(attempts=1)


class _RetryAfter(Exception):
    """Internal: this attempt failed in a way worth another try."""

    def __init__(self, error: CipherdError) -> None:
        self.error = error


@dataclass(frozen=True)
class Settings:
    addr: str
    token: str | None
    mount: str
    batch_size: int
    retry: Retry
    verify: ssl.SSLContext | bool


def settings(
    addr: str | None, token: str | None, mount: str, batch_size: int, retry: Retry | None,
    verify: str | bool | ssl.SSLContext | None,
) -> Settings:
    """Explicit arguments first, then ``CIPHERD_*``, then ``VAULT_*``. ``verify``:
    a CA bundle path, an ``SSLContext``, or a bool (default: ``CIPHERD_CACERT`` or
    ``VAULT_CACERT`` if set, else the system's trust store)."""
    env = os.environ
    addr = addr or env.get("CIPHERD_ADDR") or env.get("VAULT_ADDR") or DEFAULT_ADDR
    token = token or env.get("CIPHERD_TOKEN") or env.get("VAULT_TOKEN")
    if verify is None:
        verify = env.get("CIPHERD_CACERT") or env.get("VAULT_CACERT") or True
    if isinstance(verify, str):
        verify = ssl.create_default_context(cafile=verify)
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    return Settings(addr.rstrip("/"), token, mount.strip("/"), batch_size, retry or Retry(), verify)


def headers(s: Settings) -> dict[str, str]:
    h = {"X-Vault-Request": "true", "Content-Type": "application/json"}
    if s.token:
        h["X-Vault-Token"] = s.token
    return h


def url(s: Settings, call: Call[Any]) -> str:
    return f"{s.addr}/v1/{call.path}"


def transport_failure(call: Call[T], exc: httpx.TransportError) -> _RetryAfter | ConnectionFailed:
    """A request that got no response. Only a refused connection proves the
    request was never sent; other failures are retried for idempotent calls only."""
    error = ConnectionFailed(f"cannot reach cipherd: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    if call.idempotent or isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return _RetryAfter(error)
    return error


def outcome(call: Call[T], retry: Retry, response: httpx.Response | None,
            exc: httpx.TransportError | None) -> tuple[bool, Any]:
    """One attempt's result: ``(True, value)``, or ``(False, error)`` when another
    attempt may succeed; raises the final error otherwise."""
    if response is None:
        assert exc is not None  # invariant: an attempt has a response or an exception
        failure = transport_failure(call, exc)
        if not isinstance(failure, _RetryAfter):
            raise failure from exc
        return False, failure.error
    try:
        return True, settle(call, retry, response.status_code, response.content)
    except _RetryAfter as again:
        return False, again.error


def settle(call: Call[T], retry: Retry, status: int, content: bytes) -> T:
    """The value of a response, or raise: ``_RetryAfter`` (retryable) or the final error."""
    body: Any = None
    if content:
        try:
            body = json.loads(content)
        except ValueError:
            body = None
    if 200 <= status < 300:
        data = body.get("data") if isinstance(body, dict) else None
        return call.parse(data if isinstance(data, dict) else {})
    if call.batch and isinstance(body, dict) and isinstance(body.get("data"), dict):
        if "batch_results" in body["data"]:
            # Vault's partial-failure reply: the full envelope with per-item errors.
            return call.parse(body["data"])
    error = from_response(status, body, missing_is_key=call.missing_is_key)
    retryable = status in RETRY_STATUSES or (status == 503 and retry.retry_sealed)
    if retryable and (call.idempotent or status == 503):
        raise _RetryAfter(error)
    raise error
