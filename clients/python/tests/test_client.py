"""The synchronous client against a real cipherd dev server."""

from __future__ import annotations

import base64

import pytest

from cipherd import (
    BatchError,
    Client,
    DecryptItem,
    EncryptItem,
    InvalidCiphertext,
    KeyNotFound,
)


def test_encrypt_decrypt_bytes_and_str(client: Client, name) -> None:
    key = name()
    ct = client.encrypt(key, b"\x00\x01secret\xff")
    assert ct.startswith("vault:v1:")
    assert client.decrypt(key, ct) == b"\x00\x01secret\xff"
    assert client.decrypt(key, client.encrypt(key, "héllo")) == "héllo".encode()
    assert client.decrypt(key, client.encrypt(key, b"")) == b""


def test_ciphertext_is_vault_format_and_fresh_each_time(client: Client, name) -> None:
    key = name()
    a, b = client.encrypt(key, b"same"), client.encrypt(key, b"same")
    assert a != b  # random nonce
    payload = base64.b64decode(a.split(":", 2)[2])
    assert len(payload) == 12 + len(b"same") + 16  # nonce || ciphertext || tag (AES-GCM)


def test_associated_data_must_match(client: Client, name) -> None:
    key = name()
    ct = client.encrypt(key, b"card", associated_data=b"row-1")
    assert client.decrypt(key, ct, associated_data=b"row-1") == b"card"
    with pytest.raises(InvalidCiphertext):
        client.decrypt(key, ct, associated_data=b"row-2")
    with pytest.raises(InvalidCiphertext):
        client.decrypt(key, ct)


def test_derived_key_context(client: Client, name) -> None:
    key = name()
    client.create_key(key, derived=True)
    ct = client.encrypt(key, b"v", context=b"tenant-a")
    assert client.decrypt(key, ct, context=b"tenant-a") == b"v"
    with pytest.raises(InvalidCiphertext):
        client.decrypt(key, ct, context=b"tenant-b")


def test_rotate_then_rewrap_and_old_versions(client: Client, name) -> None:
    key = name()
    old = client.encrypt(key, b"payload")
    info = client.rotate_key(key)
    assert info["latest_version"] == 2
    assert client.decrypt(key, old) == b"payload"  # v1 still opens
    new = client.rewrap(key, old)
    assert new.startswith("vault:v2:")
    assert client.decrypt(key, new) == b"payload"
    assert client.encrypt(key, b"x", key_version=1).startswith("vault:v1:")
    client.configure_key(key, min_decryption_version=2)
    with pytest.raises(InvalidCiphertext):
        client.decrypt(key, old)
    assert client.decrypt(key, new) == b"payload"


def test_batch_round_trip_in_order_over_several_requests(client: Client, counter, name) -> None:
    key = name()
    client.encrypt(key, b"create")
    counter.reset()
    items = [f"item {i}".encode() for i in range(20)]
    cts = client.encrypt_batch(key, items, batch_size=7)
    assert counter.count == 3  # ceil(20 / 7) batch requests, not 20
    assert all(c.startswith("vault:v1:") for c in cts)
    counter.reset()
    assert client.decrypt_batch(key, cts, batch_size=7) == items
    assert counter.count == 3
    assert [m[1] for m in counter.requests] == [f"/v1/transit/decrypt/{key}"] * 3


def test_batch_with_associated_data_and_rewrap(client: Client, name) -> None:
    key = name()
    items = [EncryptItem(b"p%d" % i, associated_data=b"row-%d" % i) for i in range(5)]
    cts = client.encrypt_batch(key, items)
    opened = client.decrypt_batch(key, [DecryptItem(c, associated_data=b"row-%d" % i) for i, c in enumerate(cts)])
    assert opened == [b"p%d" % i for i in range(5)]
    client.rotate_key(key)
    plain = client.encrypt_batch(key, [b"a", b"b"])
    rewrapped = client.rewrap_batch(key, plain)
    assert all(c.startswith("vault:v2:") for c in rewrapped)
    assert client.decrypt_batch(key, rewrapped) == [b"a", b"b"]


def test_batch_item_errors_are_per_item(client: Client, name) -> None:
    key = name()
    good = client.encrypt(key, b"good")
    bound = client.encrypt(key, b"bound", associated_data=b"A")
    items = [DecryptItem(good), DecryptItem(bound, associated_data=b"B"), DecryptItem("vault:v1:!!notbase64")]
    with pytest.raises(BatchError) as info:
        client.decrypt_batch(key, items)
    err = info.value
    assert err.results[0] == b"good"
    assert sorted(err.failures) == [1, 2]
    assert isinstance(err.failures[1], InvalidCiphertext)
    assert isinstance(err.failures[2], InvalidCiphertext)
    results = client.decrypt_batch(key, items, return_exceptions=True)
    assert results[0] == b"good" and isinstance(results[1], InvalidCiphertext)


def test_batch_on_missing_key(client: Client, name) -> None:
    # A missing key fails the whole request (400 "encryption key not found"), not its items.
    with pytest.raises(KeyNotFound) as info:
        client.decrypt_batch(name(), ["vault:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"])
    assert info.value.status == 400


def test_datakey(client: Client, name) -> None:
    key = name()
    client.create_key(key)
    dk = client.datakey(key)
    assert dk.plaintext is not None and len(dk.plaintext) == 32
    assert client.decrypt(key, dk.ciphertext) == dk.plaintext
    wrapped = client.datakey(key, wrapped=True, bits=512)
    assert wrapped.plaintext is None
    assert len(client.decrypt(key, wrapped.ciphertext)) == 64
    bound = client.datakey(key, associated_data=b"file-7")
    assert client.decrypt(key, bound.ciphertext, associated_data=b"file-7") == bound.plaintext
    with pytest.raises(InvalidCiphertext):
        client.decrypt(key, bound.ciphertext, associated_data=b"file-8")


@pytest.mark.parametrize("key_type", ["ed25519", "ecdsa-p256"])
def test_sign_verify(client: Client, name, key_type: str) -> None:
    key = name()
    client.create_key(key, type=key_type)
    sig = client.sign(key, b"message")
    assert sig.startswith("vault:v1:")
    assert client.verify(key, b"message", sig) is True
    assert client.verify(key, b"other message", sig) is False


def test_hmac_and_verify(client: Client, name) -> None:
    key = name()
    client.create_key(key)
    mac = client.hmac(key, b"data")
    assert mac.startswith("vault:v1:")
    assert client.hmac(key, b"data") == mac  # deterministic
    assert client.verify_hmac(key, b"data", mac) is True
    assert client.verify_hmac(key, b"tampered", mac) is False
    mac512 = client.hmac(key, b"data", algorithm="sha2-512")
    assert mac512 != mac and client.verify_hmac(key, b"data", mac512, algorithm="sha2-512")
    macs = client.hmac_batch(key, [b"data", b"x"])
    assert macs[0] == mac and macs[1] != mac
    assert client.verify_hmac_batch(key, [(b"data", mac), (b"x", mac), (b"x", macs[1])]) == [True, False, True]
    with pytest.raises(BatchError) as info:
        client.verify_hmac_batch(key, [(b"data", mac), (b"data", "not-an-hmac")])
    assert info.value.results[0] is True and isinstance(info.value.failures[1], InvalidCiphertext)


def test_sign_and_verify_batches(client: Client, counter, name) -> None:
    key = name()
    client.create_key(key, type="ecdsa-p256")
    messages = [b"m%d" % i for i in range(12)]
    counter.reset()
    sigs = client.sign_batch(key, messages, batch_size=5, marshaling_algorithm="jws")
    assert counter.count == 3
    assert client.verify(key, b"m3", sigs[3], marshaling_algorithm="jws")
    pairs = [(m, s) for m, s in zip(messages, sigs)] + [(b"other", sigs[0])]
    assert client.verify_batch(key, pairs, marshaling_algorithm="jws") == [True] * 12 + [False]
    with pytest.raises(BatchError) as info:
        client.verify_batch(key, [(b"m0", sigs[0]), (b"m0", "vault:v1:garbage")], marshaling_algorithm="jws")
    assert info.value.results[0] is True and isinstance(info.value.failures[1], InvalidCiphertext)


def test_token_and_address_from_environment(server, monkeypatch: pytest.MonkeyPatch, name) -> None:
    for var in ("CIPHERD_ADDR", "VAULT_ADDR", "CIPHERD_TOKEN", "VAULT_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("VAULT_ADDR", server.url)
    monkeypatch.setenv("VAULT_TOKEN", server.token)
    with Client() as c:
        key = name()
        assert c.decrypt(key, c.encrypt(key, b"v")) == b"v"
    # CIPHERD_* wins over VAULT_*.
    monkeypatch.setenv("VAULT_ADDR", "http://127.0.0.1:1")
    monkeypatch.setenv("VAULT_TOKEN", "wrong")
    monkeypatch.setenv("CIPHERD_ADDR", server.url)
    monkeypatch.setenv("CIPHERD_TOKEN", server.token)
    with Client() as c:
        key = name()
        assert c.decrypt(key, c.encrypt(key, b"w")) == b"w"
