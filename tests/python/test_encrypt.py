"""encrypt / decrypt / rewrap / datakey through hvac, single and batch
(reference §5.1–§5.4, §6, §8.2–§8.4)."""

from __future__ import annotations

import os

import hvac.exceptions as exc
import pytest

from support import SYMMETRIC, b64, create_key, payload, unb64

PT = b64("hello world")


@pytest.mark.parametrize("key_type", SYMMETRIC)
def test_roundtrip_symmetric(client, name, key_type):
    t = client.secrets.transit
    k = name()
    create_key(client, k, key_type)
    for plain in (b"", b"x", os.urandom(1000)):
        resp = t.encrypt_data(k, plaintext=b64(plain))
        assert resp["data"]["key_version"] == 1
        ct = resp["data"]["ciphertext"]
        assert t.decrypt_data(k, ciphertext=ct)["data"]["plaintext"] == b64(plain)


def test_encrypt_upsert_creates_key(transit, name):
    k = name()
    ct = transit.encrypt_data(k, plaintext=PT)["data"]["ciphertext"]
    data = transit.read_key(k)["data"]
    assert data["type"] == "aes256-gcm96"
    assert data["derived"] is False
    assert transit.decrypt_data(k, ciphertext=ct)["data"]["plaintext"] == PT


def test_encrypt_upsert_with_type_and_context(transit, name):
    k = name()
    transit.encrypt_data(k, plaintext=PT, type="chacha20-poly1305", context=b64("ctx"))
    data = transit.read_key(k)["data"]
    assert data["type"] == "chacha20-poly1305"
    assert data["derived"] is True  # first request carried a context


def test_encrypt_upsert_bad_type(transit, name):
    with pytest.raises(exc.InvalidRequest):
        transit.encrypt_data(name(), plaintext=PT, type="ecdsa-p256")
    with pytest.raises(exc.InvalidRequest):
        transit.encrypt_data(name(), plaintext=PT, type="bogus")


def test_associated_data(client, name):
    t = client.secrets.transit
    for key_type in ("aes256-gcm96", "chacha20-poly1305"):
        k = name()
        create_key(client, k, key_type)
        aad = b64("meta")
        ct = t.encrypt_data(k, plaintext=PT, associated_data=aad)["data"]["ciphertext"]
        assert t.decrypt_data(k, ciphertext=ct, associated_data=aad)["data"]["plaintext"] == PT
        with pytest.raises(exc.InvalidRequest):
            t.decrypt_data(k, ciphertext=ct)
        with pytest.raises(exc.InvalidRequest):
            t.decrypt_data(k, ciphertext=ct, associated_data=b64("other"))


def test_associated_data_rejected_for_rsa(transit, name):
    k = name()
    transit.create_key(k, key_type="rsa-2048")
    with pytest.raises(exc.InvalidRequest):
        transit.encrypt_data(k, plaintext=PT, associated_data=b64("meta"))


def test_rsa_encrypt_decrypt_oaep(transit, name):
    """§8.5: RSA ciphertext is OAEP-SHA256; build one locally and have the server decrypt it."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    k = name()
    transit.create_key(k, key_type="rsa-2048")
    ct = transit.encrypt_data(k, plaintext=PT)["data"]["ciphertext"]
    assert len(unb64(payload(ct)[1])) == 256
    assert transit.decrypt_data(k, ciphertext=ct)["data"]["plaintext"] == PT
    pem = transit.read_key(k)["data"]["keys"]["1"]["public_key"]
    pub = serialization.load_pem_public_key(pem.encode())
    local = pub.encrypt(b"from python", padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(),
                                                     label=None))
    got = transit.decrypt_data(k, ciphertext="vault:v1:" + b64(local))["data"]["plaintext"]
    assert unb64(got) == b"from python"


def test_derived_key_requires_context(transit, name):
    k = name()
    transit.create_key(k, derived=True)
    with pytest.raises(exc.InvalidRequest):
        transit.encrypt_data(k, plaintext=PT)
    c1, c2 = b64("ctx-one"), b64("ctx-two")
    ct = transit.encrypt_data(k, plaintext=PT, context=c1)["data"]["ciphertext"]
    assert transit.decrypt_data(k, ciphertext=ct, context=c1)["data"]["plaintext"] == PT
    with pytest.raises(exc.InvalidRequest):
        transit.decrypt_data(k, ciphertext=ct, context=c2)
    with pytest.raises(exc.InvalidRequest):
        transit.decrypt_data(k, ciphertext=ct)


def test_convergent_encryption_is_deterministic(client, name):
    t = client.secrets.transit
    for key_type in ("aes256-gcm96", "chacha20-poly1305", "aes128-gcm96"):
        k = name()
        create_key(client, k, key_type, derived=True, convergent_encryption=True)
        ctx = b64("ctx1")
        a = t.encrypt_data(k, plaintext=PT, context=ctx)["data"]["ciphertext"]
        b = t.encrypt_data(k, plaintext=PT, context=ctx)["data"]["ciphertext"]
        assert a == b, key_type
        other = t.encrypt_data(k, plaintext=PT, context=b64("ctx2"))["data"]["ciphertext"]
        assert other != a
        # §8.4: associated data does not change the nonce, only the ciphertext/tag.
        with_aad = t.encrypt_data(k, plaintext=PT, context=ctx, associated_data=b64("meta"))["data"]["ciphertext"]
        assert with_aad != a
        assert unb64(payload(with_aad)[1])[:12] == unb64(payload(a)[1])[:12]
        assert t.decrypt_data(k, ciphertext=a, context=ctx)["data"]["plaintext"] == PT
        data = t.read_key(k)["data"]
        assert data["convergent_encryption"] is True
        assert data["convergent_encryption_version"] == -1


def test_decrypt_errors(transit, name):
    k = name()
    transit.create_key(k)
    ct = transit.encrypt_data(k, plaintext=PT)["data"]["ciphertext"]
    v, body = payload(ct)
    raw = bytearray(unb64(body))
    raw[-1] ^= 1
    bad = [
        "not-a-ciphertext",                 # no prefix
        "vault:v1",                          # wrong number of fields
        "vault:vX:" + body,                  # version not a number
        "vault:v9:" + body,                  # version too new
        "vault:v1:@@@@",                     # bad base64
        "vault:v1:" + b64(b"short"),         # shorter than the nonce
        "vault:v1:" + b64(bytes(raw)),       # tampered tag
    ]
    for text in bad:
        with pytest.raises(exc.InvalidRequest):
            transit.decrypt_data(k, ciphertext=text)
    with pytest.raises(exc.InvalidRequest):
        transit.decrypt_data(name("missing"), ciphertext=ct)
    with pytest.raises(exc.InvalidRequest):  # empty ciphertext
        transit.decrypt_data(k, ciphertext="")


def test_encrypt_errors(client, name):
    t = client.secrets.transit
    k = name()
    t.create_key(k)
    with pytest.raises(exc.InvalidRequest):
        t.encrypt_data(k, plaintext="not base64!")
    with pytest.raises(exc.InvalidRequest):
        t.encrypt_data(k, plaintext=PT, key_version=5)
    e = name()
    t.create_key(e, key_type="ed25519")
    with pytest.raises(exc.InvalidRequest):
        t.encrypt_data(e, plaintext=PT)
    with pytest.raises(exc.InvalidRequest):
        t.decrypt_data(e, ciphertext="vault:v1:" + b64(b"x" * 40))
    h = name()
    client.write_data(f"transit/keys/{h}", data={"type": "hmac", "key_size": 32})
    with pytest.raises(exc.InvalidRequest):
        t.encrypt_data(h, plaintext=PT)


# --------------------------------------------------------------------------- #
# Batch
# --------------------------------------------------------------------------- #
def test_batch_roundtrip_with_references(transit, name):
    k = name()
    transit.create_key(k)
    items = [{"plaintext": b64(f"item {i}"), "reference": f"ref-{i}"} for i in range(5)]
    items.append({"plaintext": b64("no ref")})
    enc = transit.encrypt_data(k, batch_input=items)["data"]["batch_results"]
    assert len(enc) == len(items)
    assert [r["reference"] for r in enc] == [f"ref-{i}" for i in range(5)] + [""]
    assert all(r["ciphertext"].startswith("vault:v1:") and r["key_version"] == 1 for r in enc)
    assert all("error" not in r or r["error"] == "" for r in enc)

    dec_in = [{"ciphertext": r["ciphertext"], "reference": f"d-{i}"} for i, r in enumerate(enc)]
    dec = transit.decrypt_data(k, batch_input=dec_in)["data"]["batch_results"]
    assert [r["plaintext"] for r in dec] == [i["plaintext"] for i in items]
    assert [r["reference"] for r in dec] == [f"d-{i}" for i in range(len(items))]

    transit.rotate_key(k)
    rw_in = [{"ciphertext": r["ciphertext"], "reference": r["reference"]} for r in enc]
    rw = transit.rewrap_data(k, ciphertext=None, batch_input=rw_in)["data"]["batch_results"]
    assert [r["reference"] for r in rw] == [r["reference"] for r in enc]
    assert all(r["ciphertext"].startswith("vault:v2:") and r["key_version"] == 2 for r in rw)
    dec2 = transit.decrypt_data(k, batch_input=[{"ciphertext": r["ciphertext"]} for r in rw])["data"]
    assert [r["plaintext"] for r in dec2["batch_results"]] == [i["plaintext"] for i in items]


def test_batch_with_contexts(transit, name):
    k = name()
    transit.create_key(k, derived=True)
    items = [{"plaintext": b64(f"p{i}"), "context": b64(f"ctx{i}")} for i in range(3)]
    enc = transit.encrypt_data(k, batch_input=items)["data"]["batch_results"]
    dec_in = [{"ciphertext": r["ciphertext"], "context": items[i]["context"]} for i, r in enumerate(enc)]
    dec = transit.decrypt_data(k, batch_input=dec_in)["data"]["batch_results"]
    assert [r["plaintext"] for r in dec] == [i["plaintext"] for i in items]
    rw = transit.rewrap_data(k, ciphertext=None, batch_input=dec_in)["data"]["batch_results"]
    assert all(r["ciphertext"].startswith("vault:v1:") for r in rw)
    # Context in some items only -> whole request 400 (§6).
    with pytest.raises(exc.InvalidRequest):
        transit.encrypt_data(k, batch_input=[{"plaintext": PT, "context": b64("c")}, {"plaintext": PT}])


def test_batch_associated_data(transit, name):
    k = name()
    transit.create_key(k)
    items = [{"plaintext": PT, "associated_data": b64(f"aad{i}")} for i in range(2)]
    enc = transit.encrypt_data(k, batch_input=items)["data"]["batch_results"]
    dec_in = [{"ciphertext": r["ciphertext"], "associated_data": items[i]["associated_data"]}
              for i, r in enumerate(enc)]
    dec = transit.decrypt_data(k, batch_input=dec_in)["data"]["batch_results"]
    assert [r["plaintext"] for r in dec] == [PT, PT]


def test_batch_partial_failure(transit, name):
    """§6: a batch with a user-error item -> 400 with the full envelope; hvac raises
    InvalidRequest and exc.json holds the per-item results."""
    k = name()
    transit.create_key(k)
    items = [{"plaintext": PT, "reference": "good"}, {"plaintext": "@@bad@@", "reference": "bad"}]
    with pytest.raises(exc.InvalidRequest) as info:
        transit.encrypt_data(k, batch_input=items)
    body = info.value.json
    assert body is not None
    results = body["data"]["batch_results"]
    assert results[0]["reference"] == "good" and results[0]["ciphertext"].startswith("vault:v1:")
    assert results[1]["reference"] == "bad" and results[1]["error"]

    ct = results[0]["ciphertext"]
    with pytest.raises(exc.InvalidRequest) as info:
        transit.decrypt_data(k, batch_input=[{"ciphertext": ct}, {"ciphertext": "vault:v1:AAAA"}])
    results = info.value.json["data"]["batch_results"]
    assert results[0]["plaintext"] == PT
    assert results[1]["error"]


def test_batch_partial_failure_response_code(client, name):
    """partial_failure_response_code is not an hvac argument: sent via write_data."""
    t = client.secrets.transit
    k = name()
    t.create_key(k)
    resp = client.write_data(f"transit/encrypt/{k}", data={
        "batch_input": [{"plaintext": PT}, {"plaintext": "@@"}],
        "partial_failure_response_code": 200,
    })
    results = resp["data"]["batch_results"]
    assert results[0]["ciphertext"].startswith("vault:v1:")
    assert results[1]["error"]


def test_rewrap_batch_item_error_is_200(transit, name):
    k = name()
    transit.create_key(k)
    rw = transit.rewrap_data(k, ciphertext=None, batch_input=[{"ciphertext": "nope", "reference": "r"}])
    item = rw["data"]["batch_results"][0]
    assert item["reference"] == "r" and item["error"]


def test_empty_batch_is_400(transit, name):
    k = name()
    transit.create_key(k)
    with pytest.raises(exc.InvalidRequest):
        transit.encrypt_data(k, batch_input=[])


def test_rewrap_single(transit, name):
    k = name()
    transit.create_key(k)
    ct = transit.encrypt_data(k, plaintext=PT)["data"]["ciphertext"]
    transit.rotate_key(k)
    transit.rotate_key(k)
    to_v2 = transit.rewrap_data(k, ciphertext=ct, key_version=2)["data"]
    assert to_v2["ciphertext"].startswith("vault:v2:") and to_v2["key_version"] == 2
    latest = transit.rewrap_data(k, ciphertext=to_v2["ciphertext"])["data"]
    assert latest["ciphertext"].startswith("vault:v3:")
    assert transit.decrypt_data(k, ciphertext=latest["ciphertext"])["data"]["plaintext"] == PT
    with pytest.raises(exc.InvalidRequest):
        transit.rewrap_data(k, ciphertext="")


def test_rewrap_derived(transit, name):
    k = name()
    transit.create_key(k, derived=True)
    ctx = b64("c")
    ct = transit.encrypt_data(k, plaintext=PT, context=ctx)["data"]["ciphertext"]
    transit.rotate_key(k)
    new = transit.rewrap_data(k, ciphertext=ct, context=ctx)["data"]["ciphertext"]
    assert new.startswith("vault:v2:")
    assert transit.decrypt_data(k, ciphertext=new, context=ctx)["data"]["plaintext"] == PT


# --------------------------------------------------------------------------- #
# Data keys
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("bits", [None, 128, 256, 512])
def test_generate_data_key_plaintext(transit, name, bits):
    k = name()
    transit.create_key(k)
    data = transit.generate_data_key(k, key_type="plaintext", bits=bits)["data"]
    raw = unb64(data["plaintext"])
    assert len(raw) == (bits or 256) // 8
    assert data["key_version"] == 1
    assert len(unb64(payload(data["ciphertext"])[1])) == 12 + len(raw) + 16
    assert transit.decrypt_data(k, ciphertext=data["ciphertext"])["data"]["plaintext"] == data["plaintext"]


def test_generate_data_key_wrapped(transit, name):
    k = name()
    transit.create_key(k)
    data = transit.generate_data_key(k, key_type="wrapped")["data"]
    assert "plaintext" not in data or not data["plaintext"]
    assert data["ciphertext"].startswith("vault:v1:")
    assert len(unb64(transit.decrypt_data(k, ciphertext=data["ciphertext"])["data"]["plaintext"])) == 32


def test_generate_data_key_derived_and_errors(transit, name):
    k = name()
    transit.create_key(k, derived=True)
    ctx = b64("dk")
    data = transit.generate_data_key(k, key_type="plaintext", context=ctx)["data"]
    assert transit.decrypt_data(k, ciphertext=data["ciphertext"], context=ctx)["data"]["plaintext"] == data["plaintext"]
    with pytest.raises(exc.InvalidRequest):
        transit.generate_data_key(k, key_type="plaintext")  # context missing
    with pytest.raises(exc.InvalidRequest):
        transit.generate_data_key(name("missing"), key_type="wrapped")
