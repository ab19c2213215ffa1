"""cipherd: a client for cipherd's Vault Transit-compatible REST API.

>>> from cipherd import Client
>>> with Client() as c:                      # CIPHERD_ADDR/VAULT_ADDR, CIPHERD_TOKEN/VAULT_TOKEN
...     ct = c.encrypt("payments", b"4111 1111 1111 1111")
...     assert c.decrypt("payments", ct) == b"4111 1111 1111 1111"

SQLAlchemy encrypted columns: :mod:`cipherd.sqlalchemy`.
"""

from ._core import DEFAULT_BATCH_SIZE, NO_RETRY, Retry
from ._ops import DataKey, DecryptItem, EncryptItem
from .client import AsyncClient, Client
from .errors import (
    BatchError,
    CipherdError,
    ConnectionFailed,
    InvalidCiphertext,
    InvalidRequest,
    KeyNotFound,
    PermissionDenied,
    SealedError,
    ServerError,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "NO_RETRY",
    "AsyncClient",
    "BatchError",
    "CipherdError",
    "Client",
    "ConnectionFailed",
    "DataKey",
    "DecryptItem",
    "EncryptItem",
    "InvalidCiphertext",
    "InvalidRequest",
    "KeyNotFound",
    "PermissionDenied",
    "Retry",
    "SealedError",
    "ServerError",
]
__version__ = "0.1.0"
