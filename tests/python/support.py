"""Helpers shared by the hvac compatibility tests (encoding, local signature
checks with `cryptography`, BYOK envelopes)."""

from __future__ import annotations

import base64
import os

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding

# Key types hvac's create_key accepts (client-side list); the others are created
# through hvac's generic client.write_data (hvac rejects them before sending).
HVAC_KEY_TYPES = {
    "aes256-gcm96", "chacha20-poly1305", "ed25519", "ecdsa-p256", "ecdsa-p384",
    "ecdsa-p521", "rsa-2048", "rsa-3072", "rsa-4096",
}
SYMMETRIC = ("aes128-gcm96", "aes256-gcm96", "chacha20-poly1305", "xchacha20-poly1305")
ECDSA = ("ecdsa-p256", "ecdsa-p384", "ecdsa-p521")
RSA = ("rsa-2048", "rsa-3072", "rsa-4096")
SHA2 = ("sha2-224", "sha2-256", "sha2-384", "sha2-512")
SHA3 = ("sha3-224", "sha3-256", "sha3-384", "sha3-512")

HASHES = {
    "sha1": hashes.SHA1,
    "sha2-224": hashes.SHA224,
    "sha2-256": hashes.SHA256,
    "sha2-384": hashes.SHA384,
    "sha2-512": hashes.SHA512,
    "sha3-224": hashes.SHA3_224,
    "sha3-256": hashes.SHA3_256,
    "sha3-384": hashes.SHA3_384,
    "sha3-512": hashes.SHA3_512,
}
CURVE_BYTES = {"ecdsa-p256": 32, "ecdsa-p384": 48, "ecdsa-p521": 66}


def b64(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def payload(versioned: str) -> tuple[int, str]:
    """Split 'vault:vN:payload' into (N, payload)."""
    assert versioned.startswith("vault:v"), versioned
    version, rest = versioned[len("vault:v"):].split(":", 1)
    return int(version), rest


def digest(alg: str, data: bytes) -> bytes:
    h = hashes.Hash(HASHES[alg]())
    h.update(data)
    return h.finalize()


def create_key(client, name: str, key_type: str, mount_point: str = "transit", **options):
    """Create a key through hvac: create_key() for the types hvac knows,
    client.write_data() for aes128-gcm96 / xchacha20-poly1305 / hmac."""
    if key_type in HVAC_KEY_TYPES:
        return client.secrets.transit.create_key(name, key_type=key_type, mount_point=mount_point, **options)
    data = {"type": key_type, **options}
    return client.write_data(f"{mount_point}/keys/{name}", data=data)


def public_key_of(client, name: str, version: int = 1, mount_point: str = "transit"):
    """The version's public key as a `cryptography` object, from read_key."""
    key = client.secrets.transit.read_key(name, mount_point=mount_point)["data"]
    entry = key["keys"][str(version)]
    text = entry["public_key"]
    if key["type"] == "ed25519":
        return ed25519.Ed25519PublicKey.from_public_bytes(unb64(text))
    return serialization.load_pem_public_key(text.encode())


def verify_locally(pub, key_type: str, signature: str, message: bytes, *, hash_algorithm="sha2-256",
                   marshaling="asn1", signature_algorithm="pss", salt_length="auto", prehashed=False):
    """Verify a transit signature with `cryptography`; raises InvalidSignature."""
    _, body = payload(signature)
    if key_type == "ed25519":
        pub.verify(unb64(body), message)
        return
    if key_type in ECDSA:
        if marshaling == "jws":
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            assert "=" not in body and "+" not in body and "/" not in body, body
            n = CURVE_BYTES[key_type]
            assert len(raw) == 2 * n, (len(raw), n)
            sig = encode_dss_signature(int.from_bytes(raw[:n], "big"), int.from_bytes(raw[n:], "big"))
        else:
            sig = unb64(body)
        algo = Prehashed(HASHES[hash_algorithm]()) if prehashed else HASHES[hash_algorithm]()
        pub.verify(sig, message, ec.ECDSA(algo))
        return
    assert key_type in RSA, key_type
    sig = unb64(body)
    assert len(sig) == pub.key_size // 8
    h = HASHES[hash_algorithm]()
    algo = Prehashed(h) if prehashed else h
    if signature_algorithm == "pkcs1v15":
        pub.verify(sig, message, padding.PKCS1v15(), algo)
        return
    if salt_length == "auto":
        salt = padding.PSS.AUTO
    elif salt_length == "hash":
        salt = padding.PSS.DIGEST_LENGTH
    else:
        salt = int(salt_length)
    pub.verify(sig, message, padding.PSS(mgf=padding.MGF1(HASHES[hash_algorithm]()), salt_length=salt), algo)


def byok_envelope(wrapping_pem: str, target: bytes, oaep_hash=hashes.SHA256) -> str:
    """Build the BYOK import `ciphertext` (reference §8.8): RSA-OAEP(wrapping key,
    fresh 32-byte AES key) || AES-KWP(AES key, target)."""
    wrapping = serialization.load_pem_public_key(wrapping_pem.encode())
    assert isinstance(wrapping, rsa.RSAPublicKey)
    ephemeral = os.urandom(32)
    wrapped_ephemeral = wrapping.encrypt(
        ephemeral, padding.OAEP(mgf=padding.MGF1(algorithm=oaep_hash()), algorithm=oaep_hash(), label=None)
    )
    return b64(wrapped_ephemeral + aes_key_wrap_with_padding(ephemeral, target))


def health(client, **query) -> tuple[int, dict]:
    """GET sys/health through hvac: (status, body). hvac's JSONAdapter hands back a
    dict for 200 and the raw Response for every other status."""
    resp = client.sys.read_health_status(method="GET", **query)
    if isinstance(resp, dict):
        return 200, resp
    return resp.status_code, resp.json()
