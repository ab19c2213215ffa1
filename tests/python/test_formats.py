"""Byte-level compatibility (reference §8): server output is rebuilt or checked
locally with `cryptography` from exported key material, and locally made
ciphertexts / signatures are accepted by the server. This is what lets data
move between Vault/OpenBao and cipherd."""

from __future__ import annotations

import hashlib
import hmac as pyhmac
import os

import hvac.exceptions as exc
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from support import b64, create_key, payload, unb64

AEADS = {"aes128-gcm96": (AESGCM, 16), "aes256-gcm96": (AESGCM, 32), "chacha20-poly1305": (ChaCha20Poly1305, 32)}


def hkdf(ikm: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(ikm)


def exported(client, k, kind="encryption-key", version="1") -> str:
    return client.secrets.transit.export_key(k, key_type=kind, version=version)["data"]["keys"][version]


@pytest.mark.parametrize("key_type", list(AEADS))
def test_symmetric_payload_layout(client, name, key_type):
    """§8.2: payload = nonce(12) || ciphertext || tag(16) under the raw version key."""
    cls, size = AEADS[key_type]
    k = name()
    create_key(client, k, key_type, exportable=True)
    key = unb64(exported(client, k))
    assert len(key) == size
    t = client.secrets.transit
    ct = t.encrypt_data(k, plaintext=b64("layout"), associated_data=b64("ad"))["data"]["ciphertext"]
    raw = unb64(payload(ct)[1])
    assert cls(key).decrypt(raw[:12], raw[12:], b"ad") == b"layout"
    # and the other way round: a locally made ciphertext decrypts on the server
    nonce = os.urandom(12)
    local = "vault:v1:" + b64(nonce + cls(key).encrypt(nonce, b"from python", None))
    assert unb64(t.decrypt_data(k, ciphertext=local)["data"]["plaintext"]) == b"from python"


@pytest.mark.parametrize("key_type", list(AEADS))
def test_derived_key_is_hkdf(client, name, key_type):
    """§8.3: derived key = HKDF-SHA256(version key, salt empty, info = context)."""
    cls, size = AEADS[key_type]
    k = name()
    create_key(client, k, key_type, derived=True, exportable=True)
    base = unb64(exported(client, k))
    ctx = b"tenant-42"
    ct = client.secrets.transit.encrypt_data(k, plaintext=b64("derived"), context=b64(ctx))["data"]["ciphertext"]
    raw = unb64(payload(ct)[1])
    assert cls(hkdf(base, ctx, size)).decrypt(raw[:12], raw[12:], None) == b"derived"


@pytest.mark.parametrize("key_type", list(AEADS))
def test_convergent_v3_is_byte_exact(client, name, key_type):
    """§8.4: convergent v3 ciphertext can be recomputed exactly from the exported key."""
    cls, size = AEADS[key_type]
    k = name()
    create_key(client, k, key_type, derived=True, convergent_encryption=True, exportable=True)
    base = unb64(exported(client, k))
    ctx, plain, aad = b"ctx1", b"hello world", b"meta"
    stream = hkdf(base, ctx, size + 32)
    enc_key, nonce_key = stream[:size], stream[size:size + 32]
    nonce = pyhmac.new(nonce_key, plain, hashlib.sha256).digest()[:12]
    t = client.secrets.transit
    for ad in (None, aad):
        expected = "vault:v1:" + b64(nonce + cls(enc_key).encrypt(nonce, plain, ad))
        got = t.encrypt_data(k, plaintext=b64(plain), context=b64(ctx),
                             associated_data=b64(ad) if ad else None)["data"]["ciphertext"]
        assert got == expected


def test_rsa_oaep_decrypts_locally(client, name):
    k = name()
    client.secrets.transit.create_key(k, key_type="rsa-2048", exportable=True)
    priv = serialization.load_pem_private_key(exported(client, k).encode(), password=None)
    ct = client.secrets.transit.encrypt_data(k, plaintext=b64("rsa data"))["data"]["ciphertext"]
    raw = unb64(payload(ct)[1])
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    assert priv.decrypt(raw, oaep) == b"rsa data"
    with pytest.raises((exc.InternalServerError, exc.InvalidRequest)):
        # a PKCS#1 v1.5 ciphertext does not decrypt (OpenBao: 500, internal RSA error)
        pkcs = priv.public_key().encrypt(b"x", padding.PKCS1v15())
        client.secrets.transit.decrypt_data(k, ciphertext="vault:v1:" + b64(pkcs))


def test_ed25519_derived_key_derivation(client, name):
    """§8.3: derived Ed25519 seed = HKDF-SHA256(seed || pub, salt empty, info = context)[:32]."""
    t = client.secrets.transit
    k = name()
    t.create_key(k, key_type="ed25519", derived=True, exportable=True)
    stored = unb64(exported(client, k, "signing-key"))
    assert len(stored) == 64
    ctx = b"ctx1"
    seed = hkdf(stored, ctx, 32)
    local = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    pub = local.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    out = t.sign_data(k, hash_input=b64("hello world"), context=b64(ctx))["data"]
    assert out["public_key"] == b64(pub)
    assert out["signature"] == "vault:v1:" + b64(local.sign(b"hello world"))


@pytest.mark.parametrize("curve,key_type", [(ec.SECP256R1, "ecdsa-p256"), (ec.SECP384R1, "ecdsa-p384"),
                                            (ec.SECP521R1, "ecdsa-p521")])
def test_server_verifies_local_ecdsa(client, name, curve, key_type):
    t = client.secrets.transit
    k = name()
    t.create_key(k, key_type=key_type, exportable=True)
    priv = serialization.load_pem_private_key(exported(client, k, "signing-key").encode(), password=None)
    assert isinstance(priv.curve, curve)
    msg = b"signed in python"
    der = priv.sign(msg, ec.ECDSA(hashes.SHA384()))
    assert t.verify_signed_data(k, hash_input=b64(msg), signature="vault:v1:" + b64(der),
                                hash_algorithm="sha2-384")["data"]["valid"] is True
    r, s = decode_dss_signature(der)
    n = (priv.curve.key_size + 7) // 8
    jws = (r.to_bytes(n, "big") + s.to_bytes(n, "big"))
    import base64

    jws_text = base64.urlsafe_b64encode(jws).decode().rstrip("=")
    assert t.verify_signed_data(k, hash_input=b64(msg), signature="vault:v1:" + jws_text,
                                hash_algorithm="sha2-384", marshaling_algorithm="jws")["data"]["valid"] is True


def test_server_verifies_local_rsa(client, name):
    t = client.secrets.transit
    k = name()
    t.create_key(k, key_type="rsa-2048", exportable=True)
    priv = serialization.load_pem_private_key(exported(client, k, "signing-key").encode(), password=None)
    msg = b"rsa signed in python"
    pss = priv.sign(msg, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
    assert t.verify_signed_data(k, hash_input=b64(msg), signature="vault:v1:" + b64(pss))["data"]["valid"] is True
    assert t.verify_signed_data(k, hash_input=b64(msg), signature="vault:v1:" + b64(pss),
                                salt_length="32")["data"]["valid"] is True
    assert t.verify_signed_data(k, hash_input=b64(msg), signature="vault:v1:" + b64(pss),
                                salt_length="20")["data"]["valid"] is False
    pk = priv.sign(msg, padding.PKCS1v15(), hashes.SHA512())
    assert t.verify_signed_data(k, hash_input=b64(msg), signature="vault:v1:" + b64(pk), hash_algorithm="sha2-512",
                                signature_algorithm="pkcs1v15")["data"]["valid"] is True


def test_ciphertext_version_quirks(client, name):
    """§8.1: `vault:v0:` and `vault:v01:` decrypt as version 1."""
    t = client.secrets.transit
    k = name()
    t.create_key(k)
    ct = t.encrypt_data(k, plaintext=b64("v"))["data"]["ciphertext"]
    body = payload(ct)[1]
    for prefix in ("vault:v0:", "vault:v01:"):
        assert t.decrypt_data(k, ciphertext=prefix + body)["data"]["plaintext"] == b64("v")


def test_base64_rules(client, name):
    """§1.5: standard alphabet with padding; embedded newlines are skipped."""
    t = client.secrets.transit
    k = name()
    t.create_key(k)
    with pytest.raises(exc.InvalidRequest):
        t.encrypt_data(k, plaintext="aGVsbG8gd29ybGQ")  # unpadded
    with pytest.raises(exc.InvalidRequest):
        t.encrypt_data(k, plaintext="aGVsbG8gd29ybG_=")  # URL-safe alphabet
    ct = t.encrypt_data(k, plaintext="aGVsbG8g\nd29ybGQ=")["data"]["ciphertext"]
    assert t.decrypt_data(k, ciphertext=ct)["data"]["plaintext"] == b64("hello world")


def test_context_ignored_for_non_derived_keys(transit, name):
    k = name()
    transit.create_key(k)
    ct = transit.encrypt_data(k, plaintext=b64("x"), context=b64("ignored"))["data"]["ciphertext"]
    assert transit.decrypt_data(k, ciphertext=ct)["data"]["plaintext"] == b64("x")
    assert transit.decrypt_data(k, ciphertext=ct, context=b64("other"))["data"]["plaintext"] == b64("x")
