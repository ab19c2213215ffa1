"""Tokens and ACL policies through hvac (reference §10, §11)."""

from __future__ import annotations

import hvac.exceptions as exc
import pytest

from support import b64


def transit_policy(mount: str, key: str) -> str:
    return f'''
path "{mount}/encrypt/{key}" {{
  capabilities = ["update"]
}}
path "{mount}/decrypt/{key}" {{
  capabilities = ["update"]
}}
path "{mount}/keys/{key}" {{
  capabilities = ["read"]
}}
path "{mount}/keys/denied-*" {{
  capabilities = ["deny"]
}}
'''


def test_token_create_lookup_renew_revoke(client, backend, name):
    auth = client.auth.token.create(policies=["default"], ttl="1h", meta={"user": "alice"})["auth"]
    token = auth["client_token"]
    assert isinstance(token, str) and token
    assert isinstance(auth["accessor"], str) and auth["accessor"]
    assert "default" in auth["policies"]
    assert auth["lease_duration"] == 3600
    assert auth["renewable"] is True
    assert auth["token_type"] == "service"
    assert auth["orphan"] is False

    user = backend.client(token=token)
    assert user.is_authenticated() is True
    info = user.auth.token.lookup_self()["data"]
    assert info["id"] == token
    assert info["accessor"] == auth["accessor"]
    assert "default" in info["policies"]
    assert info["meta"] == {"user": "alice"}
    assert 0 < info["ttl"] <= 3600
    assert info["renewable"] is True
    assert info["type"] == "service"
    assert info["path"] == "auth/token/create"
    assert isinstance(info["creation_time"], int)

    renewed = user.auth.token.renew_self()["auth"]
    assert renewed["client_token"] == token
    assert 0 < renewed["lease_duration"] <= 3600
    renewed = user.auth.token.renew_self(increment="2h")["auth"]
    assert 3600 < renewed["lease_duration"] <= 7200

    # root looks the token up by value and by accessor
    assert client.auth.token.lookup(token)["data"]["accessor"] == auth["accessor"]
    assert client.auth.token.lookup_accessor(auth["accessor"])["data"]["accessor"] == auth["accessor"]

    resp = client.auth.token.revoke(token)
    assert resp.status_code == 204
    assert user.is_authenticated() is False
    with pytest.raises(exc.Forbidden):
        user.auth.token.lookup_self()


def test_token_revoke_self_and_accessor(client, backend):
    t1 = client.auth.token.create(policies=["default"], ttl="10m")["auth"]["client_token"]
    u1 = backend.client(token=t1)
    u1.auth.token.revoke_self()
    with pytest.raises(exc.Forbidden):
        u1.auth.token.lookup_self()

    a2 = client.auth.token.create(policies=["default"], ttl="10m")["auth"]
    client.auth.token.revoke_accessor(a2["accessor"])
    with pytest.raises(exc.Forbidden):
        backend.client(token=a2["client_token"]).auth.token.lookup_self()


def test_revoking_parent_revokes_child(client, backend, name):
    pol = name("creator")
    client.sys.create_or_update_policy(pol, 'path "auth/token/create" {\n  capabilities = ["update"]\n}\n')
    parent = client.auth.token.create(policies=[pol], ttl="10m")["auth"]["client_token"]
    plain = client.auth.token.create(policies=["default"], ttl="10m")["auth"]["client_token"]
    with pytest.raises(exc.Forbidden):  # the default policy does not allow auth/token/create
        backend.client(token=plain).auth.token.create(policies=["default"])
    child = backend.client(token=parent).auth.token.create(policies=["default"], ttl="5m")["auth"]
    assert child["orphan"] is False
    child_client = backend.client(token=child["client_token"])
    assert child_client.auth.token.lookup_self()["data"]["policies"] == ["default"]
    with pytest.raises((exc.InvalidRequest, exc.Forbidden)):  # not a subset of the parent's policies
        backend.client(token=parent).auth.token.create(policies=["root"])
    client.auth.token.revoke(parent)
    with pytest.raises(exc.Forbidden):
        child_client.auth.token.lookup_self()


def test_root_token_lookup_and_renew(client):
    info = client.auth.token.lookup_self()["data"]
    assert "root" in info["policies"]
    assert info["ttl"] == 0
    assert info["expire_time"] is None
    with pytest.raises(exc.InvalidRequest):  # root tokens have no lease
        client.auth.token.renew_self()


def test_orphan_token(client, backend):
    auth = client.auth.token.create_orphan(policies=["default"], ttl="5m")["auth"]
    assert auth["orphan"] is True
    info = backend.client(token=auth["client_token"]).auth.token.lookup_self()["data"]
    assert info["orphan"] is True


def test_policy_grants_and_denies(client, backend, name):
    t = client.secrets.transit
    key = name("orders")
    denied_key = "denied-" + name()
    other = name("other")
    for k in (key, denied_key, other):
        t.create_key(k)
    pol = name("transit-user")
    client.sys.create_or_update_policy(pol, transit_policy("transit", key))
    token = client.auth.token.create(policies=[pol], ttl="10m")["auth"]["client_token"]
    user = backend.client(token=token).secrets.transit

    # granted
    ct = user.encrypt_data(key, plaintext=b64("secret"))["data"]["ciphertext"]
    assert user.decrypt_data(key, ciphertext=ct)["data"]["plaintext"] == b64("secret")
    assert user.read_key(key)["data"]["name"] == key
    # default policy: lookup-self works
    assert backend.client(token=token).auth.token.lookup_self()["data"]["policies"]

    # not granted
    with pytest.raises(exc.Forbidden):
        user.encrypt_data(other, plaintext=b64("x"))
    with pytest.raises(exc.Forbidden):
        user.rotate_key(key)  # keys/<k>/rotate not covered by keys/<k>
    with pytest.raises(exc.Forbidden):
        user.list_keys()
    with pytest.raises(exc.Forbidden):
        user.read_key(denied_key)  # explicit deny
    with pytest.raises(exc.Forbidden):
        user.sign_data(key, hash_input=b64("x"))
    with pytest.raises(exc.Forbidden):
        backend.client(token=token).sys.list_mounted_secrets_engines()
    with pytest.raises(exc.Forbidden):
        backend.client(token=token).sys.create_or_update_policy(name("p"), 'path "*" { capabilities = ["sudo"] }')

    # policy changes apply immediately
    client.sys.create_or_update_policy(pol, transit_policy("transit", key) + f'''
path "transit/keys/" {{
  capabilities = ["list"]
}}
path "transit/encrypt/{other}" {{
  capabilities = ["update"]
}}
''')
    assert key in user.list_keys()["data"]["keys"]
    assert user.encrypt_data(other, plaintext=b64("x"))["data"]["ciphertext"].startswith("vault:v1:")


def test_encrypt_upsert_needs_create_capability(client, backend, name):
    key = name("upsert")
    pol = name("upd-only")
    client.sys.create_or_update_policy(pol, f'path "transit/encrypt/{key}" {{ capabilities = ["update"] }}')
    user = backend.client(token=client.auth.token.create(policies=[pol], ttl="10m")["auth"]["client_token"])
    with pytest.raises(exc.Forbidden):  # key absent -> create capability needed
        user.secrets.transit.encrypt_data(key, plaintext=b64("x"))
    client.secrets.transit.create_key(key)
    assert user.secrets.transit.encrypt_data(key, plaintext=b64("x"))["data"]["ciphertext"]


def test_glob_and_plus_patterns(client, backend, name):
    prefix = name("app")
    pol = name("globs")
    client.sys.create_or_update_policy(pol, f'''
path "transit/+/{prefix}-*" {{
  capabilities = ["create", "update"]
}}
''')
    user = backend.client(token=client.auth.token.create(policies=[pol], ttl="10m")["auth"]["client_token"])
    t = user.secrets.transit
    ct = t.encrypt_data(f"{prefix}-one", plaintext=b64("g"))["data"]["ciphertext"]
    assert t.decrypt_data(f"{prefix}-one", ciphertext=ct)["data"]["plaintext"] == b64("g")
    with pytest.raises(exc.Forbidden):
        t.encrypt_data(name("elsewhere"), plaintext=b64("g"))


def test_token_with_unknown_policy_gets_no_grants(client, backend, name):
    resp = client.auth.token.create(policies=[name("nonexistent")], ttl="5m")
    token = resp["auth"]["client_token"]
    with pytest.raises(exc.Forbidden):
        backend.client(token=token).secrets.transit.list_keys()


def test_num_uses(client, backend):
    token = client.auth.token.create(policies=["default"], num_uses=2, ttl="5m")["auth"]["client_token"]
    user = backend.client(token=token)
    user.auth.token.lookup_self()
    user.auth.token.lookup_self()
    with pytest.raises(exc.Forbidden):
        user.auth.token.lookup_self()


def test_acl_policy_endpoints(client, backend, name):
    """sys/policies/acl through hvac's *_acl_policy helpers."""
    p = name("acl")
    hcl = 'path "transit/random" {\n  capabilities = ["update"]\n}\n'
    assert client.sys.create_or_update_acl_policy(p, hcl).status_code == 204
    assert client.sys.read_acl_policy(p)["data"]["policy"] == hcl
    assert p in client.sys.list_acl_policies()["data"]["keys"]
    token = client.auth.token.create(policies=[p], ttl="5m")["auth"]["client_token"]
    user = backend.client(token=token).secrets.transit
    assert user.generate_random_bytes(n_bytes=4)["data"]["random_bytes"]
    with pytest.raises(exc.Forbidden):
        user.hash_data(b64("x"))
    client.sys.delete_acl_policy(p)
    with pytest.raises(exc.Forbidden):  # deleting the policy removes the grant at once
        user.generate_random_bytes(n_bytes=4)


def test_parameter_constraints_never_grant_more(client, backend, name):
    """§11: a policy with denied_parameters is either enforced (OpenBao) or refused
    when written (cipherd documents that it refuses restrictive parameter
    constraints rather than ignore them). It must never be silently ignored."""
    p = name("params")
    hcl = '''
path "transit/hash" {
  capabilities = ["update"]
  denied_parameters = {
    "algorithm" = ["sha2-512"]
  }
}
'''
    try:
        client.sys.create_or_update_policy(p, hcl)
    except exc.InvalidRequest:
        return  # refused at write time: acceptable (cipherd)
    token = client.auth.token.create(policies=[p], ttl="5m")["auth"]["client_token"]
    user = backend.client(token=token).secrets.transit
    assert user.hash_data(b64("x"), algorithm="sha2-256")["data"]["sum"]
    with pytest.raises(exc.Forbidden):
        user.hash_data(b64("x"), algorithm="sha2-512")


def test_sign_path_with_hash_in_url_needs_its_own_rule(client, backend, name):
    """§11: a rule on transit/sign/k does not cover transit/sign/k/sha2-512."""
    t = client.secrets.transit
    k = name("sig")
    t.create_key(k, key_type="ed25519")
    p = name("sign")
    client.sys.create_or_update_policy(p, f'path "transit/sign/{k}" {{\n  capabilities = ["update"]\n}}\n')
    user = backend.client(token=client.auth.token.create(policies=[p], ttl="5m")["auth"]["client_token"])
    assert user.secrets.transit.sign_data(k, hash_input=b64("m"))["data"]["signature"]
    with pytest.raises(exc.Forbidden):
        user.write_data(f"transit/sign/{k}/sha2-512", data={"input": b64("m")})


def test_token_options(client, backend, name):
    p = name("only")
    client.sys.create_or_update_policy(p, 'path "transit/random" {\n  capabilities = ["update"]\n}\n')
    auth = client.auth.token.create(policies=[p], no_default_policy=True, ttl="5m")["auth"]
    assert auth["policies"] == [p]
    user = backend.client(token=auth["client_token"])
    with pytest.raises(exc.Forbidden):  # no default policy: not even lookup-self
        user.auth.token.lookup_self()
    assert user.secrets.transit.generate_random_bytes(n_bytes=4)["data"]["random_bytes"]

    custom = "custom-" + name("tok")
    auth = client.auth.token.create(id=custom, policies=["default"], ttl="5m")["auth"]
    assert auth["client_token"] == custom
    assert backend.client(token=custom).auth.token.lookup_self()["data"]["id"] == custom


def test_periodic_token(client, backend):
    auth = client.auth.token.create(policies=["default"], period="1h")["auth"]
    assert auth["lease_duration"] == 3600
    user = backend.client(token=auth["client_token"])
    info = user.auth.token.lookup_self()["data"]
    assert info["period"] == 3600
    assert 3500 < user.auth.token.renew_self(increment="5h")["auth"]["lease_duration"] <= 3600


def test_forbidden_body_plain_for_unknown_tokens_multierror_for_acl_denials(client, backend, name):
    """Reference §2.2: a token that does not resolve (unknown, revoked, used up) or no
    token at all gets the plain "permission denied"; a live token that its policies do
    not allow gets the go-multierror form. Both are 403."""
    key = name("shape")
    client.secrets.transit.create_key(key)
    plain = ["permission denied"]
    multierror = ["1 error occurred:\n\t* permission denied\n\n"]

    def refused(token):
        with pytest.raises(exc.Forbidden) as raised:
            backend.client(token=token).secrets.transit.encrypt_data(key, plaintext=b64("x"))
        return raised.value.errors

    assert refused("hvs.not-a-token") == plain
    assert refused(None) == plain
    user = client.auth.token.create(policies=["default"], ttl="10m")["auth"]["client_token"]
    assert refused(user) == multierror  # live token, ACL denial
    client.auth.token.revoke(user)
    assert refused(user) == plain  # revoked: no longer resolves
    once = client.auth.token.create(policies=["root"], num_uses=1, ttl="10m")["auth"]["client_token"]
    assert backend.client(token=once).secrets.transit.encrypt_data(key, plaintext=b64("x"))["data"]["ciphertext"]
    assert refused(once) == plain  # used up
