"""BYOK import (reference §4.8–§4.10, §8.8) and the §8.11 fixed-key vectors.

hvac 2.4 has no helper for wrapping_key / import / import_version (§13.2): they
go through hvac's generic client.read / client.write_data."""

from __future__ import annotations

import hvac.exceptions as exc
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from support import b64, byok_envelope, unb64

K32 = bytes(range(32))  # 00..1f
K16 = bytes(range(16))  # 00..0f
HK = bytes(range(0x20, 0x40))  # 20..3f
HELLO = b64("hello world")

VECTOR_AES256 = "vault:v1:AAECAwQFBgcICQoLL2e6d6rFtXT/LfMFMBxWQ34jd7mO85YcJxko"
VECTOR_AES256_AAD = "vault:v1:AAECAwQFBgcICQoLL2e6d6rFtXT/LfODd2GzEuCTJUDgjwvw32UY"
VECTOR_AES128 = "vault:v1:AAECAwQFBgcICQoL+wnLogk7gDs5vgVJsIXmMuSKWZm7hCcSNWVt"
VECTOR_CHACHA = "vault:v1:AAECAwQFBgcICQoL4Z5kbEY30i/F71sY90qN0T07vOC+PrtQj7lZ"
VECTOR_HMAC256 = "vault:v1:ECy4zZWLwvd1Tm4fQAxVkae32Ewui1hkolrtxs5Pl9Y="
VECTOR_HMAC512 = ("vault:v1:er66sX3l4bMW5QLN70Ot53IqsqWz5eQ70zHNgPZdKP1+7JzTfIgeLjJmySK7Qv/Z3tp7RG8Wpoif"
                  "KCGk1NIuEg==")
ED_SEED = bytes(range(0x64, 0x84))
ED_PUB = "C7w0aldmfDgBIL2cf9flHSxf3+o3zS9b9AWyxr9vLXg="
ED_SIG = "vault:v1:FLy0Mj20Be8jBrhXiHRviLVWYSlSEole1k19sqZqIsijLP8OVrNN5ADdOpIk6Q0xWnJpd1gaRf+O1hHsZ1GzBw=="


def wrapping_key(client, mount="transit") -> str:
    pem = client.read(f"{mount}/wrapping_key")["data"]["public_key"]
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    pub = serialization.load_pem_public_key(pem.encode())
    assert pub.key_size == 4096
    return pem


def import_key(client, name, target: bytes, key_type=None, mount="transit", oaep_hash=hashes.SHA256, **extra):
    data = {"ciphertext": byok_envelope(wrapping_key(client, mount), target, oaep_hash)}
    if key_type:
        data["type"] = key_type
    data.update(extra)
    return client.write_data(f"{mount}/keys/{name}/import", data=data)


def test_wrapping_key_is_stable(client):
    assert wrapping_key(client) == wrapping_key(client)


def test_import_aes256_decrypts_reference_vector(client, name):
    t = client.secrets.transit
    k = name("byok")
    resp = import_key(client, k, K32, "aes256-gcm96", hash_function="SHA256", exportable=True)
    assert resp.status_code == 204
    data = t.read_key(k)["data"]
    assert data["imported_key"] is True
    assert data["type"] == "aes256-gcm96"
    assert t.decrypt_data(k, ciphertext=VECTOR_AES256)["data"]["plaintext"] == HELLO
    assert t.decrypt_data(k, ciphertext=VECTOR_AES256_AAD, associated_data=b64("meta"))["data"]["plaintext"] == HELLO
    with pytest.raises(exc.InvalidRequest):
        t.decrypt_data(k, ciphertext=VECTOR_AES256_AAD)
    assert unb64(t.export_key(k, key_type="encryption-key")["data"]["keys"]["1"]) == K32
    # the imported key also encrypts
    ct = t.encrypt_data(k, plaintext=HELLO)["data"]["ciphertext"]
    assert t.decrypt_data(k, ciphertext=ct)["data"]["plaintext"] == HELLO


def test_import_default_type_is_aes256(client, name):
    k = name("byok")
    import_key(client, k, K32)
    assert client.secrets.transit.read_key(k)["data"]["type"] == "aes256-gcm96"
    assert client.secrets.transit.decrypt_data(k, ciphertext=VECTOR_AES256)["data"]["plaintext"] == HELLO


@pytest.mark.parametrize("oaep_hash,name_", [(hashes.SHA1, "SHA1"), (hashes.SHA512, "sha512")])
def test_import_other_oaep_hashes(client, name, oaep_hash, name_):
    k = name("byok")
    import_key(client, k, K32, "aes256-gcm96", oaep_hash=oaep_hash, hash_function=name_)
    assert client.secrets.transit.decrypt_data(k, ciphertext=VECTOR_AES256)["data"]["plaintext"] == HELLO


def test_import_aes128_and_chacha_vectors(client, name):
    t = client.secrets.transit
    a = name("byok128")
    import_key(client, a, K16, "aes128-gcm96")
    assert t.decrypt_data(a, ciphertext=VECTOR_AES128)["data"]["plaintext"] == HELLO
    c = name("byokcc")
    import_key(client, c, K32, "chacha20-poly1305")
    assert t.decrypt_data(c, ciphertext=VECTOR_CHACHA)["data"]["plaintext"] == HELLO


def test_import_hmac_key_vectors(client, name):
    t = client.secrets.transit
    k = name("byokhmac")
    import_key(client, k, HK, "hmac")
    data = t.read_key(k)["data"]
    assert data["type"] == "hmac" and data["key_size"] == 32
    assert t.generate_hmac(k, hash_input=HELLO)["data"]["hmac"] == VECTOR_HMAC256
    assert t.generate_hmac(k, hash_input=HELLO, algorithm="sha2-512")["data"]["hmac"] == VECTOR_HMAC512
    assert t.verify_signed_data(k, hash_input=HELLO, hmac=VECTOR_HMAC256)["data"]["valid"] is True


def test_import_ed25519_vectors(client, name):
    t = client.secrets.transit
    k = name("byoked")
    pkcs8 = ed25519.Ed25519PrivateKey.from_private_bytes(ED_SEED).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    import_key(client, k, pkcs8, "ed25519", exportable=True)
    assert t.read_key(k)["data"]["keys"]["1"]["public_key"] == ED_PUB
    assert t.sign_data(k, hash_input=HELLO)["data"]["signature"] == ED_SIG
    assert t.verify_signed_data(k, hash_input=HELLO, signature=ED_SIG)["data"]["valid"] is True
    exported = unb64(t.export_key(k, key_type="signing-key")["data"]["keys"]["1"])
    assert exported == ED_SEED + unb64(ED_PUB)


def test_import_errors(client, name):
    t = client.secrets.transit
    k = name("byok")
    import_key(client, k, K32)
    # existing key -> the import path refuses (OpenBao: 500 plain error; 400 would be more correct, §14 item 9)
    with pytest.raises((exc.InternalServerError, exc.InvalidRequest)):
        import_key(client, k, K32)
    with pytest.raises(exc.InvalidRequest):
        import_key(client, name("byok"), K32, hash_function="MD5")
    with pytest.raises((exc.InternalServerError, exc.InvalidRequest)):  # wrong size for the type
        import_key(client, name("byok"), K16, "aes256-gcm96")
    with pytest.raises((exc.InternalServerError, exc.InvalidRequest)):  # too short
        client.write_data(f"transit/keys/{name('byok')}/import", data={"ciphertext": b64(b"abc")})
    # imported keys do not rotate unless allowed
    with pytest.raises((exc.InternalServerError, exc.InvalidRequest)):
        t.rotate_key(k)


def test_import_version(client, name):
    t = client.secrets.transit
    k = name("byok")
    import_key(client, k, K32, allow_rotation=True)
    other = bytes(reversed(K32))
    resp = client.write_data(f"transit/keys/{k}/import_version",
                             data={"ciphertext": byok_envelope(wrapping_key(client), other)})
    assert resp.status_code == 204
    assert t.read_key(k)["data"]["latest_version"] == 2
    assert t.decrypt_data(k, ciphertext=VECTOR_AES256)["data"]["plaintext"] == HELLO
    # rotation allowed by allow_rotation
    t.rotate_key(k)
    assert t.read_key(k)["data"]["latest_version"] == 3
    # import_version on a key that was not imported
    n = name()
    t.create_key(n)
    with pytest.raises((exc.InternalServerError, exc.InvalidRequest)):
        client.write_data(f"transit/keys/{n}/import_version",
                          data={"ciphertext": byok_envelope(wrapping_key(client), K32)})
