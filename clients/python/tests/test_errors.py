"""Every exception class, and the retry policy, against real servers.

Faults the dev server cannot produce on demand (a 502 from a proxy in front of
it) are injected by a transport that answers the first N requests itself and
forwards the rest to the real server.
"""

from __future__ import annotations

import socket

import httpx
import pytest

from cipherd import (
    CipherdError,
    Client,
    ConnectionFailed,
    InvalidCiphertext,
    InvalidRequest,
    KeyNotFound,
    PermissionDenied,
    Retry,
    SealedError,
    ServerError,
)

FAST = Retry(attempts=4, backoff=0.001, max_backoff=0.01)


class FlakyProxy(httpx.BaseTransport):
    """Answers the first ``failures`` requests with ``status``; forwards the rest."""

    def __init__(self, failures: int, status: int = 502) -> None:
        self.failures = failures
        self.status = status
        self.seen = 0
        self.forwarded = 0
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen += 1
        if self.seen <= self.failures:
            return httpx.Response(self.status, json={"errors": ["upstream unavailable"]})
        self.forwarded += 1
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket closes


def test_all_errors_derive_from_base() -> None:
    for cls in (SealedError, PermissionDenied, KeyNotFound, InvalidCiphertext, InvalidRequest, ServerError,
                ConnectionFailed):
        assert issubclass(cls, CipherdError)


def test_permission_denied(server, name) -> None:
    with Client(server.url, token="not-a-token") as c:
        with pytest.raises(PermissionDenied) as info:
            c.encrypt(name(), b"x")
    assert info.value.status == 403
    with Client(server.url, token="") as c:  # no token at all
        with pytest.raises(PermissionDenied):
            c.encrypt(name(), b"x")


def test_key_not_found(client: Client, name) -> None:
    with pytest.raises(KeyNotFound) as info:
        client.decrypt(name(), "vault:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    assert info.value.status == 400
    with pytest.raises(KeyNotFound) as info:
        client.read_key(name())
    assert info.value.status == 404
    with pytest.raises(KeyNotFound):
        client.sign(name(), b"m")
    with pytest.raises(KeyNotFound):
        client.rotate_key(name())


@pytest.mark.parametrize(
    "mangle",
    [
        lambda ct: ct[:-4] + ("AAAA" if not ct.endswith("AAAA") else "BBBB"),  # tampered tag
        lambda ct: "not a ciphertext",
        lambda ct: ct.replace("vault:v1:", "vault:v9:"),  # version too new
        lambda ct: "vault:v1:@@@@",  # bad base64
        lambda ct: "vault:v1:AAAA",  # shorter than a nonce
    ],
    ids=["tampered", "no-prefix", "too-new", "bad-base64", "too-short"],
)
def test_invalid_ciphertext(client: Client, name, mangle) -> None:
    key = name()
    ct = client.encrypt(key, b"payload")
    with pytest.raises(InvalidCiphertext) as info:
        client.decrypt(key, mangle(ct))
    assert info.value.status == 400


def test_invalid_request(client: Client, name) -> None:
    key = name()
    client.create_key(key)
    with pytest.raises(InvalidRequest) as info:
        client.datakey(key, bits=7)
    assert info.value.status == 400
    assert "invalid bit length" in str(info.value)


def test_sealed_raises_at_once_by_default(fresh_server, counter, name) -> None:
    key = name()
    with fresh_server.client(event_hooks={"request": [counter]}) as c:
        ct = c.encrypt(key, b"before the seal")
        seal = httpx.put(f"{fresh_server.url}/v1/sys/seal", headers={"X-Vault-Token": fresh_server.token})
        assert seal.status_code in (200, 204), seal.text
        counter.reset()
        with pytest.raises(SealedError) as info:
            c.decrypt(key, ct)
        assert info.value.status == 503
        assert counter.count == 1  # not retried: unsealing needs an operator


def test_sealed_retried_when_asked(fresh_server, counter, name) -> None:
    retry = Retry(attempts=3, backoff=0.001, max_backoff=0.01, retry_sealed=True)
    with fresh_server.client(event_hooks={"request": [counter]}, retry=retry) as c:
        httpx.put(f"{fresh_server.url}/v1/sys/seal", headers={"X-Vault-Token": fresh_server.token})
        counter.reset()
        with pytest.raises(SealedError):
            c.encrypt(name(), b"x")
        assert counter.count == 3


def test_5xx_is_retried_then_succeeds(server, name) -> None:
    proxy = FlakyProxy(failures=2)
    with server.client(transport=proxy, retry=FAST) as c:
        key = name()
        ct = c.encrypt(key, b"survives two 502s")
        assert proxy.seen == 3 and proxy.forwarded == 1
        assert c.decrypt(key, ct) == b"survives two 502s"


def test_5xx_persisting_raises_server_error(server, name) -> None:
    proxy = FlakyProxy(failures=100, status=500)
    with server.client(transport=proxy, retry=FAST) as c:
        with pytest.raises(ServerError) as info:
            c.encrypt(name(), b"x")
    assert info.value.status == 500
    assert proxy.seen == 4  # FAST.attempts


def test_non_idempotent_call_is_not_retried_after_5xx(server, client: Client, name) -> None:
    key = name()
    client.create_key(key)
    proxy = FlakyProxy(failures=1)
    with server.client(transport=proxy, retry=FAST) as c:
        with pytest.raises(ServerError):
            c.rotate_key(key)
    assert proxy.seen == 1
    assert client.read_key(key)["latest_version"] == 1  # rotated zero times, not twice


def test_connection_refused_is_retried_then_connection_failed(counter, name) -> None:
    with Client(f"http://127.0.0.1:{closed_port()}", token="t", retry=FAST,
                event_hooks={"request": [counter]}) as c:
        with pytest.raises(ConnectionFailed):
            c.encrypt(name(), b"x")
    assert counter.count == FAST.attempts
