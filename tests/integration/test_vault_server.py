#!/usr/bin/env python3
"""The Vault stand-in (build/ocp-vault-sim) on its own: AppRole login, token
lookup-self / renew-self / TTL / max TTL, KV v2 read and versions, 403 / 404 /
503, namespaces, outages, control plane and counters, TLS, clean shutdown and
no secret on stderr."""

import http.client
import os
import socket
import ssl
import sys
import time

sys.dont_write_bytecode = True     # keep tests/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (assert_eq, assert_not_contains, assert_true, certs,  # noqa: E402
                     main, test)
from vaultsim import ROLE_ID, ROOT_TOKEN, SECRET_ID, VaultSim  # noqa: E402

_vs = None


def vs():
    """The shared server (no namespace, tokens without TTL)."""
    global _vs
    if _vs is None:
        _vs = VaultSim()
    _vs.unseal()
    _vs.up()
    _vs.config(token_ttl_ms=0, token_max_ttl_ms=0, no_renew=False,
               role_id=ROLE_ID, secret_id=SECRET_ID)
    return _vs


def errors(doc):
    return doc.get("errors") if isinstance(doc, dict) else None


@test
def kv_read_returns_data_and_version():
    v = vs()
    ver = v.write("secret", "ocp/merchant", {"public_key": "pub-1",
                                             "secret": "merchant-secret-v1-xxxx"})
    st, doc = v.read("secret", "ocp/merchant")
    assert_eq(st, 200, "status")
    assert_eq(doc["data"]["metadata"]["version"], ver, "version")
    assert_eq(doc["data"]["data"]["public_key"], "pub-1", "public_key")
    assert_true(doc["data"]["data"]["secret"] == "merchant-secret-v1-xxxx", "secret value")
    for k in ("request_id", "lease_id", "renewable", "lease_duration", "wrap_info",
              "warnings", "auth"):
        assert_true(k in doc, "member %s of a Vault answer" % k)
    assert_true(isinstance(doc["data"]["metadata"]["created_time"], str), "created_time")


@test
def kv_new_version_increments():
    v = vs()
    a = v.write("secret", "ocp/rotating", {"secret": "rotating-secret-aaaa"})
    b = v.write("secret", "ocp/rotating", {"secret": "rotating-secret-bbbb"})
    assert_eq(b, a + 1, "version after a second write")
    st, doc = v.read("secret", "ocp/rotating")
    assert_eq(doc["data"]["metadata"]["version"], b, "read version")
    assert_true(doc["data"]["data"]["secret"] == "rotating-secret-bbbb", "latest value")


@test
def kv_values_keep_types_and_escapes():
    v = vs()
    data = {"s": "quote\" backslash\\ nl\n uni\u00e9\U0001F600", "n": 12, "b": True,
            "z": None, "o": {"x": [1, "two"]}}
    v.write("secret", "ocp/types", data)
    st, doc = v.read("secret", "ocp/types")
    assert_eq(st, 200, "status")
    assert_eq(doc["data"]["data"], data, "data round trip")


@test
def kv_write_through_api():
    v = vs()
    st, doc, _ = v.api("POST", "/v1/secret/data/ocp/api-written",
                       {"data": {"k": "api-written-value"}}, token=ROOT_TOKEN)
    assert_eq(st, 200, "write status")
    ver = doc["data"]["version"]
    st, doc = v.read("secret", "ocp/api-written")
    assert_eq(doc["data"]["metadata"]["version"], ver, "version read back")
    st, doc, _ = v.api("POST", "/v1/secret/data/ocp/api-written", {"nodata": 1},
                       token=ROOT_TOKEN)
    assert_eq(st, 400, "write without data")


@test
def kv_missing_path_is_404():
    v = vs()
    st, doc = v.read("secret", "ocp/does-not-exist")
    assert_eq(st, 404, "status")
    assert_eq(errors(doc), [], "errors member")
    st, doc = v.read("othermount", "x")
    assert_eq(st, 404, "unknown mount")
    st, doc, _ = v.api("GET", "/v1/secret/metadata-only", token=ROOT_TOKEN)
    assert_eq(st, 404, "not a data/ path")


@test
def kv_deleted_version_is_404():
    v = vs()
    v.write("secret", "ocp/deleted", {"k": "to-be-deleted-1"})
    assert_eq(v.delete("secret", "ocp/deleted"), True, "delete")
    st, _ = v.read("secret", "ocp/deleted")
    assert_eq(st, 404, "after delete")
    ver = v.write("secret", "ocp/deleted", {"k": "written-again-1"})
    st, doc = v.read("secret", "ocp/deleted")
    assert_eq((st, doc["data"]["metadata"]["version"]), (200, ver), "written again")


@test
def bad_or_missing_token_is_403():
    v = vs()
    v.write("secret", "ocp/merchant", {"secret": "merchant-secret-v1-xxxx"})
    for tok in (None, "", "hvs.nope", ROOT_TOKEN + "x"):
        st, doc, _ = v.api("GET", "/v1/secret/data/ocp/merchant", token=tok)
        assert_eq(st, 403, "token %r" % ("<none>" if tok is None else len(tok)))
        assert_eq(errors(doc), ["permission denied"], "errors member")
    st, doc, _ = v.api("GET", "/v1/secret/data/ocp/merchant",
                       headers={"Authorization": "Bearer " + ROOT_TOKEN})
    assert_eq(st, 200, "Authorization: Bearer")


@test
def approle_login_and_read():
    v = vs()
    before = v.stats()
    st, doc = v.login()
    assert_eq(st, 200, "login")
    auth = doc["auth"]
    tok = auth["client_token"]
    assert_true(tok.startswith("hvs.") and len(tok) > 20, "client_token shape")
    for k in ("accessor", "policies", "token_policies", "lease_duration", "renewable",
              "token_type", "orphan"):
        assert_true(k in auth, "auth member " + k)
    assert_eq(auth["lease_duration"], 0, "no TTL configured")
    v.write("secret", "ocp/merchant", {"secret": "merchant-secret-v1-xxxx"})
    st, _ = v.read("secret", "ocp/merchant", token=tok)
    assert_eq(st, 200, "read with the AppRole token")
    after = v.stats()
    assert_eq(after["logins"], before["logins"] + 1, "logins counted")
    assert_eq(after["tokens_issued"], before["tokens_issued"] + 1, "tokens issued")


@test
def approle_bad_credentials():
    v = vs()
    before = v.stats()["login_failures"]
    st, doc = v.login(secret_id="wrong-secret-id-xxxxxxxx")
    assert_eq((st, errors(doc)), (400, ["invalid role or secret ID"]), "wrong secret_id")
    st, doc = v.login(role_id="wrong-role")
    assert_eq(st, 400, "wrong role_id")
    st, doc, _ = v.api("POST", "/v1/auth/approle/login", {"secret_id": SECRET_ID})
    assert_eq((st, errors(doc)), (400, ["missing role_id"]), "no role_id")
    st, doc, _ = v.api("POST", "/v1/auth/approle/login", b"{not json")
    assert_eq(st, 400, "bad JSON")
    st, doc, _ = v.api("GET", "/v1/auth/approle/login")
    assert_eq(st, 405, "GET login")
    assert_eq(v.stats()["login_failures"], before + 3, "failures counted")


@test
def approle_secret_id_rotation():
    v = vs()
    v.config(secret_id="rotated-secret-id-0000000000")
    st, _ = v.login()
    assert_eq(st, 400, "old secret_id after rotation")
    st, _ = v.login(secret_id="rotated-secret-id-0000000000")
    assert_eq(st, 200, "new secret_id")


@test
def lookup_self_reports_ttl():
    v = vs()
    st, doc, _ = v.api("GET", "/v1/auth/token/lookup-self", token=ROOT_TOKEN)
    assert_eq(st, 200, "root lookup")
    d = doc["data"]
    assert_eq((d["ttl"], d["renewable"], d["expire_time"]), (0, False, None), "root token")
    assert_true(d["id"] == ROOT_TOKEN, "id is the token")
    v.config(token_ttl_ms=30000)
    st, login = v.login()
    tok = login["auth"]["client_token"]
    assert_true(28 <= login["auth"]["lease_duration"] <= 30, "lease_duration")
    st, doc, _ = v.api("GET", "/v1/auth/token/lookup-self", token=tok)
    d = doc["data"]
    assert_true(28 <= d["ttl"] <= 30, "ttl")
    assert_eq((d["renewable"], d["creation_ttl"], d["path"]), (True, 30, "auth/approle/login"),
              "renewable, creation_ttl, path")
    assert_true(isinstance(d["expire_time"], str), "expire_time")
    st, _, _ = v.api("GET", "/v1/auth/token/lookup-self", token="hvs.unknown")
    assert_eq(st, 403, "unknown token")


@test
def token_expires_after_ttl():
    v = vs()
    v.write("secret", "ocp/merchant", {"secret": "merchant-secret-v1-xxxx"})
    v.config(token_ttl_ms=2000)
    st, login = v.login()
    tok = login["auth"]["client_token"]
    assert_eq(v.read("secret", "ocp/merchant", token=tok)[0], 200, "before expiry")
    time.sleep(2.3)
    assert_eq(v.read("secret", "ocp/merchant", token=tok)[0], 403, "after expiry")
    st, _, _ = v.api("POST", "/v1/auth/token/renew-self", {}, token=tok)
    assert_eq(st, 403, "renewing an expired token")


@test
def renew_self_extends_ttl():
    v = vs()
    v.config(token_ttl_ms=2000)
    tok = v.login()[1]["auth"]["client_token"]
    v.write("secret", "ocp/merchant", {"secret": "merchant-secret-v1-xxxx"})
    before = v.stats()["renewals"]
    for _ in range(3):             # 3 x 1.0 s > the 2 s TTL
        time.sleep(1.0)
        st, doc, _ = v.api("POST", "/v1/auth/token/renew-self", {}, token=tok)
        assert_eq(st, 200, "renew")
        assert_eq((doc["auth"]["client_token"] == tok, doc["auth"]["renewable"]),
                  (True, True), "same token, renewable")
        assert_true(1 <= doc["auth"]["lease_duration"] <= 2, "lease_duration")
    assert_eq(v.read("secret", "ocp/merchant", token=tok)[0], 200, "alive past its first TTL")
    assert_eq(v.stats()["renewals"], before + 3, "renewals counted")


@test
def renew_refused_with_no_renew():
    v = vs()
    v.config(token_ttl_ms=5000, no_renew=True)
    tok = v.login()[1]["auth"]["client_token"]
    before = v.stats()["renew_refused"]
    st, doc, _ = v.api("POST", "/v1/auth/token/renew-self", {}, token=tok)
    assert_eq((st, errors(doc)), (403, ["permission denied"]), "renew refused")
    assert_eq(v.stats()["renew_refused"], before + 1, "refusal counted")
    assert_eq(v.read("secret", "ocp/merchant", token=tok)[0] in (200, 404), True,
              "token still valid for reads")


@test
def renew_capped_by_max_ttl():
    v = vs()
    v.config(token_ttl_ms=3000, token_max_ttl_ms=4000)
    tok = v.login()[1]["auth"]["client_token"]
    time.sleep(2.0)
    st, doc, _ = v.api("POST", "/v1/auth/token/renew-self", {}, token=tok)
    assert_eq(st, 200, "renew")
    assert_true(doc["auth"]["lease_duration"] <= 2, "capped lease_duration")
    assert_true(doc["warnings"] and "max_ttl" in doc["warnings"][0], "max_ttl warning")
    time.sleep(2.3)
    st, _, _ = v.api("GET", "/v1/auth/token/lookup-self", token=tok)
    assert_eq(st, 403, "expired at max TTL despite renewal")


@test
def non_renewable_tokens():
    v = vs()
    st, doc, _ = v.api("POST", "/v1/auth/token/renew-self", {}, token=ROOT_TOKEN)
    assert_eq((st, errors(doc)), (400, ["lease is not renewable"]), "root token")
    tok = v.new_token(ttl_ms=10000, renewable=False)
    st, _, _ = v.api("POST", "/v1/auth/token/renew-self", {}, token=tok)
    assert_eq(st, 400, "non-renewable control token")


@test
def expire_tokens_control():
    v = vs()
    tok = v.login()[1]["auth"]["client_token"]
    n = v.expire_tokens()
    assert_true(n >= 2, "at least the root and one AppRole token expired")
    assert_eq(v.read("secret", "ocp/merchant", token=tok)[0], 403, "AppRole token")
    assert_eq(v.read("secret", "ocp/merchant", token=ROOT_TOKEN)[0], 403, "root token")
    fresh = v.new_token(token_id=ROOT_TOKEN)   # the operator issues it again
    assert_eq(fresh, ROOT_TOKEN, "explicit id")
    v.write("secret", "ocp/merchant", {"secret": "merchant-secret-v1-xxxx"})
    assert_eq(v.read("secret", "ocp/merchant")[0], 200, "root token re-issued")


@test
def sealed_is_503():
    v = vs()
    tok = v.login()[1]["auth"]["client_token"]
    v.seal()
    try:
        st, doc = v.read("secret", "ocp/merchant", token=tok)
        assert_eq((st, errors(doc)), (503, ["Vault is sealed"]), "read while sealed")
        assert_eq(v.login()[0], 503, "login while sealed")
        assert_eq(v.api("GET", "/v1/auth/token/lookup-self", token=tok)[0], 503, "lookup")
        assert_eq(v.api("GET", "/v1/sys/health")[0], 503, "health")
        assert_true(v.stats()["sealed"], "stats say sealed")
    finally:
        v.unseal()
    assert_eq(v.read("secret", "ocp/merchant", token=tok)[0], 200, "after unseal")
    st, doc, _ = v.api("GET", "/v1/sys/health")
    assert_eq((st, doc["sealed"]), (200, False), "health after unseal")


@test
def policy_denied_path_is_403():
    v = vs()
    v.write("secret", "ocp/forbidden", {"k": "forbidden-value-1"})
    v.deny("secret", "ocp/forbidden")
    try:
        st, doc = v.read("secret", "ocp/forbidden")
        assert_eq((st, errors(doc)), (403, ["permission denied"]), "denied path")
        assert_eq(v.read("secret", "ocp/merchant")[0], 200, "other paths")
    finally:
        v.deny("secret", "ocp/forbidden", deny=False)
    assert_eq(v.read("secret", "ocp/forbidden")[0], 200, "allowed again")


@test
def namespace_enforced():
    v = VaultSim(namespace="team-a")
    try:
        v.write("secret", "ocp/merchant", {"secret": "ns-merchant-secret-1"})
        assert_eq(v.read("secret", "ocp/merchant")[0], 200, "right namespace")
        assert_eq(v.read("secret", "ocp/merchant", namespace="/team-a/")[0], 200,
                  "slashes around the namespace")
        for ns in ("", "team-b", "root"):
            st, doc = v.read("secret", "ocp/merchant", namespace=ns)
            assert_eq((st, errors(doc)), (403, ["permission denied"]), "read ns %r" % ns)
            st, _, _ = v.api("GET", "/v1/auth/token/lookup-self", token=ROOT_TOKEN,
                             namespace=ns)
            assert_eq(st, 403, "lookup ns %r" % ns)
            st, _ = v.login(namespace=ns)
            assert_eq(st, 404, "login ns %r" % ns)
        st, doc = v.login()
        assert_eq(st, 200, "login in the namespace")
        tok = doc["auth"]["client_token"]
        assert_eq(v.read("secret", "ocp/merchant", token=tok)[0], 200, "AppRole token")
        assert_eq(v.read("secret", "ocp/merchant", token=tok, namespace="")[0], 403,
                  "AppRole token outside the namespace")
        assert_true(v.stats()["namespace_rejects"] >= 10, "rejections counted")
        assert_true("namespace team-a" in v.stderr_text(), "listening line names it")
    finally:
        v.stop()


@test
def namespace_header_refused_without_namespace():
    v = vs()
    assert_eq(v.read("secret", "ocp/merchant", namespace="team-a")[0], 403, "unexpected ns")
    assert_eq(v.read("secret", "ocp/merchant", namespace="root")[0], 200, "root ns")


def _expect_dropped(v, conn=None):
    """A request gets no answer: the connection is closed."""
    try:
        st, _, _ = v.api("GET", "/v1/secret/data/ocp/merchant", token=ROOT_TOKEN,
                         conn=conn, timeout=5)
    except (http.client.HTTPException, ConnectionError, ssl.SSLError, OSError):
        return
    raise AssertionError("expected a closed connection, got HTTP %d" % st)


@test
def down_closes_connections_then_recovers():
    v = vs()
    v.write("secret", "ocp/merchant", {"secret": "merchant-secret-v1-xxxx"})
    keep = v.connection()
    assert_eq(v.api("GET", "/v1/secret/data/ocp/merchant", token=ROOT_TOKEN,
                    conn=keep)[0], 200, "kept-alive connection works")
    before = v.stats()["dropped"]
    v.down(1500)
    t0 = time.monotonic()
    _expect_dropped(v, conn=keep)          # an existing keep-alive connection
    keep.close()
    _expect_dropped(v)                     # a new connection
    assert_true(v.stats()["down"], "stats say down")
    assert_eq(v.stats()["dropped"], before + 2, "dropped counted")
    time.sleep(max(0, 1.6 - (time.monotonic() - t0)))
    assert_eq(v.read("secret", "ocp/merchant")[0], 200, "after the outage")


@test
def down_hang_holds_then_closes():
    v = vs()
    v.down(800, mode="hang")
    t0 = time.monotonic()
    _expect_dropped(v)
    waited = time.monotonic() - t0
    assert_true(0.5 <= waited <= 4.0, "held about 800 ms (%.2f s)" % waited)
    assert_eq(v.read("secret", "ocp/merchant")[0], 200, "after the outage")
    v.down(60000, mode="hang")
    v.up()
    assert_eq(v.read("secret", "ocp/merchant")[0], 200, "up ends it at once")


@test
def restart_on_same_port():
    v = VaultSim(token_ttl_ms=0)
    try:
        port = v.port
        v.write("secret", "ocp/merchant", {"secret": "restart-secret-111"})
        v.restart()
        assert_eq(v.port, port, "same port")
        assert_eq(v.read("secret", "ocp/merchant")[0], 404, "state is gone")
        v.write("secret", "ocp/merchant", {"secret": "restart-secret-222"})
        assert_eq(v.read("secret", "ocp/merchant")[0], 200, "serves again")
    finally:
        v.stop()


@test
def reads_counted_per_path():
    v = vs()
    v.reset_stats()
    v.write("secret", "ocp/a", {"k": "value-a-123456"})
    v.write("secret", "ocp/b", {"k": "value-b-123456"})
    for _ in range(3):
        v.read("secret", "ocp/a")
    v.read("secret", "ocp/b")
    v.read("secret", "ocp/none")
    s = v.stats()
    assert_eq(s["reads_by_path"], {"secret/ocp/a": 3, "secret/ocp/b": 1, "secret/ocp/none": 1},
              "reads_by_path")
    assert_eq((s["reads"], s["read_not_found"], s["writes"]), (5, 1, 0), "counters")


@test
def tls_verified_with_test_ca_only():
    v = vs()
    c = v.connection(cafile=certs()["other_ca"])
    try:
        c.request("GET", "/v1/sys/health")
        c.getresponse().read()
    except ssl.SSLCertVerificationError:
        pass
    else:
        raise AssertionError("a client trusting another CA connected")
    finally:
        c.close()
    s = socket.create_connection(("127.0.0.1", v.port), timeout=5)
    try:                           # plain HTTP on the TLS port gets nothing useful
        s.sendall(b"GET /v1/sys/health HTTP/1.1\r\nHost: x\r\n\r\n")
        data = s.recv(100)
        assert_true(b"200 OK" not in data, "plain HTTP served")
    except OSError:
        pass
    finally:
        s.close()


@test
def control_rejects_bad_input():
    v = vs()
    for path, body in (("/__vault/kv", {"mount": "a/b", "path": "x", "data": {}}),
                       ("/__vault/kv", {"mount": "secret", "path": "x", "data": []}),
                       ("/__vault/down", {"ms": -1}),
                       ("/__vault/down", {"ms": 10, "mode": "explode"}),
                       ("/__vault/nope", {})):
        c = v.connection()
        try:
            c.request("POST", path, body=__import__("json").dumps(body))
            st = c.getresponse().status
        finally:
            c.close()
        assert_true(st in (400, 404), "%s rejected (%d)" % (path, st))


@test
def stderr_holds_no_secret_and_stops_cleanly():
    v = VaultSim(token_ttl_ms=2000)
    try:
        v.write("secret", "ocp/merchant", {"secret": "stderr-check-secret-value"})
        tok = v.login()[1]["auth"]["client_token"]
        v.read("secret", "ocp/merchant", token=tok)
        v.api("POST", "/v1/auth/token/renew-self", {}, token=tok)
        v.login(secret_id="wrong-secret-id-for-stderr")
    finally:
        rc = v.stop()
    err = v.stderr_text()
    assert_eq(rc, 0, "exit code after SIGTERM")
    assert_true("stopping" in err, "stopping line")
    for s in (ROOT_TOKEN, SECRET_ID, tok, "stderr-check-secret-value",
              "wrong-secret-id-for-stderr"):
        assert_not_contains(err, s, "stderr")


if __name__ == "__main__":
    main()
