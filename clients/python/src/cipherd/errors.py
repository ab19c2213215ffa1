"""Exceptions raised by the cipherd client.

Every exception derives from :class:`CipherdError`. The server speaks Vault's
wire format, so errors arrive as an HTTP status plus ``{"errors": [...]}``;
:func:`from_response` maps them to a class once, here, for the sync client, the
async client and per-item batch errors alike. Messages never contain plaintext,
ciphertext or the token: they are the server's own texts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class CipherdError(Exception):
    """Base class: any failure reported by the client or the server."""

    def __init__(self, message: str, *, status: int | None = None, errors: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        #: HTTP status of the response, ``None`` for transport and per-item errors.
        self.status = status
        #: The server's ``errors`` list, verbatim.
        self.errors = list(errors)


class SealedError(CipherdError):
    """The server is sealed (HTTP 503): no key is in memory until an operator unseals it."""


class PermissionDenied(CipherdError):
    """HTTP 403: the token is missing, unknown, expired, or its policies forbid the request."""


class KeyNotFound(CipherdError):
    """The named key does not exist (and the operation does not create it)."""


class InvalidCiphertext(CipherdError):
    """A ciphertext (or signature/HMAC string) is malformed, too old for the key's
    ``min_decryption_version``, or fails authentication: wrong key, wrong
    ``context`` or ``associated_data``, or tampering. The server deliberately does
    not say which."""


class InvalidRequest(CipherdError):
    """Any other 4xx: a parameter the server refused."""


class ServerError(CipherdError):
    """A 5xx other than 503 that persisted through the retries."""


class ConnectionFailed(CipherdError):
    """The server could not be reached (connection refused, reset, timed out) after the retries."""


class BatchError(CipherdError, Generic[T]):
    """One or more items of a batch call failed.

    ``results`` has one entry per input item, in input order: the item's value,
    or the :class:`CipherdError` that item got. ``failures`` maps the index of
    each failed item to its error.
    """

    def __init__(self, results: list[T | CipherdError]) -> None:
        self.results = results
        self.failures = {i: r for i, r in enumerate(results) if isinstance(r, CipherdError)}
        first = next(iter(self.failures.items()))
        super().__init__(
            f"{len(self.failures)} of {len(results)} batch items failed; first: [{first[0]}] {first[1].message}"
        )


# Per-message classification (the server's texts are Vault's, see the reference's §5).
# "encryption key not found", "signing key not found", "signature verification
# key not found", and plain "key not found" (rotate, config of a missing key).
_NOT_FOUND = ("key not found",)
_BAD_CIPHERTEXT = (
    "cipher: message authentication failed",
    "invalid ciphertext",
    "ciphertext or signature version is disallowed",
    "invalid signature",
    "invalid hmac",
    "invalid base64 signature",
    "unable to decode verification hmac",
    "supplied signature",
    "cannot verify hmac",
    "missing ciphertext",
)


def classify(message: str, status: int | None = None, errors: Sequence[str] = ()) -> CipherdError:
    """The exception for one error message (a response's or a batch item's)."""
    low = message.lower()
    if status == 503:
        return SealedError(message, status=status, errors=errors)
    if status == 403:
        return PermissionDenied(message, status=status, errors=errors)
    if any(text in low for text in _NOT_FOUND):
        return KeyNotFound(message, status=status, errors=errors)
    if any(low.startswith(text) or f"* {text}" in low for text in _BAD_CIPHERTEXT):
        return InvalidCiphertext(message, status=status, errors=errors)
    if status is not None and status >= 500:
        return ServerError(message, status=status, errors=errors)
    return InvalidRequest(message, status=status, errors=errors)


def from_response(status: int, body: object, *, missing_is_key: bool = False) -> CipherdError:
    """The exception for a non-2xx response. ``missing_is_key``: a 404 on this
    path means the key does not exist (``GET keys/:name`` answers ``404 {"errors": []}``)."""
    errors: list[str] = []
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        errors = [str(e) for e in body["errors"]]
    message = "; ".join(e.strip() for e in errors) or f"HTTP {status}"
    if status == 404 and missing_is_key:
        return KeyNotFound(message if errors else "key not found", status=status, errors=errors)
    return classify(message, status, errors)
