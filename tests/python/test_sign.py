"""sign / verify, HMAC, hash and random through hvac; server signatures are
checked locally with `cryptography` (reference §5.5–§5.9, §8.6, §8.7).

hvac's sign_data/verify_signed_data/generate_hmac/hash_data only accept the
sha2-* names client-side, so the sha3-* (and sha1 / none) cases go through
hvac's generic client.write_data to the same endpoints."""

from __future__ import annotations

import base64
import hashlib
import hmac as pyhmac
import os

import hvac.exceptions as exc
import pytest
from cryptography.exceptions import InvalidSignature

from support import ECDSA, SHA2, SHA3, b64, digest, payload, public_key_of, unb64, verify_locally

MSG = b"the quick brown fox"
ALL_HASHES = SHA2 + SHA3


def sign(client, k, msg: bytes, mount="transit", **opts):
    """Sign via hvac.sign_data when hvac allows the options, else write_data."""
    alg = opts.get("hash_algorithm")
    if alg is None or alg in SHA2:
        return client.secrets.transit.sign_data(k, hash_input=b64(msg), mount_point=mount, **opts)["data"]
    return client.write_data(f"{mount}/sign/{k}", data={"input": b64(msg), **opts})["data"]


def verify(client, k, msg: bytes, signature: str, mount="transit", **opts) -> bool:
    alg = opts.get("hash_algorithm")
    if alg is None or alg in SHA2:
        resp = client.secrets.transit.verify_signed_data(k, hash_input=b64(msg), signature=signature,
                                                         mount_point=mount, **opts)
    else:
        resp = client.write_data(f"{mount}/verify/{k}", data={"input": b64(msg), "signature": signature, **opts})
    return resp["data"]["valid"]


@pytest.fixture
def ecdsa_keys(client, name):
    t = client.secrets.transit
    keys = {}
    for kt in ECDSA:
        keys[kt] = name(kt.replace("-", ""))
        t.create_key(keys[kt], key_type=kt)
    return keys


@pytest.mark.parametrize("marshaling", ["asn1", "jws"])
def test_ecdsa_all_hashes(client, ecdsa_keys, marshaling):
    for kt, k in ecdsa_keys.items():
        pub = public_key_of(client, k)
        for alg in ALL_HASHES:
            out = sign(client, k, MSG, hash_algorithm=alg, marshaling_algorithm=marshaling)
            sig = out["signature"]
            assert out["key_version"] == 1
            verify_locally(pub, kt, sig, MSG, hash_algorithm=alg, marshaling=marshaling)
            assert verify(client, k, MSG, sig, hash_algorithm=alg, marshaling_algorithm=marshaling) is True
            assert verify(client, k, b"other", sig, hash_algorithm=alg, marshaling_algorithm=marshaling) is False
            if marshaling == "asn1":
                # the server signature was made over this hash; a different hash does not verify.
                other = "sha2-512" if alg != "sha2-512" else "sha2-256"
                assert verify(client, k, MSG, sig, hash_algorithm=other) is False


def test_ecdsa_default_is_sha256_asn1(client, ecdsa_keys):
    k = ecdsa_keys["ecdsa-p256"]
    sig = client.secrets.transit.sign_data(k, hash_input=b64(MSG))["data"]["signature"]
    verify_locally(public_key_of(client, k), "ecdsa-p256", sig, MSG)


def test_ecdsa_jws_needs_jws_on_verify(client, ecdsa_keys):
    k = ecdsa_keys["ecdsa-p256"]
    sig = sign(client, k, MSG, marshaling_algorithm="jws")["signature"]
    with pytest.raises(exc.InvalidRequest):
        verify(client, k, MSG, sig)  # read as asn1 -> bad base64 / bad DER


def test_ecdsa_prehashed(client, ecdsa_keys):
    for kt, k in ecdsa_keys.items():
        for alg in ("sha2-256", "sha2-384"):
            d = digest(alg, MSG)
            sig = sign(client, k, d, prehashed=True, hash_algorithm=alg)["signature"]
            verify_locally(public_key_of(client, k), kt, sig, d, hash_algorithm=alg, prehashed=True)
            # the same signature verifies as a signature of MSG with hashing done by the server
            assert verify(client, k, MSG, sig, hash_algorithm=alg) is True
            assert verify(client, k, d, sig, hash_algorithm=alg, prehashed=True) is True


@pytest.fixture
def rsa_key(client, name):
    k = name("rsa")
    client.secrets.transit.create_key(k, key_type="rsa-2048")
    return k


@pytest.mark.parametrize("signature_algorithm", ["pss", "pkcs1v15"])
def test_rsa_all_hashes(client, rsa_key, signature_algorithm):
    pub = public_key_of(client, rsa_key)
    for alg in ALL_HASHES:
        sig = sign(client, rsa_key, MSG, hash_algorithm=alg, signature_algorithm=signature_algorithm)["signature"]
        verify_locally(pub, "rsa-2048", sig, MSG, hash_algorithm=alg, signature_algorithm=signature_algorithm)
        assert verify(client, rsa_key, MSG, sig, hash_algorithm=alg, signature_algorithm=signature_algorithm)
        assert not verify(client, rsa_key, b"x", sig, hash_algorithm=alg, signature_algorithm=signature_algorithm)


def test_rsa_default_is_pss_sha256(client, rsa_key):
    sig = client.secrets.transit.sign_data(rsa_key, hash_input=b64(MSG))["data"]["signature"]
    verify_locally(public_key_of(client, rsa_key), "rsa-2048", sig, MSG)
    # a PSS signature is not a valid PKCS#1 v1.5 one
    assert verify(client, rsa_key, MSG, sig, signature_algorithm="pkcs1v15") is False


@pytest.mark.parametrize("salt_length", ["auto", "hash", "20", "0", "-1", "222"])
def test_rsa_pss_salt_lengths(client, rsa_key, salt_length):
    sig = sign(client, rsa_key, MSG, signature_algorithm="pss", salt_length=salt_length)["signature"]
    # Go's sentinels: integer 0 means "auto", -1 means "hash" (§8.6); max for 2048/SHA-256 is 256-32-2 = 222.
    local = {"0": "auto", "-1": "hash"}.get(salt_length, salt_length)
    verify_locally(public_key_of(client, rsa_key), "rsa-2048", sig, MSG, salt_length=local)
    assert verify(client, rsa_key, MSG, sig, signature_algorithm="pss", salt_length=salt_length) is True
    # verification with "auto" detects any salt length
    assert verify(client, rsa_key, MSG, sig, signature_algorithm="pss") is True


def test_rsa_pss_salt_length_invalid(client, rsa_key):
    with pytest.raises(exc.InvalidRequest):
        client.write_data(f"transit/sign/{rsa_key}", data={"input": b64(MSG), "salt_length": "abc"})
    # out of range: OpenBao answers 500 (quirk, §5.8); 400 is the more correct answer (§14 item 9).
    with pytest.raises((exc.InternalServerError, exc.InvalidRequest)):
        sign(client, rsa_key, MSG, salt_length="99999")


def test_rsa_prehashed(client, rsa_key):
    pub = public_key_of(client, rsa_key)
    for sa in ("pss", "pkcs1v15"):
        d = digest("sha2-384", MSG)
        sig = sign(client, rsa_key, d, prehashed=True, hash_algorithm="sha2-384", signature_algorithm=sa)["signature"]
        verify_locally(pub, "rsa-2048", sig, d, hash_algorithm="sha2-384", signature_algorithm=sa, prehashed=True)
        assert verify(client, rsa_key, MSG, sig, hash_algorithm="sha2-384", signature_algorithm=sa) is True


def test_rsa_hash_none_pkcs1v15(client, rsa_key):
    """hash_algorithm=none + prehashed + pkcs1v15 signs the raw input (no DigestInfo)."""
    data = b"raw bytes to sign"
    out = client.write_data(f"transit/sign/{rsa_key}", data={
        "input": b64(data), "hash_algorithm": "none", "prehashed": True, "signature_algorithm": "pkcs1v15"})
    sig = unb64(payload(out["data"]["signature"])[1])
    pub = public_key_of(client, rsa_key)
    # recover the padded block and check it is 00 01 FF.. 00 || data
    n, e = pub.public_numbers().n, pub.public_numbers().e
    em = pow(int.from_bytes(sig, "big"), e, n).to_bytes(256, "big")
    assert em.startswith(b"\x00\x01\xff") and em.endswith(b"\x00" + data)
    ok = client.write_data(f"transit/verify/{rsa_key}", data={
        "input": b64(data), "signature": out["data"]["signature"], "hash_algorithm": "none",
        "prehashed": True, "signature_algorithm": "pkcs1v15"})
    assert ok["data"]["valid"] is True
    with pytest.raises(exc.InvalidRequest):  # none requires prehashed + pkcs1v15
        client.write_data(f"transit/sign/{rsa_key}", data={"input": b64(data), "hash_algorithm": "none"})


def test_ed25519_sign_verify(client, name):
    t = client.secrets.transit
    k = name("ed")
    t.create_key(k, key_type="ed25519")
    pub = public_key_of(client, k)
    a = t.sign_data(k, hash_input=b64(MSG))["data"]["signature"]
    b = t.sign_data(k, hash_input=b64(MSG))["data"]["signature"]
    assert a == b  # deterministic
    assert len(unb64(payload(a)[1])) == 64
    verify_locally(pub, "ed25519", a, MSG)
    assert t.verify_signed_data(k, hash_input=b64(MSG), signature=a)["data"]["valid"] is True
    assert t.verify_signed_data(k, hash_input=b64(b"nope"), signature=a)["data"]["valid"] is False
    # empty message
    e = t.sign_data(k, hash_input="")["data"]["signature"]
    verify_locally(pub, "ed25519", e, b"")


def test_ed25519_derived(client, name):
    from cryptography.hazmat.primitives.asymmetric import ed25519

    t = client.secrets.transit
    k = name("edd")
    t.create_key(k, key_type="ed25519", derived=True)
    ctx = b64("user-1")
    out = t.sign_data(k, hash_input=b64(MSG), context=ctx)["data"]
    derived_pub = out["public_key"]
    ed25519.Ed25519PublicKey.from_public_bytes(unb64(derived_pub)).verify(unb64(payload(out["signature"])[1]), MSG)
    assert t.verify_signed_data(k, hash_input=b64(MSG), signature=out["signature"], context=ctx)["data"]["valid"]
    assert not t.verify_signed_data(k, hash_input=b64(MSG), signature=out["signature"],
                                    context=b64("user-2"))["data"]["valid"]
    # read key with ?context= returns the derived public key (§4.2)
    read = client.adapter.get(f"/v1/transit/keys/{k}", params={"context": ctx})
    assert read["data"]["keys"]["1"]["public_key"] == derived_pub
    assert t.read_key(k)["data"]["keys"]["1"]["public_key"] == ""


def test_sign_batch(client, name):
    t = client.secrets.transit
    k = name("ed")
    t.create_key(k, key_type="ed25519")
    items = [{"input": b64(f"m{i}"), "reference": f"r{i}"} for i in range(3)]
    out = t.sign_data(k, batch_input=items)["data"]["batch_results"]
    assert [r["reference"] for r in out] == ["r0", "r1", "r2"]
    pub = public_key_of(client, k)
    for i, r in enumerate(out):
        assert r["key_version"] == 1
        verify_locally(pub, "ed25519", r["signature"], f"m{i}".encode())
    # batch verify (no hvac helper): one good, one bad
    ver = client.write_data(f"transit/verify/{k}", data={"batch_input": [
        {"input": items[0]["input"], "signature": out[0]["signature"], "reference": "a"},
        {"input": items[1]["input"], "signature": out[0]["signature"], "reference": "b"},
    ]})["data"]["batch_results"]
    assert [(r["reference"], r["valid"]) for r in ver] == [("a", True), ("b", False)]


def test_sign_batch_item_error_is_200(client, name):
    t = client.secrets.transit
    k = name("ec")
    t.create_key(k, key_type="ecdsa-p256")
    out = t.sign_data(k, batch_input=[{"input": b64("ok")}, {"input": "@@"}])["data"]["batch_results"]
    assert out[0]["signature"].startswith("vault:v1:")
    assert out[1]["error"]


def test_sign_after_rotation_and_min_versions(client, name):
    t = client.secrets.transit
    k = name("ec")
    t.create_key(k, key_type="ecdsa-p256")
    s1 = t.sign_data(k, hash_input=b64(MSG))["data"]["signature"]
    t.rotate_key(k)
    s2 = t.sign_data(k, hash_input=b64(MSG))["data"]
    assert s2["signature"].startswith("vault:v2:") and s2["key_version"] == 2
    assert t.sign_data(k, hash_input=b64(MSG), key_version=1)["data"]["signature"].startswith("vault:v1:")
    assert t.verify_signed_data(k, hash_input=b64(MSG), signature=s1)["data"]["valid"] is True
    t.update_key_configuration(k, min_decryption_version=2)
    with pytest.raises(exc.InvalidRequest):
        t.verify_signed_data(k, hash_input=b64(MSG), signature=s1)


def test_sign_errors(client, name):
    t = client.secrets.transit
    with pytest.raises(exc.InvalidRequest):
        t.sign_data(name("missing"), hash_input=b64(MSG))
    a = name("aes")
    t.create_key(a)
    with pytest.raises(exc.InvalidRequest):
        t.sign_data(a, hash_input=b64(MSG))
    with pytest.raises(exc.InvalidRequest):
        t.verify_signed_data(a, hash_input=b64(MSG), signature="vault:v1:AAAA")
    e = name("ec")
    t.create_key(e, key_type="ecdsa-p256")
    with pytest.raises(exc.InvalidRequest):
        client.write_data(f"transit/sign/{e}", data={"input": b64(MSG), "hash_algorithm": "md5"})
    with pytest.raises(exc.InvalidRequest):
        client.write_data(f"transit/sign/{e}", data={"input": b64(MSG), "marshaling_algorithm": "xml"})
    with pytest.raises(exc.InvalidRequest):
        t.sign_data(e, hash_input="not base64!")
    for bad in ("nope", "vault:v1", "vault:vX:AAAA", "vault:v9:AAAA", "vault:v1:@@@"):
        with pytest.raises(exc.InvalidRequest):
            t.verify_signed_data(e, hash_input=b64(MSG), signature=bad)
    with pytest.raises(exc.InvalidRequest):  # neither signature nor hmac (not reachable through hvac)
        client.write_data(f"transit/verify/{e}", data={"input": b64(MSG)})


# --------------------------------------------------------------------------- #
# HMAC
# --------------------------------------------------------------------------- #
def test_hmac_with_hmac_key(client, name):
    t = client.secrets.transit
    k = name("hmac")
    client.write_data(f"transit/keys/{k}", data={"type": "hmac", "key_size": 64})
    client.write_data(f"transit/keys/{k}/config", data={"exportable": True})
    raw_key = unb64(t.export_key(k, key_type="hmac-key")["data"]["keys"]["1"])
    assert len(raw_key) == 64
    for alg in SHA2:
        mac = t.generate_hmac(k, hash_input=b64(MSG), algorithm=alg)["data"]["hmac"]
        expected = pyhmac.new(raw_key, MSG, alg.replace("sha2-", "sha")).digest()
        assert mac == "vault:v1:" + b64(expected)
        assert t.verify_signed_data(k, hash_input=b64(MSG), hmac=mac, hash_algorithm=alg)["data"]["valid"] is True
        assert t.verify_signed_data(k, hash_input=b64(b"x"), hmac=mac, hash_algorithm=alg)["data"]["valid"] is False
    for alg in SHA3:  # URL form (hvac sends the algorithm only in the body)
        mac = client.write_data(f"transit/hmac/{k}/{alg}", data={"input": b64(MSG)})["data"]["hmac"]
        expected = pyhmac.new(raw_key, MSG, alg.replace("sha3-", "sha3_")).digest()
        assert mac == "vault:v1:" + b64(expected)
        ok = client.write_data(f"transit/verify/{k}/{alg}", data={"input": b64(MSG), "hmac": mac})
        assert ok["data"]["valid"] is True


def test_hmac_default_sha256_and_rotation(client, name):
    t = client.secrets.transit
    k = name()
    t.create_key(k, exportable=True)
    m1 = t.generate_hmac(k, hash_input=b64(MSG))["data"]["hmac"]
    hk1 = unb64(t.export_key(k, key_type="hmac-key", version="1")["data"]["keys"]["1"])
    assert m1 == "vault:v1:" + b64(pyhmac.new(hk1, MSG, hashlib.sha256).digest())
    t.rotate_key(k)
    m2 = t.generate_hmac(k, hash_input=b64(MSG))["data"]["hmac"]
    assert m2.startswith("vault:v2:") and m2[9:] != m1[9:]
    assert t.generate_hmac(k, hash_input=b64(MSG), key_version=1)["data"]["hmac"] == m1
    assert t.verify_signed_data(k, hash_input=b64(MSG), hmac=m1)["data"]["valid"] is True
    # verified under another algorithm -> false, not an error
    assert t.verify_signed_data(k, hash_input=b64(MSG), hmac=m1, hash_algorithm="sha2-512")["data"]["valid"] is False
    with pytest.raises(exc.InvalidRequest):
        t.generate_hmac(k, hash_input=b64(MSG), key_version=7)


def test_hmac_batch(client, name):
    k = name()
    client.secrets.transit.create_key(k)
    out = client.write_data(f"transit/hmac/{k}", data={"batch_input": [
        {"input": b64("a"), "reference": "x"}, {"input": "@@", "reference": "y"}]})["data"]["batch_results"]
    assert out[0]["reference"] == "x" and out[0]["hmac"].startswith("vault:v1:")
    assert out[1]["reference"] == "y" and out[1]["error"]
    ver = client.write_data(f"transit/verify/{k}", data={"batch_input": [
        {"input": b64("a"), "hmac": out[0]["hmac"], "reference": "p"},
        {"input": b64("b"), "hmac": out[0]["hmac"], "reference": "q"}]})["data"]["batch_results"]
    assert ver[0]["valid"] is True
    # OpenBao omits `valid` when false (§5.9 quirk): treat missing as false.
    assert ver[1].get("valid", False) is False


def test_hmac_errors(client, name):
    t = client.secrets.transit
    with pytest.raises(exc.InvalidRequest):
        t.generate_hmac(name("missing"), hash_input=b64(MSG))
    k = name()
    t.create_key(k)
    with pytest.raises(exc.InvalidRequest):
        client.write_data(f"transit/hmac/{k}", data={"input": b64(MSG), "algorithm": "md5"})
    with pytest.raises(exc.InvalidRequest):
        t.generate_hmac(k, hash_input="@@")
    for bad in ("nope", "vault:v1", "vault:vX:AAAA", "vault:v9:AAAA"):
        with pytest.raises(exc.InvalidRequest):
            t.verify_signed_data(k, hash_input=b64(MSG), hmac=bad)


# --------------------------------------------------------------------------- #
# Hash and random
# --------------------------------------------------------------------------- #
def test_hash_data(client):
    t = client.secrets.transit
    data = os.urandom(100)
    assert t.hash_data(b64(data))["data"]["sum"] == hashlib.sha256(data).hexdigest()
    for alg in SHA2:
        py = alg.replace("sha2-", "sha")
        assert t.hash_data(b64(data), algorithm=alg)["data"]["sum"] == hashlib.new(py, data).hexdigest()
        got = t.hash_data(b64(data), algorithm=alg, output_format="base64")["data"]["sum"]
        assert got == b64(hashlib.new(py, data).digest())
    for alg in SHA3:
        py = alg.replace("sha3-", "sha3_")
        out = client.write_data(f"transit/hash/{alg}", data={"input": b64(data)})["data"]["sum"]
        assert out == hashlib.new(py, data).hexdigest()
        out = client.write_data("transit/hash", data={"input": b64(data), "algorithm": alg, "format": "base64"})
        assert out["data"]["sum"] == b64(hashlib.new(py, data).digest())
    # §8.11 vector
    assert t.hash_data(b64("hello world"))["data"]["sum"] == \
        "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"


def test_hash_errors(client):
    with pytest.raises(exc.InvalidRequest):
        client.write_data("transit/hash", data={"input": b64("x"), "algorithm": "md5"})
    with pytest.raises(exc.InvalidRequest):
        client.write_data("transit/hash", data={"input": b64("x"), "format": "binary"})
    with pytest.raises(exc.InvalidRequest):
        client.secrets.transit.hash_data("not base64!")
    with pytest.raises(exc.InvalidRequest):
        client.write_data("transit/hash", data={})


def test_generate_random_bytes(client):
    t = client.secrets.transit
    default = unb64(t.generate_random_bytes()["data"]["random_bytes"])
    assert len(default) == 32
    assert len(unb64(t.generate_random_bytes(n_bytes=7)["data"]["random_bytes"])) == 7
    hx = t.generate_random_bytes(n_bytes=16, output_format="hex")["data"]["random_bytes"]
    assert len(bytes.fromhex(hx)) == 16
    a = t.generate_random_bytes(n_bytes=32)["data"]["random_bytes"]
    b = t.generate_random_bytes(n_bytes=32)["data"]["random_bytes"]
    assert a != b
    big = t.generate_random_bytes(n_bytes=131072)["data"]["random_bytes"]
    assert len(base64.b64decode(big)) == 131072
    with pytest.raises(exc.InvalidRequest):
        t.generate_random_bytes(n_bytes=0)
    with pytest.raises(exc.InvalidRequest):
        t.generate_random_bytes(n_bytes=131073)
    with pytest.raises(exc.InvalidRequest):
        t.generate_random_bytes(output_format="binary")
    # URL forms (not used by hvac's helper)
    assert len(unb64(client.write_data("transit/random/12", data={})["data"]["random_bytes"])) == 12
    assert len(unb64(client.write_data("transit/random/all/5", data={})["data"]["random_bytes"])) == 5


def test_local_signature_check_rejects_tampering(client, name):
    """Sanity check of the local verifier itself."""
    t = client.secrets.transit
    k = name("ec")
    t.create_key(k, key_type="ecdsa-p256")
    sig = t.sign_data(k, hash_input=b64(MSG))["data"]["signature"]
    with pytest.raises(InvalidSignature):
        verify_locally(public_key_of(client, k), "ecdsa-p256", sig, b"different")


def test_ed25519_derived_batch_publickey(client, name):
    t = client.secrets.transit
    k = name("edd")
    t.create_key(k, key_type="ed25519", derived=True)
    items = [{"input": b64("m"), "context": b64("c1"), "reference": "a"},
             {"input": b64("m"), "context": b64("c2"), "reference": "b"}]
    out = t.sign_data(k, batch_input=items)["data"]["batch_results"]
    # note the batch field is spelled `publickey` (§5.8)
    pubs = [r["publickey"] for r in out]
    assert pubs[0] != pubs[1]
    single = t.sign_data(k, hash_input=b64("m"), context=b64("c1"))["data"]
    assert single["public_key"] == pubs[0]
    assert single["signature"] == out[0]["signature"]


def test_hmac_key_version_must_be_in_keyring(client, name):
    """§4.2: an explicit key_version below min_decryption_version is no longer in the
    keyring -> 400 `no such key version` (also for HMAC, which checks only
    min_encryption_version explicitly)."""
    t = client.secrets.transit
    k = name()
    t.create_key(k)
    t.rotate_key(k)
    t.update_key_configuration(k, min_decryption_version=2)
    with pytest.raises(exc.InvalidRequest):
        t.generate_hmac(k, hash_input=b64(MSG), key_version=1)
    with pytest.raises(exc.InvalidRequest):
        t.encrypt_data(k, plaintext=b64(MSG), key_version=1)
    assert t.generate_hmac(k, hash_input=b64(MSG), key_version=2)["data"]["hmac"].startswith("vault:v2:")


def test_verify_wrong_length_signature_is_invalid_not_error(client, name):
    """OpenBao 2.7.2 (the reference implementation): a well-formed `vault:v1:` string
    whose Ed25519 or JWS payload has the wrong length verifies as `valid: false`
    (200), not a 400 — only unparsable ASN.1 DER is a 400 (§5.9)."""
    t = client.secrets.transit
    ed = name("ed")
    t.create_key(ed, key_type="ed25519")
    assert t.verify_signed_data(ed, hash_input=b64(MSG), signature="vault:v1:AAAA")["data"]["valid"] is False
    ec_key = name("ec")
    t.create_key(ec_key, key_type="ecdsa-p256")
    out = t.verify_signed_data(ec_key, hash_input=b64(MSG), signature="vault:v1:AAAA", marshaling_algorithm="jws")
    assert out["data"]["valid"] is False
    with pytest.raises(exc.InvalidRequest):  # bad DER is a user error
        t.verify_signed_data(ec_key, hash_input=b64(MSG), signature="vault:v1:AAAA")
