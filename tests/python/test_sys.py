"""sys/ endpoints on an unsealed dev server through hvac (reference §9)."""

from __future__ import annotations

import hvac
import hvac.exceptions as exc
import pytest

from support import b64, health


def test_read_seal_status(client):
    status = client.sys.read_seal_status()
    assert status["type"] == "shamir"
    assert status["initialized"] is True
    assert status["sealed"] is False
    assert status["t"] >= 1 and status["n"] >= status["t"]
    assert status["progress"] == 0
    assert isinstance(status["version"], str) and status["version"]
    assert client.sys.is_sealed() is False
    assert client.seal_status["sealed"] is False


def test_read_init_status(client):
    assert client.sys.read_init_status()["initialized"] is True
    assert client.sys.is_initialized() is True


def test_read_health_status(client, backend):
    head = client.sys.read_health_status()  # HEAD
    assert head.status_code == 200
    assert head.content == b""
    code, body = health(client)
    assert code == 200
    assert body["initialized"] is True
    assert body["sealed"] is False
    assert body["standby"] is False
    assert isinstance(body["server_time_utc"], int)
    assert isinstance(body["version"], str)
    # custom codes (GET only: hvac sends the query only with GET)
    assert health(client, active_code=299)[0] == 299
    # health needs no token
    anon = backend.client(token=None)
    assert health(anon)[0] == 200


def test_list_mounted_secrets_engines(client):
    mounts = client.sys.list_mounted_secrets_engines()
    data = mounts["data"]
    for path in ("transit/", "sys/"):
        assert path in data, path
    assert data["transit/"]["type"] == "transit"
    assert {"accessor", "config", "description", "local", "seal_wrap", "type", "uuid"} <= set(data["transit/"])
    # sys injector (§2.1): the same entries at the top level
    assert mounts["transit/"]["type"] == "transit"


def test_builtin_mounts_listed(client, backend):
    """§9.7: the built-in mounts are listed. cipherd has no cubbyhole or identity
    engines and lists only what it really serves (sys/ and its transit mounts)."""
    data = client.sys.list_mounted_secrets_engines()["data"]
    builtins = (("sys/", "system"), ("cubbyhole/", "cubbyhole"), ("identity/", "identity"))
    if backend.kind == "cipherd":
        builtins = builtins[:1]
    for path, kind in builtins:
        assert path in data, path
        assert data[path]["type"] == kind


def test_second_transit_mount(client, name):
    t = client.secrets.transit
    mp = name("tr")
    resp = client.sys.enable_secrets_engine("transit", path=mp, description="second transit")
    assert resp.status_code == 204
    try:
        data = client.sys.list_mounted_secrets_engines()["data"]
        assert data[f"{mp}/"]["type"] == "transit"
        assert data[f"{mp}/"]["description"] == "second transit"
        with pytest.raises(exc.InvalidRequest):  # already in use
            client.sys.enable_secrets_engine("transit", path=mp)

        k = name()
        t.create_key(k, mount_point=mp)
        ct = t.encrypt_data(k, plaintext=b64("m2"), mount_point=mp)["data"]["ciphertext"]
        assert t.decrypt_data(k, ciphertext=ct, mount_point=mp)["data"]["plaintext"] == b64("m2")
        assert k in t.list_keys(mount_point=mp)["data"]["keys"]
        # keys are per mount
        with pytest.raises(exc.InvalidPath):
            t.read_key(k)
        sig_key = name()
        t.create_key(sig_key, key_type="ed25519", mount_point=mp)
        sig = t.sign_data(sig_key, hash_input=b64("x"), mount_point=mp)["data"]["signature"]
        assert t.verify_signed_data(sig_key, hash_input=b64("x"), signature=sig, mount_point=mp)["data"]["valid"]
    finally:
        assert client.sys.disable_secrets_engine(mp).status_code == 204
    assert f"{mp}/" not in client.sys.list_mounted_secrets_engines()["data"]
    with pytest.raises(exc.InvalidPath):  # unknown mount -> 404
        t.read_key(k, mount_point=mp)


def test_nested_mount_path(client, name):
    mp = f"{name('team')}/transit"
    client.sys.enable_secrets_engine("transit", path=mp)
    try:
        k = name()
        t = client.secrets.transit
        ct = t.encrypt_data(k, plaintext=b64("n"), mount_point=mp)["data"]["ciphertext"]
        assert t.decrypt_data(k, ciphertext=ct, mount_point=mp)["data"]["plaintext"] == b64("n")
    finally:
        client.sys.disable_secrets_engine(mp)


def test_remount_after_disable_is_empty(client, name):
    mp = name("tr")
    t = client.secrets.transit
    client.sys.enable_secrets_engine("transit", path=mp)
    t.create_key("gone", mount_point=mp)
    client.sys.disable_secrets_engine(mp)
    client.sys.enable_secrets_engine("transit", path=mp)
    try:
        with pytest.raises(exc.InvalidPath):
            t.read_key("gone", mount_point=mp)
    finally:
        client.sys.disable_secrets_engine(mp)


def test_enable_unknown_engine_type(client, name):
    with pytest.raises(exc.InvalidRequest):
        client.sys.enable_secrets_engine("bogus-engine", path=name("x"))


def test_mount_tune_read(client):
    """§9.7: GET sys/mounts/:path/tune (hvac read_mount_configuration)."""
    cfg = client.sys.read_mount_configuration("transit")
    data = cfg["data"]
    for key in ("default_lease_ttl", "max_lease_ttl", "force_no_cache", "description"):
        assert key in data, key
    assert isinstance(data["default_lease_ttl"], int) and data["default_lease_ttl"] > 0
    assert isinstance(data["max_lease_ttl"], int) and data["max_lease_ttl"] > 0


def test_mount_tune_write(client, name):
    """§9.7: POST sys/mounts/:path/tune (hvac tune_mount_configuration) -> 204."""
    mp = name("tr")
    client.sys.enable_secrets_engine("transit", path=mp)
    try:
        resp = client.sys.tune_mount_configuration(mp, description="tuned", default_lease_ttl="1h")
        assert resp.status_code == 204
        data = client.sys.read_mount_configuration(mp)["data"]
        assert data["description"] == "tuned"
        assert data["default_lease_ttl"] == 3600
        assert client.sys.list_mounted_secrets_engines()["data"][f"{mp}/"]["description"] == "tuned"
    finally:
        client.sys.disable_secrets_engine(mp)


def test_read_leader_status(backend):
    """§10.1: sys/leader is an unauthenticated endpoint clients use."""
    out = backend.client(token=None).sys.read_leader_status()
    assert "ha_enabled" in out


def test_policy_crud(client, name):
    p = name("pol")
    hcl = 'path "transit/encrypt/x" {\n  capabilities = ["update"]\n}\n'
    assert client.sys.create_or_update_policy(p, hcl).status_code == 204
    assert p in client.sys.list_policies()["data"]["policies"]
    assert client.sys.read_policy(p)["data"]["rules"] == hcl
    assert client.sys.read_acl_policy(p)["data"]["policy"] == hcl
    client.sys.delete_policy(p)
    assert p not in client.sys.list_policies()["data"]["policies"]
    with pytest.raises(exc.InvalidPath):
        client.sys.read_policy(p)
    with pytest.raises(exc.InvalidRequest):
        client.sys.create_or_update_policy(name("bad"), 'path "x" {')
    with pytest.raises(exc.InvalidRequest):
        client.sys.create_or_update_policy("root", hcl)


def test_unauthenticated_request_is_forbidden(backend):
    anon = backend.client(token=None)
    with pytest.raises(exc.Forbidden):
        anon.secrets.transit.list_keys()
    bad = backend.client(token="not-a-real-token")
    with pytest.raises(exc.Forbidden):
        bad.secrets.transit.encrypt_data("x", plaintext=b64("x"))
    assert bad.is_authenticated() is False


def test_error_bodies_are_parsed_by_hvac(client, name):
    """§13.1: hvac reads `errors` only when Content-Type is exactly application/json."""
    with pytest.raises(exc.InvalidRequest) as info:
        client.secrets.transit.decrypt_data(name("missing"), ciphertext="vault:v1:AAAA")
    assert isinstance(info.value.errors, list) and info.value.errors
    with pytest.raises(exc.InvalidPath) as info:
        client.secrets.transit.read_key(name("missing"))
    assert info.value.errors == []
    resp = client.adapter.get("/v1/transit/keys/" + name("missing"), raise_exception=False)
    assert resp.status_code == 404
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.json() == {"errors": []}


def test_unsupported_path_and_method(client):
    with pytest.raises(exc.InvalidPath):
        client.adapter.get("/v1/transit/no-such-endpoint")
    with pytest.raises(exc.InvalidPath):  # unknown mount
        client.adapter.get("/v1/no-such-mount-xyz/keys/a")
    with pytest.raises(exc.UnexpectedError) as info:  # 405
        client.adapter.get("/v1/transit/encrypt/somekey")
    assert info.value.json is not None


def test_list_audit_devices(client):
    out = client.sys.list_enabled_audit_devices()
    assert isinstance(out["data"], dict)
