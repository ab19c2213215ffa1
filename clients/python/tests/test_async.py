"""The asyncio client against a real cipherd dev server."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from cipherd import (
    AsyncClient,
    BatchError,
    DecryptItem,
    EncryptItem,
    InvalidCiphertext,
    KeyNotFound,
    PermissionDenied,
    Retry,
    SealedError,
    ServerError,
)


@pytest.fixture
async def aclient(server, counter):
    c = AsyncClient(server.url, token=server.token, event_hooks={"request": [counter.async_hook]})
    yield c
    await c.aclose()


async def test_round_trip_and_concurrency(aclient: AsyncClient, name) -> None:
    key = name()
    await aclient.create_key(key)
    plains = [b"value %d" % i for i in range(30)]
    cts = await asyncio.gather(*(aclient.encrypt(key, p, associated_data=b"ad") for p in plains))
    opened = await asyncio.gather(*(aclient.decrypt(key, c, associated_data=b"ad") for c in cts))
    assert list(opened) == plains


async def test_batches_are_chunked(aclient: AsyncClient, counter, name) -> None:
    key = name()
    await aclient.create_key(key)
    counter.reset()
    items = [EncryptItem(b"p%d" % i, associated_data=b"r%d" % i) for i in range(25)]
    cts = await aclient.encrypt_batch(key, items, batch_size=10)
    assert counter.count == 3
    opened = await aclient.decrypt_batch(key, [DecryptItem(c, associated_data=b"r%d" % i) for i, c in enumerate(cts)],
                                         batch_size=10)
    assert opened == [b"p%d" % i for i in range(25)]
    with pytest.raises(BatchError) as info:
        await aclient.decrypt_batch(key, [DecryptItem(cts[0], associated_data=b"r1"), cts[1]])
    assert set(info.value.failures) == {0, 1}
    assert all(isinstance(e, InvalidCiphertext) for e in info.value.failures.values())


async def test_rewrap_datakey_sign_hmac(aclient: AsyncClient, name) -> None:
    key = name()
    ct = await aclient.encrypt(key, b"x")
    await aclient.rotate_key(key)
    assert (await aclient.rewrap(key, ct)).startswith("vault:v2:")
    assert (await aclient.rewrap_batch(key, [ct]))[0].startswith("vault:v2:")
    dk = await aclient.datakey(key, bits=128)
    assert dk.plaintext is not None and await aclient.decrypt(key, dk.ciphertext) == dk.plaintext
    signer = name()
    await aclient.create_key(signer, type="ed25519")
    sig = await aclient.sign(signer, b"m")
    assert await aclient.verify(signer, b"m", sig) and not await aclient.verify(signer, b"n", sig)
    sigs = await aclient.sign_batch(signer, [b"a", b"b"])
    assert await aclient.verify_batch(signer, [(b"a", sigs[0]), (b"a", sigs[1])]) == [True, False]
    mac = await aclient.hmac(key, b"m")
    assert await aclient.verify_hmac(key, b"m", mac)
    assert (await aclient.hmac_batch(key, [b"m"]))[0] == mac
    assert await aclient.verify_hmac_batch(key, [(b"m", mac), (b"n", mac)]) == [True, False]


async def test_errors(server, aclient: AsyncClient, name) -> None:
    with pytest.raises(KeyNotFound):
        await aclient.read_key(name())
    key = name()
    ct = await aclient.encrypt(key, b"x")
    with pytest.raises(InvalidCiphertext):
        await aclient.decrypt(key, ct[:-4] + ("AAAA" if not ct.endswith("AAAA") else "BBBB"))
    async with AsyncClient(server.url, token="nope") as bad:
        with pytest.raises(PermissionDenied):
            await bad.encrypt(key, b"x")


async def test_sealed(fresh_server, name) -> None:
    async with AsyncClient(fresh_server.url, token=fresh_server.token, retry=Retry(attempts=2, backoff=0.001)) as c:
        key = name()
        ct = await c.encrypt(key, b"x")
        async with httpx.AsyncClient() as raw:
            r = await raw.put(f"{fresh_server.url}/v1/sys/seal", headers={"X-Vault-Token": fresh_server.token})
            assert r.status_code in (200, 204)
        with pytest.raises(SealedError):
            await c.decrypt(key, ct)


class AsyncFlakyProxy(httpx.AsyncBaseTransport):
    """Answers the first ``failures`` requests with 502; forwards the rest."""

    def __init__(self, failures: int) -> None:
        self.failures, self.seen = failures, 0
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen += 1
        if self.seen <= self.failures:
            return httpx.Response(502, json={"errors": ["upstream unavailable"]})
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_retries(server, name) -> None:
    fast = Retry(attempts=3, backoff=0.001, max_backoff=0.01)
    proxy = AsyncFlakyProxy(failures=2)
    async with AsyncClient(server.url, token=server.token, retry=fast, transport=proxy) as c:
        key = name()
        assert await c.decrypt(key, await c.encrypt(key, b"after two 502s")) == b"after two 502s"
    assert proxy.seen == 4  # 3 attempts for the encrypt, 1 for the decrypt
    proxy = AsyncFlakyProxy(failures=10)
    async with AsyncClient(server.url, token=server.token, retry=fast, transport=proxy) as c:
        with pytest.raises(ServerError):
            await c.encrypt(name(), b"x")
    assert proxy.seen == 3
