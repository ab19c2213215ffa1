"""TLS: the client trusts a private CA from CIPHERD_CACERT (or VAULT_CACERT)."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cipherd import Client, ConnectionFailed, Retry
from cipherd.testing import DevServer


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_ca_and_server_cert(directory: Path) -> tuple[Path, Path, Path]:
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cipherd test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(_pem_key(key))
    return paths


def test_tls_with_private_ca(cipherd_binary: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name) -> None:
    ca, cert, key = make_ca_and_server_cert(tmp_path)
    args = ["--tls-cert", str(cert), "--tls-key", str(key)]
    with DevServer(cipherd_binary, "root", tmp_path / "srv", args) as srv:
        assert srv.url.startswith("https://")
        for var in ("CIPHERD_CACERT", "VAULT_CACERT"):
            monkeypatch.delenv(var, raising=False)
        with Client(srv.url, token=srv.token, retry=Retry(attempts=1)) as untrusting:
            with pytest.raises(ConnectionFailed):  # the system store does not know this CA
                untrusting.encrypt(name(), b"x")
        monkeypatch.setenv("VAULT_CACERT", str(ca))
        with Client(srv.url, token=srv.token) as c:
            k = name()
            assert c.decrypt(k, c.encrypt(k, b"over tls")) == b"over tls"
