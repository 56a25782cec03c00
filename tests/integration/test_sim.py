#!/usr/bin/env python3
"""The OnChainPay simulator on its own (no proxy): signing, nonce, envelopes,
every catalogue endpoint, test-signature, records, faults, keep-alive, TLS
session resumption, control plane and shutdown."""

import http.client
import json
import os
import re
import signal
import socket
import ssl
import sys
import threading
import time
import uuid

sys.dont_write_bytecode = True     # keep tests/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (MERCHANT_PUBLIC, MERCHANT_SECRET, PARTNER_PUBLIC,  # noqa: E402
                     PARTNER_SECRET, TOP, Sim, add_secret, assert_contains,
                     assert_eq, assert_not_contains, assert_status, assert_true,
                     binary, envelope, error_name, main, nonce, sign, subdir,
                     test, write_file)

_sim = None


def sim():
    """The shared simulator, reset to a clean state."""
    global _sim
    if _sim is None:
        _sim = Sim()
    _sim.fault("none")
    _sim.reset()
    return _sim


def catalogue():
    """The endpoint paths from proxy/catalogue.c, in table order."""
    with open(os.path.join(TOP, "proxy", "catalogue.c")) as f:
        src = f.read()
    table = src[src.index("catalogue_paths[] = {"):]
    table = table[:table.index("};")]
    return re.findall(r'"(/[^"]*)"', table)


def body_for(extra=None, n=None):
    d = {"nonce": nonce() if n is None else n}
    d.update(extra or {})
    return json.dumps(d, separators=(",", ":")).encode()


def ok_response(resp, what):
    assert_status(resp, 200, what)
    assert_eq(resp[1].get("content-type", "").split(";")[0], "application/json",
              what + " content-type")
    env = envelope(resp[2])
    assert_eq(env.get("success"), True, what + " success")
    assert_true("response" in env, what + ": no response member")
    return env["response"]


def error_response(resp, status, name, what):
    assert_status(resp, status, what)
    env = envelope(resp[2])
    assert_eq(env.get("success"), False, what + " success")
    err = env.get("error")
    assert_true(isinstance(err, dict), what + ": no error object")
    assert_eq(err.get("code"), status, what + " error.code")
    assert_eq(err.get("name"), name, what + " error.name")
    assert_true(isinstance(err.get("message"), str) and err["message"],
                what + ": no error.message")
    assert_true(isinstance(env.get("requestId"), str) and len(env["requestId"]) >= 8,
                what + ": no requestId")


# ------------------------------------------------------------------ catalogue

@test
def catalogue_has_85_sorted_unique_paths():
    paths = catalogue()
    assert_eq(len(paths), 85, "catalogue size")
    assert_eq(len(set(paths)), 85, "distinct paths")
    enc = [p.encode() for p in paths]
    assert_true(enc == sorted(enc), "catalogue must be sorted in byte order")
    for p in paths:
        assert_true(p.startswith("/api-gateway/") or p.startswith("/partner/api/"),
                    "unexpected prefix: " + p)
    for must in ("/api-gateway/test-signature", "/api-gateway/price-rate",
                 "/partner/api/create-user", "/partner/api/get-api-keys",
                 "/api-gateway/webhooks/get-verbose", "/api-gateway/address-book/get"):
        assert_true(must in paths, "missing " + must)


# ------------------------------------------------------------------ accepted

@test
def signed_requests_are_accepted():
    s = sim()
    r = ok_response(s.post("/api-gateway/price-rate",
                           body_for({"from": "ETH", "to": "USDT"})), "price-rate")
    assert_true(isinstance(r, str) and re.fullmatch(r"\d+\.\d{8}", r),
                "price-rate is a decimal string")
    r = ok_response(s.post("/api-gateway/make-order", body_for({
        "currency": "USDT", "network": "tron", "amount": "123.12",
        "order": "o-1", "lifetime": 1800})), "make-order")
    uuid.UUID(r["orderId"])
    assert_true(isinstance(r["amount"], str), "amount is a string")
    r = ok_response(s.post("/partner/api/create-user", body_for({"email": "a@b.test"}),
                           public=PARTNER_PUBLIC), "partner create-user")
    assert_true(r["password"].startswith("sim-pw-"), "fake password")
    r = ok_response(s.post("/partner/api/create-api-keys",
                           body_for({"userId": str(uuid.uuid4())}),
                           public=PARTNER_PUBLIC), "create-api-keys")
    assert_eq(sorted(r), ["alias", "id", "public", "secret"], "create-api-keys fields")
    assert_eq(len(r["secret"]), 88, "secret length")
    r = ok_response(s.post("/partner/api/get-api-keys", body_for(),
                           public=PARTNER_PUBLIC), "get-api-keys")
    assert_true(len(r["keys"]) >= 1 and all(k.get("secret") for k in r["keys"]),
                "every listed key carries a secret")
    r = ok_response(s.post("/api-gateway/webhooks/get-verbose",
                           body_for({"webhookId": str(uuid.uuid4())})), "get-verbose")
    for k in ("requestHeaders", "requestBody", "signature", "apiKey", "responseBody"):
        assert_true(k in r, "get-verbose has " + k)
    assert_true(isinstance(r["requestBody"], str), "requestBody is a string")
    json.loads(r["requestBody"])
    assert_eq(r["apiKey"], MERCHANT_PUBLIC, "get-verbose apiKey")
    assert_true(re.fullmatch(r"[0-9a-f]{64}", r["signature"]), "webhook signature hex")


@test
def every_catalogue_endpoint_answers_success():
    s = sim()
    c = s.connection()
    try:
        for p in catalogue():
            resp = s.post(p, body_for(), conn=c)
            r = ok_response(resp, p)
            if p == "/api-gateway/test-signature":
                assert_eq(r.get("checkSignatureResult"), True, p)
    finally:
        c.close()
    st = s.stats()
    assert_eq(st["requests"], 85, "requests counted")
    recs = s.records()
    assert_eq(len(recs), 85, "records kept")
    assert_true(all(r["result"] == "ok" for r in recs), "all accepted")


@test
def nonce_window_tolerates_reordering_but_not_replay():
    """--nonce-window N: late nonces that were never used are accepted, even
    before the first N have arrived; repeats and anything at or below a
    nonce that left the ring are refused."""
    w = Sim(nonce_window=4)
    try:
        n = nonce()
        post = lambda v: w.post("/api-gateway/orders", b'{"nonce":%d}' % v)
        ok_response(post(n + 1), "first")
        ok_response(post(n), "one behind the first, never used")
        error_response(post(n + 1), 400, "NONCE_REUSED", "repeat inside the ring")
        for v in (n + 5, n + 3, n + 4):
            ok_response(post(v), "out of order %d" % (v - n))
        # ring (last 4 accepted) = n, n+5, n+3, n+4; n+1 left it: floor n+1
        error_response(post(n + 1), 400, "NONCE_REUSED", "replay of an evicted nonce")
        ok_response(post(n + 2), "late but above the floor, never used")
        # ring = n+5, n+3, n+4, n+2; floor stays n+1 (n < n+1 left meanwhile)
        error_response(post(n), 400, "NONCE_REUSED", "below the floor")
        error_response(post(n + 2), 400, "NONCE_REUSED", "repeat of the late one")
        ok_response(post(n + 6), "increasing")
    finally:
        w.stop()


@test
def nonce_forms_accepted():
    s = sim()
    n = nonce()
    ok_response(s.post("/api-gateway/orders", b'{"nonce":%d}' % n), "int nonce")
    # PHP float form and exponent form compare as integers
    ok_response(s.post("/api-gateway/orders", b'{"nonce":%d.0}' % (n + 1)), "float nonce")
    error_response(s.post("/api-gateway/orders", b'{"nonce":%d.0}' % (n + 1)),
                   400, "NONCE_REUSED", "float nonce reused")
    ok_response(s.post("/api-gateway/orders", b'{"nonce":%de3}' % (n + 2)), "exp nonce")
    # nonce not first, whitespace, nested "nonce" keys do not count
    ok_response(s.post("/api-gateway/orders",
                       b'{ "a" : {"nonce": 1}, "nonce" : %d }' % ((n + 2) * 1000 + 1)),
                "spaced")
    error_response(s.post("/api-gateway/orders", b'{"a":{"nonce":%d}}' % nonce()),
                   400, "NONCE_REQUIRED", "nested nonce only")
    big = 10 ** 30
    ok_response(s.post("/api-gateway/orders", b'{"nonce":%d}' % big), "huge nonce")
    error_response(s.post("/api-gateway/orders", b'{"nonce":%d}' % (big - 1)),
                   400, "NONCE_REUSED", "huge nonce decreasing")
    # string nonces are tracked separately: unique per key
    u = str(uuid.uuid4())
    ok_response(s.post("/api-gateway/orders", json.dumps({"nonce": u})), "uuid nonce")
    error_response(s.post("/api-gateway/orders", json.dumps({"nonce": u})),
                   400, "NONCE_REUSED", "uuid nonce reused")
    # per key: the partner key has its own history
    ok_response(s.post("/partner/api/get-users", json.dumps({"nonce": u}),
                       public=PARTNER_PUBLIC), "same nonce, other key")
    error_response(s.post("/api-gateway/orders", b'{"nonce":1.5}'),
                   400, "INVALID_NONCE", "fractional nonce")
    error_response(s.post("/api-gateway/orders", b'{"nonce":true}'),
                   400, "INVALID_NONCE", "boolean nonce")


# ------------------------------------------------------------------ rejected

@test
def authentication_errors():
    s = sim()
    b = body_for()
    error_response(s.post("/api-gateway/orders", b, public=None), 401,
                   "NO_PUBLIC_KEY", "no key")
    error_response(s.post("/api-gateway/orders", b, public="pub-unknown",
                          secret=MERCHANT_SECRET), 401, "INVALID_PUBLIC_KEY",
                   "unknown key")
    error_response(s.post("/api-gateway/orders", b, signature=None,
                          secret=None, public=MERCHANT_PUBLIC,
                          headers={"x-api-signature": ""}), 401,
                   "INVALID_SIGNATURE", "empty signature")
    error_response(s.post("/api-gateway/orders", b, secret="wrong-secret"), 401,
                   "INVALID_SIGNATURE", "wrong secret")
    error_response(s.post("/api-gateway/orders", b,
                          signature=sign(MERCHANT_SECRET, b).upper()), 401,
                   "INVALID_SIGNATURE", "uppercase hex")
    error_response(s.post("/api-gateway/orders", b,
                          signature=sign(MERCHANT_SECRET, b + b" ")), 401,
                   "INVALID_SIGNATURE", "signature of other bytes")
    error_response(s.post("/api-gateway/orders", b, secret=PARTNER_SECRET), 401,
                   "INVALID_SIGNATURE", "other key's secret")
    # a signature header without a public key is still NO_PUBLIC_KEY
    error_response(s.post("/api-gateway/orders", b, public=None,
                          signature=sign(MERCHANT_SECRET, b)), 401,
                   "NO_PUBLIC_KEY", "signature but no key")
    # none of them consumed the nonce
    ok_response(s.post("/api-gateway/orders", b), "same nonce after failures")
    recs = s.records()
    assert_eq([r["result"] for r in recs],
              ["NO_PUBLIC_KEY", "INVALID_PUBLIC_KEY", "INVALID_SIGNATURE",
               "INVALID_SIGNATURE", "INVALID_SIGNATURE", "INVALID_SIGNATURE",
               "INVALID_SIGNATURE", "NO_PUBLIC_KEY", "ok"], "record results")


@test
def body_and_nonce_errors():
    s = sim()
    for bad in (b"", b"[]", b'"x"', b"42", b"{", b'{"nonce":1}x', b'{"a":1}{"b":2}',
                b'{"a":"\xff"}', b"{\"a\":1,}", b"[" * 400 + b"]" * 400,
                b'{"nonce":1}\x00'):
        error_response(s.post("/api-gateway/orders", bad), 400, "INVALID_JSON",
                       "invalid body %r" % bad[:20])
    error_response(s.post("/api-gateway/orders", b"{}"), 400, "NONCE_REQUIRED",
                   "no nonce")
    error_response(s.post("/api-gateway/orders", b'{"Nonce":5}'), 400,
                   "NONCE_REQUIRED", "nonce is case-sensitive")
    n = nonce()
    ok_response(s.post("/api-gateway/orders", body_for(n=n)), "first")
    error_response(s.post("/api-gateway/orders", body_for(n=n)), 400,
                   "NONCE_REUSED", "reused")
    error_response(s.post("/api-gateway/orders", body_for(n=n - 5)), 400,
                   "NONCE_REUSED", "decreasing")
    ok_response(s.post("/api-gateway/orders", body_for(n=n + 1)), "increasing")
    error_response(s.post("/api-gateway/orders", body_for({"x": "y"}, n=n + 1)), 400,
                   "NONCE_REUSED", "same nonce, different body")


@test
def unknown_paths_and_methods():
    s = sim()
    error_response(s.post("/api-gateway/no-such-method", body_for()), 404,
                   "NOT_FOUND", "unknown path")
    error_response(s.post("/api-gateway/test-signature/", body_for()), 404,
                   "NOT_FOUND", "trailing slash")
    error_response(s.post("/", body_for()), 404, "NOT_FOUND", "root")
    error_response(s.post("/__simx/stats", body_for()), 404, "NOT_FOUND", "near control")
    c = s.connection()
    try:
        for m in ("GET", "PUT", "DELETE", "PATCH"):
            c.request(m, "/api-gateway/orders")
            r = c.getresponse()
            error_response((r.status, dict(r.getheaders()), r.read()), 405,
                           "METHOD_NOT_ALLOWED", m)
    finally:
        c.close()
    # 404 for a good path with a query string?  the path still matches
    ok_response(s.post("/api-gateway/orders?x=1", body_for()), "query ignored")


# ------------------------------------------------------------------ test-signature

@test
def test_signature_echoes_body_exactly():
    s = sim()
    raw = ('{"nonce":%d, "text":"caf\u00e9 \u65e5\u672c \U0001F600",'
           '"esc":"a\\/b\\u00e9\\"q","n":1e+21, "amount":"1.10"}' % nonce()).encode()
    r = ok_response(s.post("/api-gateway/test-signature", raw), "test-signature")
    assert_eq(r["checkSignatureResult"], True, "signature ok")
    assert_eq(r["errors"], [], "no errors")
    assert_true(r["receivedBody"].encode("utf-8") == raw, "receivedBody byte-exact")
    assert_true(r["signature"] == sign(MERCHANT_SECRET, raw), "server signature")
    rec = s.records()[-1]
    assert_true(rec["body"].encode("utf-8") == raw, "record body byte-exact")
    assert_eq(rec["body_len"], len(raw), "record body_len")


@test
def test_signature_reports_bad_requests_with_200():
    s = sim()
    b = body_for({"x": 1})
    r = ok_response(s.post("/api-gateway/test-signature", b, signature="0" * 64),
                    "bad signature")
    assert_eq(r["checkSignatureResult"], False, "bad signature result")
    assert_true(len(r["errors"]) == 1, "one error")
    assert_true(r["signature"] == sign(MERCHANT_SECRET, b), "expected signature shown")
    assert_true(r["receivedBody"].encode() == b, "receivedBody")
    r = ok_response(s.post("/api-gateway/test-signature", b, public=None),
                    "no key")
    assert_eq(r["checkSignatureResult"], False, "no key result")
    assert_true("signature" not in r, "no signature without a key")
    assert_contains(r["errors"][0], "public key", "no-key message")
    r = ok_response(s.post("/api-gateway/test-signature", b, public="pub-nope",
                           secret="x"), "unknown key")
    assert_true("signature" not in r, "no signature for unknown key")
    r = ok_response(s.post("/api-gateway/test-signature", b"not json"), "not json")
    assert_eq(r["checkSignatureResult"], True, "signature of non-JSON body is fine")
    assert_eq(len(r["errors"]), 1, "JSON error listed")
    assert_eq(r["receivedBody"], "not json", "non-JSON echoed")
    # the failures above did not consume the nonce; the server-computed
    # signature must not reach the simulator's stderr
    ok_response(s.post("/api-gateway/test-signature", b), "valid after failures")
    assert_not_contains(s.stderr_text(), sign(MERCHANT_SECRET, b), "sim stderr")


@test
def documented_test_vector():
    # ocp-api.md §2: the docs' example secret and payload
    pub = "a9biVHtyP71VxuItAd88tuN+WyNGxVR41j9lGLj7zc0DjtGHkNRAKQWS/fiCnJPomY9i+hETCLiQvR5l+siKug=="
    sec = "RbWMG0rT6NSDQPKXs44gau/97OTsMW1+EakuQA8gb+IwjIUAdx56Fl3Oa7a8dw5L3soWK/o6UFfqlzh/6LXPDA=="
    want = "eeb0b30750aec75f89ea5f74e71bfdb5a678fbba7d626e1081d82172b2110ce7"
    body = b'{"from":"ETH","to":"USDT","nonce":1643881172430}'
    assert_true(sign(sec, body) == want, "python hmac agrees with the vector")
    d = Sim(keys={pub: sec})
    try:
        r = ok_response(d.post("/api-gateway/test-signature", body, public=pub,
                               signature="f" * 64), "vector")
        assert_true(r["signature"] == want, "sim computes the documented vector")
        ok_response(d.post("/api-gateway/price-rate", body, public=pub,
                           signature=want), "vector accepted")
    finally:
        assert_eq(d.stop(), 0, "exit code")


# ------------------------------------------------------------------ records

@test
def records_are_written_and_masked():
    s = sim()
    b = body_for({"k": "v"})
    sig = sign(MERCHANT_SECRET, b)
    ok_response(s.post("/api-gateway/orders", b, headers={"X-Extra": "1"}), "one")
    s.post("/api-gateway/orders", b)                      # reused
    s.post("/api-gateway/nope", b)                        # 404
    s.stats()                                             # control: not recorded
    recs = s.records()
    assert_eq(len(recs), 3, "three records")
    r = recs[0]
    for k in ("seq", "t_ms", "method", "path", "headers", "body", "nonce",
              "public_key", "result", "tls_session_reused"):
        assert_true(k in r, "record has " + k)
    assert_eq(r["method"], "POST", "method")
    assert_eq(r["path"], "/api-gateway/orders", "path")
    assert_eq(r["headers"].get("x-api-signature"), "<present>", "signature masked")
    assert_eq(r["headers"].get("x-extra"), "1", "header names lowercased")
    assert_eq(r["public_key"], MERCHANT_PUBLIC, "public_key")
    assert_eq(r["nonce"], str(json.loads(b)["nonce"]), "raw nonce text")
    assert_eq(r["result"], "ok", "result ok")
    assert_eq(recs[1]["result"], "NONCE_REUSED", "second result")
    assert_eq(recs[2]["result"], "NOT_FOUND", "third result")
    assert_true(recs[0]["seq"] < recs[1]["seq"] < recs[2]["seq"], "seq increases")
    assert_true(abs(r["t_ms"] - time.time() * 1000) < 60000, "t_ms is epoch ms")
    assert_not_contains(json.dumps(recs), sig, "records (memory)")
    with open(s.record_file, "rb") as f:
        filed = f.read()
    assert_not_contains(filed, sig, "record file")
    assert_not_contains(filed, MERCHANT_SECRET, "record file")
    lines = s.record_lines()
    assert_true(lines[-3:] == recs, "file lines equal in-memory records")
    s.reset()
    assert_eq(s.records(), [], "reset clears records")


@test
def record_written_before_answer():
    s = sim()
    s.fault("delay", ms=1500, count=1)
    result = {}

    def call():
        result["resp"] = s.post("/api-gateway/orders", body_for())
    t = threading.Thread(target=call)
    t.start()
    time.sleep(0.5)
    assert_true(t.is_alive(), "still waiting for the delayed answer")
    with open(s.record_file, "rb") as f:
        last = json.loads(f.read().splitlines()[-1])
    assert_eq(last["fault"], "delay", "recorded before the reply")
    t.join(10)
    ok_response(result["resp"], "delayed answer")


# ------------------------------------------------------------------ faults

@test
def fault_delay():
    s = sim()
    s.fault("delay", ms=700)
    t0 = time.monotonic()
    ok_response(s.post("/api-gateway/orders", body_for()), "delayed")
    assert_true(time.monotonic() - t0 >= 0.65, "answer was delayed")
    t0 = time.monotonic()
    s.stats()
    assert_true(time.monotonic() - t0 < 0.5, "control plane is not delayed")
    s.fault("none")
    t0 = time.monotonic()
    ok_response(s.post("/api-gateway/orders", body_for()), "not delayed")
    assert_true(time.monotonic() - t0 < 0.5, "fault cleared")


@test
def fault_close():
    s = sim()
    s.fault("close", count=1)
    b = body_for()
    try:
        s.post("/api-gateway/orders", b)
        raise AssertionError("expected the connection to be closed")
    except (http.client.RemoteDisconnected, ConnectionError, ssl.SSLError,
            http.client.BadStatusLine):
        pass
    recs = s.records()
    assert_eq(len(recs), 1, "the request was read and recorded")
    assert_eq(recs[0]["fault"], "close", "fault recorded")
    assert_eq(recs[0]["status"], 0, "no status sent")
    assert_eq(recs[0]["result"], "ok", "request itself was valid")
    # count=1: the next request is normal
    ok_response(s.post("/api-gateway/orders", body_for()), "after close")


@test
def fault_close_mid():
    s = sim()
    s.fault("close_mid")
    c = s.connection()
    try:
        c.request("POST", "/api-gateway/orders", body=body_for(),
                  headers={"x-api-public-key": MERCHANT_PUBLIC})
        r = c.getresponse()
        assert_eq(r.status, 401, "status line sent")  # unsigned: 401 envelope
        declared = int(r.getheader("content-length"))
        try:
            data = r.read()
            raise AssertionError("expected a short body (got %d of %d)"
                                 % (len(data), declared))
        except http.client.IncompleteRead as e:
            assert_true(0 < len(e.partial) < declared, "partial body")
    finally:
        c.close()
    b = body_for()
    c = s.connection()
    try:
        c.request("POST", "/api-gateway/orders", body=b, headers={
            "x-api-public-key": MERCHANT_PUBLIC,
            "x-api-signature": sign(MERCHANT_SECRET, b)})
        r = c.getresponse()
        assert_eq(r.status, 200, "signed close_mid status")
        try:
            r.read()
            raise AssertionError("expected a short body")
        except http.client.IncompleteRead:
            pass
    finally:
        c.close()
    assert_eq([x["fault"] for x in s.records()], ["close_mid", "close_mid"],
              "faults recorded")


@test
def fault_status500_with_count():
    s = sim()
    s.fault("status500", count=2)
    for i in range(2):
        error_response(s.post("/api-gateway/orders", body_for()), 500,
                       "INTERNAL_ERROR", "500 #%d" % i)
    ok_response(s.post("/api-gateway/orders", body_for()), "count exhausted")
    recs = s.records()
    assert_eq([r["status"] for r in recs], [500, 500, 200], "statuses recorded")


@test
def fault_garbage():
    s = sim()
    s.fault("garbage")
    st, h, body = s.post("/api-gateway/orders", body_for())
    assert_eq(st, 200, "garbage status")
    assert_eq(h.get("content-type", "").split(";")[0], "text/html", "garbage type")
    assert_eq(body, b"<html>upstream garbage</html>", "garbage body")



@test
def fault_no_ctype():
    s = sim()
    s.fault("no_ctype", count=1)
    st, h, body = s.post("/api-gateway/orders", body_for())
    assert_eq(st, 200, "no_ctype status")
    assert_true("content-type" not in h, "no Content-Type header")
    assert_eq(json.loads(body)["success"], True, "the planned answer")
    st, h, body = s.post("/api-gateway/orders", body_for())
    assert_eq(h.get("content-type"), "application/json", "count=1: typed again")

@test
def fault_status204_and_status304():
    """status204/status304: the request is checked and recorded as usual,
    the answer is that status with no body, no Content-Type and no
    Content-Length (RFC 9110), and the keep-alive connection goes on."""
    s = sim()
    c = s.connection()
    try:
        for mode, status in (("status204", 204), ("status304", 304)):
            s.fault(mode, count=1)
            st, h, body = s.post("/api-gateway/orders", body_for(), conn=c)
            assert_eq((st, body), (status, b""), mode + ": status and body")
            assert_true("content-length" not in h, mode + ": Content-Length sent")
            assert_true("content-type" not in h, mode + ": Content-Type sent")
            ok_response(s.post("/api-gateway/orders", body_for(), conn=c),
                        mode + ": count=1, then the planned answer on the same connection")
    finally:
        c.close()
    recs = s.records()
    assert_eq([(r["status"], r["fault"], r["result"]) for r in recs],
              [(204, "status204", "ok"), (200, None, "ok"),
               (304, "status304", "ok"), (200, None, "ok")], "records")


@test
def fault_huge():
    s = sim()
    s.fault("huge", bytes=100000, count=1)
    st, h, body = s.post("/api-gateway/orders", body_for())
    assert_eq(st, 200, "huge status")
    assert_eq(len(body), 100000, "exact size")
    assert_eq(envelope(body)["success"], True, "valid JSON")
    s.fault("huge")
    st, h, body = s.post("/api-gateway/orders", body_for(), timeout=30)
    assert_eq(len(body), 8 * 1024 * 1024, "default size 8 MiB")
    assert_eq(h.get("content-type", "").split(";")[0], "application/json", "type")
    envelope(body)


@test
def fault_control_errors():
    s = sim()
    c = s.connection()
    try:
        for bad in (b'{"mode":"explode"}', b'{"ms":5}', b"[1]", b"nope",
                    b'{"mode":"delay","ms":-1}', b'{"mode":"delay","count":"x"}'):
            c.request("POST", "/__sim/fault", body=bad)
            r = c.getresponse()
            r.read()
            assert_eq(r.status, 400, "bad fault %r" % bad)
        c.request("GET", "/__sim/fault")
        r = c.getresponse()
        assert_eq(json.loads(r.read())["mode"], "none", "fault unchanged")
        c.request("DELETE", "/__sim/stats")
        r = c.getresponse()
        r.read()
        assert_eq(r.status, 405, "wrong control method")
        c.request("GET", "/__sim/nope")
        r = c.getresponse()
        r.read()
        assert_eq(r.status, 404, "unknown control path")
    finally:
        c.close()
    assert_eq(s.stats()["requests"], 0, "control requests are not API requests")
    assert_eq(s.records(), [], "control requests are not recorded")


# ------------------------------------------------------------------ connections

@test
def keep_alive_reuses_one_connection():
    s = sim()
    c = s.connection()
    try:
        for _ in range(6):
            ok_response(s.post("/api-gateway/orders", body_for(), conn=c), "keep-alive")
    finally:
        c.close()
    st = s.stats()
    assert_eq(st["requests"], 6, "requests")
    assert_eq(st["connections"], 1, "one connection")
    assert_eq(st["handshakes"], 1, "one handshake")
    assert_eq(st["resumed"], 0, "nothing resumed")


class _ResumingConnection(http.client.HTTPSConnection):
    session = None

    def connect(self):
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host,
                                              session=self.session)


@test
def tls_session_resumption_is_counted():
    s = sim()
    ctx = s.context()
    c1 = _ResumingConnection("127.0.0.1", s.port, context=ctx, timeout=10)
    ok_response(s.post("/api-gateway/orders", body_for(), conn=c1), "first")
    sess = c1.sock.session
    c1.close()
    c2 = _ResumingConnection("127.0.0.1", s.port, context=ctx, timeout=10)
    c2.session = sess
    ok_response(s.post("/api-gateway/orders", body_for(), conn=c2), "second")
    reused = c2.sock.session_reused
    c2.close()
    assert_true(reused, "client resumed the session")
    st = s.stats()
    assert_eq((st["connections"], st["handshakes"], st["resumed"]), (2, 2, 1),
              "connections/handshakes/resumed")
    assert_eq([r["tls_session_reused"] for r in s.records()], [False, True],
              "tls_session_reused in records")


@test
def many_concurrent_connections():
    s = sim()
    errors = []
    n_threads, per = 40, 5

    def worker():
        try:
            c = s.connection(timeout=20)
            try:
                for _ in range(per):
                    st, _, body = s.post("/api-gateway/orders",
                                         json.dumps({"nonce": str(uuid.uuid4())}),
                                         conn=c)
                    if st != 200:
                        errors.append(error_name(body))
            finally:
                c.close()
        except Exception as e:  # noqa: BLE001
            errors.append(type(e).__name__)
    ts = [threading.Thread(target=worker) for _ in range(n_threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert_eq(errors, [], "errors")
    st = s.stats()
    assert_eq(st["requests"], n_threads * per, "requests")
    assert_eq(st["connections"], n_threads, "connections")


@test
def idle_keep_alive_connections_time_out():
    s = Sim(timeout=1)
    try:
        c = s.connection()
        ok_response(s.post("/api-gateway/orders", body_for(), conn=c), "first")
        time.sleep(2.5)
        try:
            s.post("/api-gateway/orders", body_for(), conn=c)
            raise AssertionError("expected the idle connection to be closed")
        except (http.client.RemoteDisconnected, ConnectionError, ssl.SSLError,
                http.client.BadStatusLine):
            pass
        c.close()
        ok_response(s.post("/api-gateway/orders", body_for()), "new connection")
    finally:
        assert_eq(s.stop(), 0, "exit code")


@test
def hostile_requests_do_not_kill_the_simulator():
    s = sim()
    ctx = s.context()
    for data in (b"GARBAGE\r\n\r\n", b"POST /api-gateway/orders HTTP/1.1\r\n"
                 b"Content-Length: 99999999999\r\n\r\n",
                 b"POST /api-gateway/orders HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Length: 10\r\n\r\nabc", b"\x00" * 100):
        try:
            with socket.create_connection(("127.0.0.1", s.port), 5) as raw_sock:
                with ctx.wrap_socket(raw_sock, server_hostname="127.0.0.1") as t:
                    t.sendall(data)
                    t.settimeout(1)
                    try:
                        t.recv(4096)
                    except (socket.timeout, ssl.SSLError, ConnectionError):
                        pass
        except (ssl.SSLError, ConnectionError):
            pass
    # plain TCP (no TLS) as well
    with socket.create_connection(("127.0.0.1", s.port), 5) as raw_sock:
        raw_sock.sendall(b"POST / HTTP/1.1\r\n\r\n")
        raw_sock.settimeout(2)
        try:
            raw_sock.recv(100)
        except (socket.timeout, ConnectionError):
            pass
    ok_response(s.post("/api-gateway/orders", body_for()), "still serving")


# ------------------------------------------------------------------ process

@test
def bad_command_lines_and_key_files():
    import subprocess
    r = subprocess.run([binary("ocp-sim")], capture_output=True)
    assert_eq(r.returncode, 2, "usage exit code")
    d = subdir("badkeys")
    secret = "fake-secret-that-must-not-be-printed"
    add_secret(secret)
    keys = write_file(os.path.join(d, "keys.txt"),
                      "# comment\n\npub-a %s extra\n" % secret)
    from harness import certs
    c = certs()
    r = subprocess.run([binary("ocp-sim"), "--cert", c["server"], "--key",
                        c["server_key"], "--keys", keys], capture_output=True,
                       timeout=10)
    assert_eq(r.returncode, 1, "bad key file exit code")
    assert_contains(r.stderr, "keys.txt:3", "line number reported")
    assert_not_contains(r.stderr, secret, "key file error")
    r = subprocess.run([binary("ocp-sim"), "--listen", "0.0.0.0:0", "--cert",
                        c["server"], "--key", c["server_key"], "--keys",
                        os.devnull], capture_output=True, timeout=10)
    assert_eq(r.returncode, 1, "non-loopback listen refused")


@test
def sigterm_stops_cleanly():
    s = Sim()
    c = s.connection()
    ok_response(s.post("/api-gateway/orders", body_for(), conn=c), "before stop")
    # an idle keep-alive connection and a delayed request in flight
    s.fault("delay", ms=5000)
    t = threading.Thread(target=lambda: _swallow(s.post, "/api-gateway/orders",
                                                 body_for()))
    t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    rc = s.stop()
    assert_eq(rc, 0, "exit code after SIGTERM")
    assert_true(time.monotonic() - t0 < 5, "stopped promptly")
    assert_contains(s.stderr_text(), "listening on 127.0.0.1:%d" % s.port,
                    "listening line")
    t.join(10)
    c.close()
    s2 = Sim()
    s2.proc.send_signal(signal.SIGINT)
    assert_eq(s2.proc.wait(10), 0, "exit code after SIGINT")
    s2.stop()


def _swallow(fn, *a):
    try:
        fn(*a)
    except Exception:  # noqa: BLE001
        pass


@test
def shared_sim_exits_zero():
    if _sim is not None:
        assert_not_contains(_sim.stderr_text(), MERCHANT_SECRET, "sim stderr")
        assert_eq(_sim.stop(), 0, "shared simulator exit code")


if __name__ == "__main__":
    main()
