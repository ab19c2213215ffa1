"""init / unseal / seal on real non-dev servers through hvac (reference §9.1–§9.6).

cipherd: `server --data-dir <tmp> --listen 127.0.0.1:0` (starts uninitialised);
OpenBao: raft storage in a temp dir (reference §0). Each test starts its own
server through the ``fresh_server`` factory (parametrized over both backends)."""

from __future__ import annotations

import base64

import hvac
import hvac.exceptions as exc
import pytest

from conftest import ensure_transit, wait_for_health
from support import b64, health


def init(server, shares=3, threshold=2):
    c = server.client(token=None)
    assert c.sys.is_initialized() is False
    result = c.sys.initialize(shares, threshold)
    assert set(result) >= {"keys", "keys_base64", "root_token"}
    assert len(result["keys"]) == shares and len(result["keys_base64"]) == shares
    for hex_key, b64_key in zip(result["keys"], result["keys_base64"]):
        assert bytes.fromhex(hex_key) == base64.b64decode(b64_key)
    server.token = result["root_token"]
    return result


def wait_active(server):
    # a raft node answers 429 (standby) for a moment after unseal; wait (bounded) for 200
    wait_for_health(server, ok_codes=(200,))


def test_uninitialized_state(fresh_server):
    server = fresh_server()
    c = server.client(token=None)
    assert c.sys.is_initialized() is False
    status = c.sys.read_seal_status()
    assert status["initialized"] is False and status["sealed"] is True
    assert status["t"] == 0 and status["n"] == 0
    assert status["type"] == "shamir" and status["progress"] == 0 and status["nonce"] == ""
    for key in ("version", "migration", "recovery_seal", "storage_type"):
        assert key in status, key
    assert health(c)[0] == 501
    assert health(c, uninit_code=299)[0] == 299
    with pytest.raises(exc.VaultDown):  # every other request: 503 while not initialised
        server.client(token="whatever").secrets.transit.list_keys()
    with pytest.raises(exc.InvalidRequest):  # invalid seal configuration
        c.sys.initialize(2, 3)


def test_init_unseal_one_key_at_a_time(fresh_server):
    server = fresh_server()
    result = init(server, 5, 3)
    c = server.client(token=None)
    assert c.sys.is_initialized() is True
    assert c.sys.is_sealed() is True
    status = c.sys.read_seal_status()
    assert (status["t"], status["n"], status["progress"]) == (3, 5, 0)
    assert health(c)[0] == 503

    with pytest.raises(exc.InvalidRequest):  # already initialised
        c.sys.initialize(5, 3)

    r1 = c.sys.submit_unseal_key(result["keys"][0])  # hex share
    assert r1["sealed"] is True and r1["progress"] == 1 and r1["t"] == 3
    assert r1["nonce"]
    again = c.sys.submit_unseal_key(result["keys"][0])  # same share again: ignored
    assert again["progress"] == 1
    r2 = c.sys.submit_unseal_key(result["keys_base64"][3])  # base64 share
    assert r2["sealed"] is True and r2["progress"] == 2
    assert r2["nonce"] == r1["nonce"]
    r3 = c.sys.submit_unseal_key(result["keys"][4])
    assert r3["sealed"] is False and r3["progress"] == 0
    assert r3["cluster_name"] and r3["cluster_id"]
    assert c.sys.is_sealed() is False
    wait_active(server)

    root = server.client()
    ensure_transit(root)
    t = root.secrets.transit
    t.create_key("persist")
    ct = t.encrypt_data("persist", plaintext=b64("kept"))["data"]["ciphertext"]
    assert t.decrypt_data("persist", ciphertext=ct)["data"]["plaintext"] == b64("kept")
    info = root.auth.token.lookup_self()["data"]
    assert "root" in info["policies"]


def test_seal_and_reunseal(fresh_server):
    server = fresh_server()
    result = init(server, 3, 2)
    c = server.client(token=None)
    assert c.sys.submit_unseal_keys(result["keys_base64"])["sealed"] is False
    wait_active(server)
    root = server.client()
    ensure_transit(root)
    t = root.secrets.transit
    t.create_key("k1")
    ct = t.encrypt_data("k1", plaintext=b64("across seal"))["data"]["ciphertext"]

    # a token without sudo on sys/seal may not seal
    user = server.client(token=root.auth.token.create(policies=["default"], ttl="5m")["auth"]["client_token"])
    with pytest.raises(exc.Forbidden):
        user.sys.seal()

    assert root.sys.seal().status_code == 204
    assert c.sys.is_sealed() is True
    assert c.sys.read_seal_status()["progress"] == 0
    code, body = health(c)
    assert code == 503
    assert body["initialized"] is True and body["sealed"] is True
    assert health(c, sealed_code=200)[0] == 200
    with pytest.raises(exc.VaultDown):
        root.secrets.transit.encrypt_data("k1", plaintext=b64("x"))
    with pytest.raises(exc.VaultDown):
        root.auth.token.lookup_self()
    with pytest.raises(exc.VaultDown):  # sealed check comes before the token check
        server.client(token=None).secrets.transit.list_keys()

    # unseal again with a different subset of shares
    final = c.sys.submit_unseal_keys([result["keys"][2], result["keys"][0]])
    assert final["sealed"] is False
    wait_active(server)
    assert t.decrypt_data("k1", ciphertext=ct)["data"]["plaintext"] == b64("across seal")


def test_unseal_reset_and_wrong_share(fresh_server):
    server = fresh_server()
    result = init(server, 3, 2)
    c = server.client(token=None)
    assert c.sys.submit_unseal_key(result["keys"][1])["progress"] == 1
    reset = c.sys.submit_unseal_key(reset=True)
    assert reset["progress"] == 0 and reset["sealed"] is True
    assert c.sys.read_seal_status()["progress"] == 0

    # a well-formed but wrong share reaching the threshold fails and resets progress
    wrong = bytes(b ^ 0x5A for b in bytes.fromhex(result["keys"][2])).hex()
    c.sys.submit_unseal_key(result["keys"][0])
    with pytest.raises((exc.InvalidRequest, exc.InternalServerError)):
        c.sys.submit_unseal_key(wrong)
    status = c.sys.read_seal_status()
    assert status["sealed"] is True and status["progress"] == 0

    with pytest.raises(exc.InvalidRequest):  # not hex / base64 of a plausible share
        c.sys.submit_unseal_key("zzzz")

    assert c.sys.submit_unseal_keys(result["keys"][:2])["sealed"] is False
    wait_active(server)
    # reset while unsealed -> 400
    with pytest.raises(exc.InvalidRequest):
        c.sys.submit_unseal_key(reset=True)
    # already unsealed: a further share returns the status
    assert c.sys.submit_unseal_key(result["keys"][2])["sealed"] is False


def test_single_share(fresh_server):
    server = fresh_server()
    result = init(server, 1, 1)
    c = server.client(token=None)
    final = c.sys.submit_unseal_key(result["keys_base64"][0])
    assert final["sealed"] is False
    wait_active(server)
    assert server.client().sys.is_sealed() is False


def test_data_survives_restart(fresh_server):
    """Keys persist across a process restart; the server comes back sealed."""
    server = fresh_server()
    result = init(server, 3, 2)
    c = server.client(token=None)
    c.sys.submit_unseal_keys(result["keys"][:2])
    wait_active(server)
    root = server.client()
    ensure_transit(root)
    t = root.secrets.transit
    t.create_key("durable", exportable=True)
    t.rotate_key("durable")
    ct = t.encrypt_data("durable", plaintext=b64("still here"))["data"]["ciphertext"]
    token = root.auth.token.create(policies=["default"], ttl="1h")["auth"]["client_token"]

    again = fresh_server.restart(server)
    c2 = again.client(token=None)
    status = c2.sys.read_seal_status()
    assert status["initialized"] is True and status["sealed"] is True
    assert (status["t"], status["n"]) == (2, 3)
    assert c2.sys.submit_unseal_keys(result["keys_base64"][1:])["sealed"] is False
    wait_active(again)
    again.token = result["root_token"]
    t2 = again.client().secrets.transit
    assert t2.read_key("durable")["data"]["latest_version"] == 2
    assert t2.decrypt_data("durable", ciphertext=ct)["data"]["plaintext"] == b64("still here")
    # tokens persist too
    assert again.client(token=token).auth.token.lookup_self()["data"]["policies"] == ["default"]
