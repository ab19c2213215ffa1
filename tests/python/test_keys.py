"""Key management through hvac: create/read/list/rotate/config/trim/export/
backup/restore/delete (reference §4, §7, §13.2)."""

from __future__ import annotations

import base64

import hvac.exceptions as exc
import pytest
from cryptography.hazmat.primitives import serialization

from support import ECDSA, RSA, SYMMETRIC, b64, create_key, payload, unb64

ALL_TYPES = [
    "aes128-gcm96", "aes256-gcm96", "chacha20-poly1305", "xchacha20-poly1305",
    "ed25519", "ecdsa-p256", "ecdsa-p384", "ecdsa-p521",
    "rsa-2048", "rsa-3072", "rsa-4096", "hmac",
]

# §7: supports_* flags per type (encryption, decryption, signing, derivation)
FLAGS = {
    "aes128-gcm96": (True, True, False, True),
    "aes256-gcm96": (True, True, False, True),
    "chacha20-poly1305": (True, True, False, True),
    "xchacha20-poly1305": (True, True, False, True),
    "ed25519": (False, False, True, True),
    "ecdsa-p256": (False, False, True, False),
    "ecdsa-p384": (False, False, True, False),
    "ecdsa-p521": (False, False, True, False),
    "rsa-2048": (True, True, True, False),
    "rsa-3072": (True, True, True, False),
    "rsa-4096": (True, True, True, False),
    "hmac": (False, False, False, False),
}
# §4.2: `name` inside each asymmetric keys entry
ASYM_NAMES = {
    "ed25519": "ed25519", "ecdsa-p256": "P-256", "ecdsa-p384": "P-384", "ecdsa-p521": "P-521",
    "rsa-2048": "rsa-2048", "rsa-3072": "rsa-3072", "rsa-4096": "rsa-4096",
}
# §8.2: nonce length of the symmetric payload
NONCE = {"aes128-gcm96": 12, "aes256-gcm96": 12, "chacha20-poly1305": 12, "xchacha20-poly1305": 24}

ALWAYS_FIELDS = {
    "name", "type", "derived", "deletion_allowed", "exportable", "allow_plaintext_backup",
    "latest_version", "min_decryption_version", "min_encryption_version", "min_available_version",
    "supports_encryption", "supports_decryption", "supports_signing", "supports_derivation",
    "auto_rotate_period", "imported_key",
}


@pytest.mark.parametrize("key_type", ALL_TYPES)
def test_create_each_key_type(client, name, key_type):
    k = name(key_type.replace("-", ""))
    options = {"key_size": 32} if key_type == "hmac" else {}
    create_key(client, k, key_type, **options)
    data = client.secrets.transit.read_key(k)["data"]

    assert ALWAYS_FIELDS <= set(data), ALWAYS_FIELDS - set(data)
    assert data["name"] == k
    assert data["type"] == key_type
    assert data["latest_version"] == 1
    assert data["min_decryption_version"] == 1
    assert data["min_encryption_version"] == 0
    assert data["min_available_version"] == 0
    assert data["derived"] is False and data["exportable"] is False and data["deletion_allowed"] is False
    assert data["auto_rotate_period"] == 0
    flags = (data["supports_encryption"], data["supports_decryption"], data["supports_signing"],
             data["supports_derivation"])
    assert flags == FLAGS[key_type]

    if key_type == "hmac":
        assert data["key_size"] == 32
        assert "keys" not in data
    elif key_type in SYMMETRIC:
        assert set(data["keys"]) == {"1"}
        assert isinstance(data["keys"]["1"], int) and data["keys"]["1"] > 1_600_000_000
    else:
        entry = data["keys"]["1"]
        assert {"name", "public_key", "creation_time", "certificate_chain"} <= set(entry)
        assert entry["name"] == ASYM_NAMES[key_type]
        assert entry["certificate_chain"] == ""
        if key_type == "ed25519":
            assert len(unb64(entry["public_key"])) == 32
        else:
            assert entry["public_key"].startswith("-----BEGIN PUBLIC KEY-----\n")
            serialization.load_pem_public_key(entry["public_key"].encode())

    # A smoke use of every capability the type advertises.
    t = client.secrets.transit
    if FLAGS[key_type][0]:
        ct = t.encrypt_data(k, plaintext=b64("hello world"))["data"]["ciphertext"]
        version, body = payload(ct)
        assert version == 1
        if key_type in NONCE:
            assert len(unb64(body)) == NONCE[key_type] + len("hello world") + 16
        else:
            assert len(unb64(body)) == int(key_type.split("-")[1]) // 8
        assert t.decrypt_data(k, ciphertext=ct)["data"]["plaintext"] == b64("hello world")
    if FLAGS[key_type][2]:
        sig = t.sign_data(k, hash_input=b64("msg"))["data"]["signature"]
        assert sig.startswith("vault:v1:")
        assert t.verify_signed_data(k, hash_input=b64("msg"), signature=sig)["data"]["valid"] is True
    mac = t.generate_hmac(k, hash_input=b64("msg"))["data"]["hmac"]
    assert mac.startswith("vault:v1:")
    assert t.verify_signed_data(k, hash_input=b64("msg"), hmac=mac)["data"]["valid"] is True


def test_create_key_twice_keeps_original(client, name):
    k = name()
    client.secrets.transit.create_key(k, key_type="aes256-gcm96")
    # §4.1: re-posting with other parameters changes nothing.
    client.secrets.transit.create_key(k, key_type="ed25519", exportable=True)
    data = client.secrets.transit.read_key(k)["data"]
    assert data["type"] == "aes256-gcm96"
    assert data["exportable"] is False


def test_create_key_options(client, name):
    t = client.secrets.transit
    k = name()
    t.create_key(k, derived=True, convergent_encryption=True, exportable=True,
                 allow_plaintext_backup=True, auto_rotate_period="25h")
    data = t.read_key(k)["data"]
    assert data["derived"] is True
    assert data["convergent_encryption"] is True
    assert data["kdf"] == "hkdf_sha256"
    assert data["exportable"] is True
    assert data["allow_plaintext_backup"] is True
    assert data["auto_rotate_period"] == 90000


def test_create_key_errors(client, name):
    w = client.write_data
    with pytest.raises(exc.InvalidRequest):
        w(f"transit/keys/{name()}", data={"type": "bogus-type"})
    with pytest.raises(exc.InvalidRequest):
        w(f"transit/keys/{name()}", data={"convergent_encryption": True})
    with pytest.raises(exc.InvalidRequest):
        w(f"transit/keys/{name()}", data={"auto_rotate_period": "10m"})
    with pytest.raises(exc.InvalidRequest):
        w(f"transit/keys/{name()}", data={"type": "aes256-gcm96", "key_size": 32})
    with pytest.raises(exc.InvalidRequest):
        w(f"transit/keys/{name()}", data={"type": "hmac", "key_size": 16})


def test_list_keys(client, name):
    t = client.secrets.transit
    made = sorted(name("list") for _ in range(3))
    for k in made:
        t.create_key(k)
    listed = t.list_keys()["data"]["keys"]
    # OpenBao lists an "import/" pseudo entry once a wrapping key exists (§4.3): ignore names ending in "/".
    listed = [k for k in listed if not k.endswith("/")]
    assert set(made) <= set(listed)
    assert listed == sorted(listed)


def test_list_keys_empty_mount_is_404(client, name):
    mp = name("empty")
    client.sys.enable_secrets_engine("transit", path=mp)
    try:
        with pytest.raises(exc.InvalidPath):
            client.secrets.transit.list_keys(mount_point=mp)
    finally:
        client.sys.disable_secrets_engine(mp)


def test_read_missing_key_is_invalid_path(transit, name):
    with pytest.raises(exc.InvalidPath):
        transit.read_key(name("missing"))


def test_rotate_and_rewrap(transit, name):
    k = name()
    transit.create_key(k)
    ct1 = transit.encrypt_data(k, plaintext=b64("data"))["data"]["ciphertext"]
    assert ct1.startswith("vault:v1:")
    transit.rotate_key(k)
    data = transit.read_key(k)["data"]
    assert data["latest_version"] == 2
    assert set(data["keys"]) == {"1", "2"}
    ct2 = transit.encrypt_data(k, plaintext=b64("data"))["data"]["ciphertext"]
    assert ct2.startswith("vault:v2:")
    rewrapped = transit.rewrap_data(k, ciphertext=ct1)["data"]
    assert rewrapped["ciphertext"].startswith("vault:v2:")
    assert rewrapped["key_version"] == 2
    for ct in (ct1, ct2, rewrapped["ciphertext"]):
        assert transit.decrypt_data(k, ciphertext=ct)["data"]["plaintext"] == b64("data")
    # Explicit older encryption version.
    ct_v1 = transit.encrypt_data(k, plaintext=b64("data"), key_version=1)["data"]["ciphertext"]
    assert ct_v1.startswith("vault:v1:")


def test_rotate_missing_key(transit, name):
    with pytest.raises(exc.InvalidRequest):
        transit.rotate_key(name("missing"))


def test_min_versions(transit, name):
    k = name()
    transit.create_key(k)
    ct1 = transit.encrypt_data(k, plaintext=b64("x"))["data"]["ciphertext"]
    transit.rotate_key(k)
    transit.rotate_key(k)
    transit.update_key_configuration(k, min_decryption_version=2, min_encryption_version=3)
    data = transit.read_key(k)["data"]
    assert data["min_decryption_version"] == 2
    assert data["min_encryption_version"] == 3
    assert set(data["keys"]) == {"2", "3"}  # v1 moved to the archive
    with pytest.raises(exc.InvalidRequest):  # too old
        transit.decrypt_data(k, ciphertext=ct1)
    with pytest.raises(exc.InvalidRequest):  # below min_encryption_version
        transit.encrypt_data(k, plaintext=b64("x"), key_version=2)
    # Going back down restores the archived version.
    transit.update_key_configuration(k, min_decryption_version=1, min_encryption_version=0)
    assert set(transit.read_key(k)["data"]["keys"]) == {"1", "2", "3"}
    assert transit.decrypt_data(k, ciphertext=ct1)["data"]["plaintext"] == b64("x")


def test_update_key_configuration_errors(transit, name):
    k = name()
    transit.create_key(k)
    with pytest.raises(exc.InvalidRequest):
        transit.update_key_configuration(k, min_decryption_version=5)
    with pytest.raises(exc.InvalidRequest):
        transit.update_key_configuration(k, min_encryption_version=5)
    with pytest.raises(exc.InvalidRequest):
        transit.update_key_configuration(k, min_decryption_version=-1)
    with pytest.raises(exc.InvalidRequest):
        transit.update_key_configuration(k, auto_rotate_period="5m")
    with pytest.raises(exc.InvalidRequest):
        transit.update_key_configuration(name("missing"), deletion_allowed=True)


def test_exportable_is_one_way(transit, name):
    k = name()
    transit.create_key(k)
    transit.update_key_configuration(k, exportable=True)
    assert transit.read_key(k)["data"]["exportable"] is True
    transit.update_key_configuration(k, exportable=False)  # no-op
    assert transit.read_key(k)["data"]["exportable"] is True


def test_auto_rotate_period_config(transit, name):
    k = name()
    transit.create_key(k)
    transit.update_key_configuration(k, auto_rotate_period="2h")
    assert transit.read_key(k)["data"]["auto_rotate_period"] == 7200
    transit.update_key_configuration(k, auto_rotate_period="0")
    assert transit.read_key(k)["data"]["auto_rotate_period"] == 0


def test_delete_key(transit, name):
    k = name()
    transit.create_key(k)
    with pytest.raises(exc.InvalidRequest):  # deletion not allowed yet
        transit.delete_key(k)
    transit.update_key_configuration(k, deletion_allowed=True)
    assert transit.read_key(k)["data"]["deletion_allowed"] is True
    resp = transit.delete_key(k)
    assert resp.status_code == 204
    with pytest.raises(exc.InvalidPath):
        transit.read_key(k)
    with pytest.raises(exc.InvalidRequest):  # deleting a missing key is 400, not 404
        transit.delete_key(k)


def test_deletion_allowed_toggles_back(transit, name):
    k = name()
    transit.create_key(k)
    transit.update_key_configuration(k, deletion_allowed=True)
    transit.update_key_configuration(k, deletion_allowed=False)
    with pytest.raises(exc.InvalidRequest):
        transit.delete_key(k)


def test_trim_key(transit, name):
    # §13.4: trim_key(min_version=2) after 10 rotations with min_decryption 3, min_encryption 9.
    k = name()
    transit.create_key(k)
    ct1 = transit.encrypt_data(k, plaintext=b64("x"))["data"]["ciphertext"]
    for _ in range(10):
        transit.rotate_key(k)
    with pytest.raises(exc.InvalidRequest):  # min_encryption_version not set yet
        transit.trim_key(k, min_version=2)
    transit.update_key_configuration(k, min_decryption_version=3, min_encryption_version=9)
    with pytest.raises(exc.InvalidRequest):  # greater than min_decryption_version
        transit.trim_key(k, min_version=4)
    transit.trim_key(k, min_version=2)
    data = transit.read_key(k)["data"]
    assert data["min_available_version"] == 2
    assert data["latest_version"] == 11
    with pytest.raises(exc.InvalidRequest):  # cannot decrement
        transit.trim_key(k, min_version=1)
    with pytest.raises(exc.InvalidRequest):  # cannot go below min_available_version
        transit.update_key_configuration(k, min_decryption_version=1)
    # v1 is gone for good.
    with pytest.raises(exc.InvalidRequest):
        transit.decrypt_data(k, ciphertext=ct1)
    with pytest.raises(exc.InvalidRequest):
        transit.trim_key(name("missing"), min_version=1)


# --------------------------------------------------------------------------- #
# Export
# --------------------------------------------------------------------------- #
def test_export_symmetric(transit, name):
    k = name()
    transit.create_key(k, exportable=True)
    transit.rotate_key(k)
    out = transit.export_key(k, key_type="encryption-key")["data"]
    assert out["name"] == k
    assert out["type"] == "aes256-gcm96"
    assert set(out["keys"]) == {"1", "2"}
    assert all(len(unb64(v)) == 32 for v in out["keys"].values())
    one = transit.export_key(k, key_type="encryption-key", version="1")["data"]
    assert set(one["keys"]) == {"1"}
    assert one["keys"]["1"] == out["keys"]["1"]
    latest = transit.export_key(k, key_type="encryption-key", version="latest")["data"]
    assert latest["keys"] == {"2": out["keys"]["2"]}
    hm = transit.export_key(k, key_type="hmac-key")["data"]
    assert set(hm["keys"]) == {"1", "2"}
    assert all(len(unb64(v)) == 32 for v in hm["keys"].values())

    # The exported key really is the encryption key: decrypt a server ciphertext locally.
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    ct = transit.encrypt_data(k, plaintext=b64("local"))["data"]["ciphertext"]
    raw = unb64(payload(ct)[1])
    assert AESGCM(unb64(out["keys"]["2"])).decrypt(raw[:12], raw[12:], b"") == b"local"


def test_export_errors(transit, name):
    k = name()
    transit.create_key(k)  # not exportable
    with pytest.raises(exc.InvalidRequest):
        transit.export_key(k, key_type="encryption-key")
    with pytest.raises(exc.InvalidPath):
        transit.export_key(name("missing"), key_type="encryption-key")
    e = name()
    transit.create_key(e, exportable=True)
    with pytest.raises(exc.InvalidRequest):  # signing-key of an AES key
        transit.export_key(e, key_type="signing-key")
    with pytest.raises(exc.InvalidRequest):  # version does not exist
        transit.export_key(e, key_type="encryption-key", version="7")


@pytest.mark.parametrize("key_type", ["ed25519", "ecdsa-p256", "rsa-2048"])
def test_export_signing_key(client, name, key_type):
    t = client.secrets.transit
    k = name()
    t.create_key(k, key_type=key_type, exportable=True)
    out = t.export_key(k, key_type="signing-key")["data"]
    assert out["name"] == k and out["type"] == key_type
    value = out["keys"]["1"]
    pub_entry = t.read_key(k)["data"]["keys"]["1"]["public_key"]
    if key_type == "ed25519":
        raw = unb64(value)
        assert len(raw) == 64
        assert raw[32:] == unb64(pub_entry)
    else:
        marker = "EC PRIVATE KEY" if key_type.startswith("ecdsa") else "RSA PRIVATE KEY"
        assert value.startswith(f"-----BEGIN {marker}-----")
        priv = serialization.load_pem_private_key(value.encode(), password=None)
        pub = serialization.load_pem_public_key(pub_entry.encode())
        assert priv.public_key().public_numbers() == pub.public_numbers()
    if key_type.startswith("rsa"):
        # RSA keys also export as encryption keys (same PEM).
        assert t.export_key(k, key_type="encryption-key")["data"]["keys"]["1"] == value


# --------------------------------------------------------------------------- #
# Backup / restore
# --------------------------------------------------------------------------- #
def test_backup_restore(transit, name):
    k = name()
    transit.create_key(k, exportable=True, allow_plaintext_backup=True)
    transit.rotate_key(k)
    ct = transit.encrypt_data(k, plaintext=b64("keep me"))["data"]["ciphertext"]
    backup = transit.backup_key(k)["data"]["backup"]
    assert isinstance(backup, str) and unb64(backup)
    assert "backup_info" in transit.read_key(k)["data"]

    # Restore under a new name (URL segment).
    other = name("restored")
    resp = transit.restore_key(backup, name=other)
    assert resp.status_code == 204
    data = transit.read_key(other)["data"]
    assert data["latest_version"] == 2
    assert "restore_info" in data
    assert transit.decrypt_data(other, ciphertext=ct)["data"]["plaintext"] == b64("keep me")

    # Restoring over an existing key needs force.
    with pytest.raises((exc.InvalidRequest, exc.InternalServerError)):
        transit.restore_key(backup, name=other)
    transit.restore_key(backup, name=other, force=True)

    # Restore under the original name after deletion (name taken from the blob).
    transit.update_key_configuration(k, deletion_allowed=True)
    transit.delete_key(k)
    transit.restore_key(backup)
    assert transit.decrypt_data(k, ciphertext=ct)["data"]["plaintext"] == b64("keep me")


def test_backup_requires_flags(transit, name):
    k = name()
    transit.create_key(k)
    # §4.12: plain errors -> 500 on OpenBao; a compatible server may answer 400 (§14 item 9).
    with pytest.raises((exc.InternalServerError, exc.InvalidRequest)):
        transit.backup_key(k)
    transit.update_key_configuration(k, exportable=True)
    with pytest.raises((exc.InternalServerError, exc.InvalidRequest)):
        transit.backup_key(k)
    transit.update_key_configuration(k, allow_plaintext_backup=True)
    assert transit.backup_key(k)["data"]["backup"]


def test_restore_errors(transit, name):
    with pytest.raises(exc.InvalidRequest):
        transit.restore_key("", name=name())
    with pytest.raises((exc.InternalServerError, exc.InvalidRequest)):
        transit.restore_key("@@not-base64@@", name=name())


def test_backup_blob_is_opaque_base64(transit, name):
    """The blob is standard base64 (§4.12). Its inner layout (§8.10, Vault's JSON) is
    only needed for interop with real Vault backups, so it is not asserted here:
    OpenBao writes JSON, cipherd its own format."""
    k = name()
    transit.create_key(k, exportable=True, allow_plaintext_backup=True)
    blob = transit.backup_key(k)["data"]["backup"]
    assert len(base64.b64decode(blob, validate=True)) > 32


def test_list_keys_strict_http(backend, client, name):
    """hvac with strict_http=True sends GET ?list=true instead of the LIST verb."""
    k = name("strict")
    client.secrets.transit.create_key(k)
    import hvac

    strict = hvac.Client(url=backend.url, token=backend.token, strict_http=True)
    assert k in strict.secrets.transit.list_keys()["data"]["keys"]


@pytest.mark.parametrize("bad", ["-x", "name.", "a/b/c/d"])
def test_invalid_key_names_are_404(client, bad):
    with pytest.raises(exc.InvalidPath):
        client.adapter.post(f"/v1/transit/keys/{bad}", json={})


def test_inner_dots_and_dashes_are_valid_names(transit, name):
    k = name("a.b-c")
    transit.create_key(k)
    assert transit.read_key(k)["data"]["name"] == k


def test_key_named_like_a_suffix_route(client, transit, name):
    """§3 route ordering: a key literally named `rotate` is still reachable."""
    mp = name("tr")
    client.sys.enable_secrets_engine("transit", path=mp)
    try:
        transit.create_key("rotate", mount_point=mp)
        transit.rotate_key("rotate", mount_point=mp)
        assert transit.read_key("rotate", mount_point=mp)["data"]["latest_version"] == 2
    finally:
        client.sys.disable_secrets_engine(mp)


def test_disable_upsert(client, name):
    mp = name("tr")
    client.sys.enable_secrets_engine("transit", path=mp)
    try:
        assert client.read(f"{mp}/config/keys")["data"]["disable_upsert"] is False
        out = client.write_data(f"{mp}/config/keys", data={"disable_upsert": True})
        assert out["data"]["disable_upsert"] is True
        with pytest.raises(exc.InvalidRequest):
            client.secrets.transit.encrypt_data(name(), plaintext=b64("x"), mount_point=mp)
        k = name()
        client.secrets.transit.create_key(k, mount_point=mp)
        assert client.secrets.transit.encrypt_data(k, plaintext=b64("x"), mount_point=mp)["data"]["ciphertext"]
    finally:
        client.sys.disable_secrets_engine(mp)
