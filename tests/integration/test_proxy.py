#!/usr/bin/env python3
"""The real ocp-proxy in front of the OnChainPay simulator: signing with both
profiles and every secret source, the endpoint catalogue, byte-exact bodies
and nonce splicing, nonce monotonicity (concurrency, restart), secrets kept out
of the audit trail and stderr, the proxy's own error envelopes, header
stripping, open-proxy refusals, SIGHUP reload, SIGTERM drain, upstream
keep-alive, -t/-V/-h and the audit record format."""

import fcntl
import grp
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid

sys.dont_write_bytecode = True     # keep tests/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (MERCHANT_PUBLIC, MERCHANT_SECRET, PARTNER_PUBLIC,  # noqa: E402
                     PARTNER_SECRET, TOP, Proxy, Sim, add_secret,
                     assert_contains, assert_eq, assert_not_contains,
                     assert_status, assert_true, certs, connect, envelope,
                     error_name, fail_alloc_env, free_port, main, raw, request,
                     run_proxy, Skip, binary, sign, subdir, test, wait_for, write_file)

RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

_sim = None


def sim():
    """The shared simulator, reset to a clean state (records, nonces, stats)."""
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


# ------------------------------------------------------------------ set-up

class Setup:
    """A private directory for one proxy: secret files (0600), state dir,
    audit path, and an INI builder.  Sections are dicts; a value of None
    drops the key, a section of None drops the section."""

    def __init__(self, s, name="px"):
        self.sim = s
        self.dir = subdir(name)
        self.state = os.path.join(self.dir, "state")
        os.mkdir(self.state, 0o700)
        self.audit = os.path.join(self.dir, "audit.jsonl")
        self.merchant_secret = write_file(os.path.join(self.dir, "merchant.secret"),
                                          MERCHANT_SECRET + "\n")
        self.partner_secret = write_file(os.path.join(self.dir, "partner.secret"),
                                         PARTNER_SECRET)
        self.proxy = None

    def sections(self, **over):
        sec = {
            "listen": {"address": "127.0.0.1:0", "shutdown_timeout_ms": "5000"},
            "upstream": {"url": self.sim.url, "ca_file": self.sim.ca,
                         "connect_timeout_ms": "2000", "timeout_ms": "5000"},
            "state": {"dir": self.state},
            "audit": {"path": self.audit, "bodies": "redacted"},
            "log": {"level": "info"},
            "profile.merchant": {"public_key": MERCHANT_PUBLIC,
                                 "secret": "file:" + self.merchant_secret,
                                 "routes": "/api-gateway/"},
            "profile.partner": {"public_key": PARTNER_PUBLIC,
                                "secret": "file:" + self.partner_secret,
                                "routes": "/partner/api/"},
        }
        for name, values in over.items():
            name = name.replace("profile_", "profile.")
            if values is None:
                sec.pop(name, None)
                continue
            d = sec.setdefault(name, {})
            for k, v in values.items():
                if v is None:
                    d.pop(k, None)
                else:
                    d[k] = str(v)
        return sec

    def ini(self, extra="", **over):
        out = []
        for name, values in self.sections(**over).items():
            out.append("[%s]" % name)
            out.extend("%s = %s" % kv for kv in values.items())
            out.append("")
        return "\n".join(out) + extra

    def start(self, env=None, **over):
        self.proxy = Proxy(self.ini(**over), env=env)
        return self.proxy

    def audit_text(self):
        try:
            with open(self.audit, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def audit_lines(self):
        return [json.loads(l) for l in self.audit_text().splitlines() if l.strip()]

    def audit_for(self, rid, phase="outcome", timeout=5.0):
        """The audit line of request rid in phase (waits for the writer)."""
        def find():
            for rec in self.audit_lines():
                if rec.get("id") == rid and rec.get("phase") == phase:
                    return rec
            return None
        return wait_for(find, timeout, "audit %s line of %s" % (phase, rid))

    def stop(self):
        if self.proxy is not None and self.proxy.running():
            return self.proxy.stop()
        return self.proxy.proc.returncode if self.proxy else None


def ok(resp, what):
    """A relayed upstream success: 200, JSON, success true; returns response."""
    assert_status(resp, 200, what)
    assert_eq(resp[1].get("content-type", "").split(";")[0], "application/json",
              what + " content-type relayed")
    env = envelope(resp[2])
    assert_eq(env.get("success"), True, what + " success")
    assert_true(resp[1].get("x-request-id"), what + ": no X-Request-Id")
    return env.get("response")


def proxy_error(resp, status, names, what):
    """The proxy's own error envelope with X-Request-Id == requestId."""
    if isinstance(names, str):
        names = (names,)
    assert_status(resp, status, what)
    st, h, body = resp
    assert_eq(h.get("content-type", "").split(";")[0], "application/json",
              what + " content-type")
    env = envelope(body)
    assert_eq(sorted(env), ["error", "requestId", "success"], what + " envelope members")
    assert_eq(env["success"], False, what + " success")
    err = env["error"]
    assert_true(isinstance(err, dict), what + ": error is not an object")
    assert_eq(sorted(err), ["code", "message", "name"], what + " error members")
    assert_eq(err["code"], status, what + " error.code")
    assert_true(err["name"] in names, "%s: error.name %r not in %r"
                % (what, err["name"], names))
    assert_true(err["name"].startswith("PROXY_"), what + ": name starts PROXY_")
    assert_true(isinstance(err["message"], str) and err["message"],
                what + ": empty message")
    rid = env["requestId"]
    assert_true(isinstance(rid, str) and len(rid) >= 8, what + ": requestId")
    assert_eq(h.get("x-request-id"), rid, what + " X-Request-Id == requestId")
    return err["name"], rid


def parse_http(data):
    """(status, {lowercased: value}, body) of one raw HTTP/1.1 response."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert_true(sep, "no complete response head (%d bytes received)" % len(data))
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    assert_true(len(parts) >= 2 and parts[0].startswith("HTTP/1."),
                "bad status line %r" % lines[0][:40])
    h = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        h[k.strip().lower()] = v.strip()
    n = int(h.get("content-length", len(rest)))
    return int(parts[1]), h, rest[:n]


def rec_count(s):
    return len(s.records())


def expected_splice(body, n):
    """body with "nonce":n (and ',' unless the object is empty) after '{'."""
    body = body if body.strip() else b"{}"
    i = body.index(b"{")
    inner = body[i + 1:body.rindex(b"}")]
    member = b'"nonce":%d' % n + (b"," if inner.strip() else b"")
    return body[:i + 1] + member + body[i + 1:]


def thread(fn, *a):
    box = {}

    def run():
        try:
            box["value"] = fn(*a)
        except BaseException as e:  # noqa: BLE001
            box["error"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def joined(t, box, what, timeout=15):
    t.join(timeout)
    assert_true(not t.is_alive(), what + ": still running")
    if "error" in box:
        raise AssertionError("%s raised %s" % (what, type(box["error"]).__name__))
    return box["value"]


def no_secrets(text, what, extra=()):
    for s in (MERCHANT_SECRET, PARTNER_SECRET) + tuple(extra):
        assert_not_contains(text, s, what)


# ------------------------------------------------------------------ 1 signing

def check_signed(s, p, what):
    """test-signature through the proxy (merchant) and a partner call."""
    body = b'{"x":1,"s":"caf\xc3\xa9"}'
    resp = request(p.target, "/api-gateway/test-signature", body)
    r = ok(resp, what + " test-signature")
    assert_eq(r.get("checkSignatureResult"), True, what + " checkSignatureResult")
    assert_eq(r.get("errors"), [], what + " errors")
    recs = s.records()
    rec = recs[-1]
    got = rec["body"].encode("utf-8")
    assert_true(r["receivedBody"].encode("utf-8") == got,
                what + ": receivedBody equals the bytes the sim received")
    assert_true(got == expected_splice(body, int(rec["nonce"])),
                what + ": received body is the caller's with the nonce spliced")
    assert_true(r["signature"] == sign(MERCHANT_SECRET, got),
                what + ": server-side signature uses the merchant secret")
    assert_eq(rec["result"], "ok", what + " merchant record result")
    assert_eq(rec["public_key"], MERCHANT_PUBLIC, what + " merchant public key")
    assert_eq(rec["nonce_type"], "number", what + " merchant nonce type")
    assert_true(rec["nonce"] and rec["nonce"].isdigit(), what + " merchant nonce present")
    assert_eq(rec["headers"].get("x-api-signature"), "<present>", what + " signature sent")
    ok(request(p.target, "/partner/api/get-users", b'{"limit":10}'), what + " partner")
    rec = s.records()[-1]
    assert_eq(rec["path"], "/partner/api/get-users", what + " partner path")
    assert_eq(rec["result"], "ok", what + " partner record result")
    assert_eq(rec["public_key"], PARTNER_PUBLIC, what + " partner public key")
    assert_true(rec["nonce"] and rec["nonce"].isdigit(), what + " partner nonce present")
    no_secrets(p.stderr_text(), what + " stderr")


@test
def both_profiles_sign_with_file_secrets():
    s = sim()
    st = Setup(s)
    p = st.start()
    try:
        check_signed(s, p, "file:")
    finally:
        assert_eq(st.stop(), 0, "exit code")
    no_secrets(st.audit_text(), "audit")


@test
def env_and_credential_secret_sources():
    s = sim()
    # env:VAR for both keys
    st = Setup(s, "env")
    env = dict(os.environ, OCP_IT_MERCHANT_SECRET=MERCHANT_SECRET,
               OCP_IT_PARTNER_SECRET=PARTNER_SECRET)
    env.pop("CREDENTIALS_DIRECTORY", None)
    p = st.start(env=env,
                 profile_merchant={"secret": "env:OCP_IT_MERCHANT_SECRET"},
                 profile_partner={"secret": "env:OCP_IT_PARTNER_SECRET"})
    try:
        check_signed(s, p, "env:")
        try:
            with open("/proc/%d/environ" % p.pid, "rb") as f:
                environ = f.read()
        except OSError:
            environ = b""
        # env: "reads and then clears the variable"; /proc shows the initial
        # environment block, which the daemon overwrote in place.  Under a
        # wrapper (valgrind) /proc/PID is the wrapper's own block, not the
        # daemon's copy, so the check only means something unwrapped.
        if not os.environ.get("OCP_PROXY_WRAPPER"):
            no_secrets(environ, "/proc/PID/environ of the env: proxy")
    finally:
        assert_eq(st.stop(), 0, "env: exit code")
    # credential:NAME from $CREDENTIALS_DIRECTORY
    s.reset()
    st = Setup(s, "cred")
    cdir = subdir("creds")
    write_file(os.path.join(cdir, "ocp-merchant"), MERCHANT_SECRET + "\n")
    write_file(os.path.join(cdir, "ocp-partner"), PARTNER_SECRET)
    env = dict(os.environ, CREDENTIALS_DIRECTORY=cdir)
    p = st.start(env=env,
                 profile_merchant={"secret": "credential:ocp-merchant"},
                 profile_partner={"secret": "credential:ocp-partner"})
    try:
        check_signed(s, p, "credential:")
    finally:
        assert_eq(st.stop(), 0, "credential: exit code")


# ------------------------------------------------------------------ 2 catalogue

@test
def every_catalogue_endpoint_through_the_proxy():
    s = sim()
    paths = catalogue()
    assert_eq(len(paths), 85, "catalogue size")
    st = Setup(s)
    p = st.start()
    c = connect(p.target)
    try:
        for path in paths:
            ok(request(p.target, path, b"{}", conn=c), path)
    finally:
        c.close()
        assert_eq(st.stop(), 0, "exit code")
    recs = s.records()
    assert_eq(len(recs), 85, "records")
    assert_eq([r["path"] for r in recs], paths, "paths forwarded in order")
    for r in recs:
        assert_eq(r["result"], "ok", r["path"] + " result")
        want = PARTNER_PUBLIC if r["path"].startswith("/partner/api/") else MERCHANT_PUBLIC
        assert_eq(r["public_key"], want, r["path"] + " key")
    assert_true(s.stats()["connections"] <= 2, "upstream connections reused")


# ------------------------------------------------------------------ 3 bytes

BODIES = [
    ("empty body", b""),
    ("empty object", b"{}"),
    ("empty object with space", b"{ }"),
    ("leading whitespace", b'  {"a":1}'),
    ("trailing newline", b'{"a":1}\n'),
    ("whitespace everywhere", b'\t{ "a" : [ 1 , 2 ] ,\r\n "b" : { } }  '),
    ("nested nonce only", b'{"a":{"nonce":5},"b":[{"nonce":6}]}'),
    ("big numbers", b'{"big":123456789012345678901234567890,"f":1e400,'
                    b'"g":-0.000000000000000000001,"h":1E+21,"amount":"1.10"}'),
    ("unicode", b'{"s":"\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80"}'),
    ("escapes", b'{"s":"\\u00e9\\/\\"\\\\\\n","t":"a\\/b"}'),
    ("key order and duplicates kept", b'{"z":1,"a":2,"z":3}'),
]


@test
def body_bytes_forwarded_exactly():
    s = sim()
    st = Setup(s)
    p = st.start()
    c = connect(p.target)
    try:
        for what, body in BODIES:
            n0 = rec_count(s)
            r = ok(request(p.target, "/api-gateway/test-signature", body, conn=c), what)
            recs = s.records()
            assert_eq(len(recs), n0 + 1, what + ": one request forwarded")
            rec = recs[-1]
            assert_true(rec["nonce"] and rec["nonce"].isdigit(), what + ": numeric nonce")
            got = rec["body"].encode("utf-8")
            want = expected_splice(body, int(rec["nonce"]))
            assert_true(got == want, "%s: forwarded %r, expected %r" % (what, got, want))
            assert_true(r["receivedBody"].encode("utf-8") == got, what + ": receivedBody")
            assert_eq(r["checkSignatureResult"], True, what + ": signature")
            assert_eq(rec["result"], "ok", what + ": sim result")
        # a caller's own nonce is kept and none is inserted
        last = int(s.records()[-1]["nonce"])
        u = str(uuid.uuid4())
        for what, body in (
                ("client string nonce", ('{"a":1,"nonce":"%s"}' % u).encode()),
                ("client number nonce", b'{ "nonce" : %d , "a":1}' % (last + 10 ** 6))):
            ok(request(p.target, "/api-gateway/test-signature", body, conn=c), what)
            rec = s.records()[-1]
            assert_true(rec["body"].encode("utf-8") == body, what + ": forwarded unchanged")
            assert_eq(rec["result"], "ok", what + ": sim result")
            assert_eq(rec["body"].count('"nonce"'), 1, what + ": no second nonce")
    finally:
        c.close()
        assert_eq(st.stop(), 0, "exit code")


@test
def client_numeric_nonce_raises_the_floor():
    """SPEC 4: the inserted nonce is greater than every nonce the profile
    used before, including one a caller chose (the key saw it upstream)."""
    s = sim()
    st = Setup(s)
    p = st.start()
    try:
        ok(request(p.target, "/api-gateway/orders", b"{}"), "first")
        # a caller nonce far ahead of the clock would push the profile's
        # nonces (here and at the API) out of reach: refused, not forwarded
        n0 = len(s.records())
        far = int(s.records()[-1]["nonce"]) + 10 * 86400000
        resp = request(p.target, "/api-gateway/orders", b'{"nonce":%d}' % far)
        assert_status(resp, 400, "nonce ten days ahead")
        assert_eq(error_name(resp[2]), "PROXY_NONCE_TOO_LARGE", "error name")
        assert_eq(len(s.records()), n0, "nothing forwarded")
        big = int(s.records()[-1]["nonce"]) + 10 ** 7
        ok(request(p.target, "/api-gateway/orders", b'{"nonce":%d}' % big), "client nonce")
        resp = request(p.target, "/api-gateway/orders", b"{}")
        rec = s.records()[-1]
        assert_true(int(rec["nonce"]) > big,
                    "inserted nonce %s is not above the client's %d (sim: %s)"
                    % (rec["nonce"], big, rec["result"]))
        ok(resp, "after client nonce")
    finally:
        st.stop()


# ------------------------------------------------------------------ 4 nonces

@test
def caller_nonce_must_be_an_integer_within_a_day():
    """A caller's own top-level nonce is forwarded only if it is a JSON
    integer (digits only) at most a day ahead of the clock in ms, or a JSON
    string (the API takes unique strings).  Anything else reached the API as
    a nonce the profile's counter could not account for, so a later inserted
    nonce could be lower than it: refused with 400, nothing sent, the
    counter untouched."""
    s = sim()
    st = Setup(s)
    p = st.start()
    try:
        ok(request(p.target, "/api-gateway/orders", b"{}"), "first")
        last = int(s.records()[-1]["nonce"])
        day = 86400000
        n0 = rec_count(s)
        big, bad = "PROXY_NONCE_TOO_LARGE", "PROXY_NONCE_INVALID"
        for what, body, name in (
                ("23 digits", b'{"nonce":99999999999999999999999}', big),
                ("2^64", b'{"nonce":18446744073709551616}', big),
                ("2^64 - 1", b'{"nonce":18446744073709551615}', big),
                ("2^63", b'{"nonce":9223372036854775808}', big),
                ("ten days ahead", b'{"nonce":%d}' % (last + 10 * day), big),
                ("exponent", b'{"nonce":%de3}' % (last + 20 * day), bad),
                ("exponent, small", b'{"nonce":%dE0}' % (last + 1), bad),
                ("fraction", b'{"nonce":%d.5}' % (last + 5 * day), bad),
                ("fraction .0", b'{"nonce":%d.0}' % (last + 1), bad),
                ("negative", b'{"nonce":-%d}' % (last + 1), bad),
                ("minus zero", b'{"nonce":-0}', bad),
                ("true", b'{"nonce":true}', bad),
                ("null", b'{"nonce":null}', bad),
                ("object", b'{"nonce":{"n":1}}', bad),
                ("array", b'{"nonce":[%d]}' % (last + 1), bad),
                ("escaped key", b'{"a":1,"non\\u0063e":%d.5}' % (last + 1), bad),
                ("twice", b'{"nonce":%d,"nonce":"x"}' % (last + 1), bad),
                ("twice, numbers", b'{"nonce":%d,"nonce":%d}' % (last + 1, last + 2), bad)):
            _, rid = proxy_error(request(p.target, "/api-gateway/orders", body), 400, name,
                                 what)
            rec = st.audit_for(rid)
            assert_eq((rec["error"], rec["nonce"], rec["profile"]), (name, None, "merchant"),
                      what + ": audit outcome")
        assert_eq(rec_count(s), n0, "no refused nonce was forwarded")
        ok(request(p.target, "/api-gateway/orders", b"{}"), "after the refusals")
        after = int(s.records()[-1]["nonce"])
        assert_true(last < after < last + day,
                    "the counter was not pushed by a refused nonce (%d after %d)"
                    % (after, last))
        # accepted forms: an integer up to a day ahead raises the counter
        ahead = after + day // 2
        ok(request(p.target, "/api-gateway/orders", b'{"a":1, "nonce" : %d}' % ahead),
           "half a day ahead")
        assert_eq(s.records()[-1]["nonce"], str(ahead), "forwarded as sent")
        ok(request(p.target, "/api-gateway/orders", b"{}"), "inserted after it")
        assert_true(int(s.records()[-1]["nonce"]) > ahead, "inserted nonce above the caller's")
    finally:
        assert_eq(st.stop(), 0, "exit code")


@test
def caller_digit_string_nonce_counts_like_an_integer():
    """A caller's string nonce of ASCII digits only, as sent ("1795000000000",
    leading zeros allowed) is what an API reading numeric strings as numbers
    takes for that number: it is held to the integer rules (at most a day
    ahead, 20 digits, 64 bits) and raises the profile's counter, so a later
    inserted nonce is above it.  It still goes upstream byte for byte as a
    string and the audit records its raw token.  Digits written as escapes
    ("\\u0031") are digits to any JSON reader and count the same.  Other
    strings (a UUID, a sign, a blank) are not counted."""
    s = sim()
    st = Setup(s)
    p = st.start()
    try:
        ok(request(p.target, "/api-gateway/orders", b"{}"), "first")
        last = int(s.records()[-1]["nonce"])
        day, hour = 86400000, 3600000
        n0 = rec_count(s)
        big = "PROXY_NONCE_TOO_LARGE"

        def esc(n):  # every digit as a \u escape
            return b'"' + b"".join(b"\\u%04x" % c for c in b"%d" % n) + b'"'

        for what, tok in (("ten days ahead", b'"%d"' % (last + 10 * day)),
                          ("2^64", b'"18446744073709551616"'),
                          ("23 digits", b'"99999999999999999999999"'),
                          ("21 digits, zero-padded", b'"%021d"' % 1),
                          ("ten days ahead, escaped", esc(last + 10 * day)),
                          ("21 digits, some escaped", b'"\\u0030%019d\\u0031"' % 0)):
            _, rid = proxy_error(request(p.target, "/api-gateway/orders",
                                         b'{"nonce":%s}' % tok), 400, big, what)
            rec = st.audit_for(rid)
            assert_eq((rec["error"], rec["nonce"]), (big, None), what + ": audit outcome")
        assert_eq(rec_count(s), n0, "no refused string nonce was forwarded")
        # an hour ahead: forwarded as sent, then inserted nonces stay above it
        ahead = last + hour
        body = b'{"a":1, "nonce" : "%d"}' % ahead
        resp = request(p.target, "/api-gateway/orders", body)
        ok(resp, "digit string an hour ahead")
        rec = s.records()[-1]
        assert_eq((rec["nonce"], rec["nonce_type"]), (str(ahead), "string"),
                  "forwarded as a string")
        assert_true(rec["body"].encode() == body, "forwarded byte for byte")
        for phase in ("request", "outcome"):
            a = st.audit_for(resp[1]["x-request-id"], phase)
            assert_eq((a.get("nonce"), a.get("nonce_from")), (str(ahead), "caller"),
                      phase + " audit line of the digit string")
        ok(request(p.target, "/api-gateway/orders", b"{}"), "inserted after it")
        after = int(s.records()[-1]["nonce"])
        assert_true(after > ahead, "inserted nonce is not above the caller's digit string"
                    " (%d ahead)" % (ahead - after))
        # leading zeros: counted by value
        padded = after + hour
        ok(request(p.target, "/api-gateway/orders", b'{"nonce":"000%d"}' % padded),
           "zero-padded digit string")
        ok(request(p.target, "/api-gateway/orders", b"{}"), "inserted after the padded one")
        after = int(s.records()[-1]["nonce"])
        assert_true(after > padded, "inserted nonce is not above the zero-padded string")
        # digits written as escapes: counted by the decoded value
        escaped = after + hour
        body = b'{"nonce":%s}' % esc(escaped)
        ok(request(p.target, "/api-gateway/orders", body), "escaped digit string")
        rec = s.records()[-1]
        assert_eq((rec["nonce"], rec["nonce_type"]), (str(escaped), "string"),
                  "escaped digits forwarded as a string")
        assert_true(rec["body"].encode() == body, "escaped digits forwarded byte for byte")
        ok(request(p.target, "/api-gateway/orders", b"{}"), "inserted after the escaped one")
        after = int(s.records()[-1]["nonce"])
        assert_true(after > escaped, "inserted nonce is not above the escaped digit string")
        # not digits: forwarded, not counted (and not limited)
        far = after + 10 * day
        for what, tok in (("uuid", b'"%s"' % str(uuid.uuid4()).encode()),
                          ("signed", b'"+%d"' % far), ("blank", b'" %d"' % far)):
            ok(request(p.target, "/api-gateway/orders", b'{"nonce":%s}' % tok), what)
            assert_eq(s.records()[-1]["nonce_type"], "string", what + " forwarded as a string")
        ok(request(p.target, "/api-gateway/orders", b"{}"), "inserted after other strings")
        now = int(s.records()[-1]["nonce"])
        assert_true(after < now < after + day, "a string that is not digits moved the counter")
    finally:
        assert_eq(st.stop(), 0, "exit code")


def _concurrent_load(p, n_threads, per):
    """n_threads keep-alive clients, half merchant, half partner; failures."""
    failures = []

    def worker(i):
        path = "/api-gateway/orders" if i % 2 == 0 else "/partner/api/get-users"
        c = connect(p.target, timeout=20)
        try:
            for _ in range(per):
                resp = request(p.target, path, b'{"w":%d}' % i, conn=c)
                if resp[0] != 200:
                    failures.append((resp[0], error_name(resp[2])))
        except Exception as e:  # noqa: BLE001
            failures.append(type(e).__name__)
        finally:
            c.close()
    ts = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert_true(not any(t.is_alive() for t in ts), "workers finished")
    return failures


def _nonce_arrival_report(recs):
    """Why the simulator refused: for each refused nonce, whether it was a
    repeat or how many higher nonces of its key had arrived before it."""
    out = []
    for i, r in enumerate(recs):
        if r["result"] == "ok":
            continue
        n = int(r.get("nonce") or 0)
        same = [x for x in recs[:i] if x["public_key"] == r["public_key"]]
        repeats = sum(1 for x in same if int(x.get("nonce") or 0) == n)
        overtook = sum(1 for x in same if int(x.get("nonce") or 0) > n)
        out.append("arrival %d: %s, sent %d time(s) before, overtaken by %d"
                   % (i, r["result"], repeats, overtook))
    return "; ".join(out)


@test
def nonces_increase_under_concurrency_and_across_restart():
    """Nonces are handed out strictly increasing per profile (audit order)
    and are unique at the API.  Over several parallel upstream connections
    the API may receive them slightly out of order, so this simulator
    tolerates a small reordering window; the next test shows that
    [upstream] max_connections = 1 gives strictly increasing arrival."""
    s = Sim(nonce_window=64)
    st = Setup(s)
    p = st.start()
    n_threads, per = 8, 25
    try:
        failures = _concurrent_load(p, n_threads, per)
        recs = s.records()
        rejected = [r["result"] for r in recs if r["result"] != "ok"]
        if rejected:
            print("# " + _nonce_arrival_report(recs), flush=True)
        assert_eq(rejected, [], "sim rejections")
        assert_eq(failures, [], "failed requests")
        assert_eq(len(recs), n_threads * per, "requests forwarded")
        audit = [json.loads(l) for l in st.audit_text().splitlines() if l.strip()]
        before = {}
        for key, prof in ((MERCHANT_PUBLIC, "merchant"), (PARTNER_PUBLIC, "partner")):
            ns = [int(r["nonce"]) for r in recs if r["public_key"] == key]
            assert_eq(len(ns), n_threads * per // 2, key + " count")
            assert_eq(len(set(ns)), len(ns), key + " nonces distinct")
            handed = [l["nonce"] for l in audit
                      if l.get("phase") == "request" and l.get("profile") == prof]
            assert_eq(sorted(handed), sorted(ns), prof + ": audited nonces = sent nonces")
            assert_true(all(a < b for a, b in zip(handed, handed[1:])),
                        prof + " nonces increase in the order they were handed out")
            before[key] = max(ns)
        # restart immediately on the same state dir
        assert_eq(p.stop(), 0, "exit code")
        p = st.start()
        ok(request(p.target, "/api-gateway/orders", b"{}"), "merchant after restart")
        ok(request(p.target, "/partner/api/get-users", b"{}"), "partner after restart")
        recs = s.records()[-2:]
        assert_true(int(recs[0]["nonce"]) > before[MERCHANT_PUBLIC],
                    "merchant nonce after restart is above every earlier one")
        assert_true(int(recs[1]["nonce"]) > before[PARTNER_PUBLIC],
                    "partner nonce after restart is above every earlier one")
        assert_eq([r["result"] for r in recs], ["ok", "ok"], "accepted after restart")
    finally:
        st.stop()
        s.stop()


# ------------------------------------------------------------------ 5 secrets

@test
def one_upstream_connection_gives_strict_arrival_order():
    """With [upstream] max_connections = 1 requests reach the API one after
    the other in nonce order: a strict simulator rejects nothing."""
    s = Sim()           # strictly increasing, as the API documents
    s.reset()           # stats count only the proxy's connections from here
    st = Setup(s)
    p = st.start(upstream={"max_connections": "1"})
    try:
        failures = _concurrent_load(p, 6, 15)
        recs = s.records()
        assert_eq([r["result"] for r in recs if r["result"] != "ok"], [], "sim rejections")
        assert_eq(failures, [], "failed requests")
        assert_eq(len(recs), 6 * 15, "requests forwarded")
        assert_eq(s.stats()["handshakes"], 1, "one upstream connection")
    finally:
        assert_eq(st.stop(), 0, "exit code")
        s.stop()


def memory_holding(pid, needles):
    """The needles (str) found in the writable memory of pid, read through
    /proc/PID/mem (root: the proxy is not dumpable)."""
    found = set()
    with open("/proc/%d/maps" % pid) as f:
        maps = f.read().splitlines()
    fd = os.open("/proc/%d/mem" % pid, os.O_RDONLY)
    try:
        for line in maps:
            span, perms = line.split()[:2]
            if not perms.startswith("rw"):
                continue
            lo, hi = (int(x, 16) for x in span.split("-"))
            at = lo
            while at < hi:      # in pieces; a needle across two pieces is still seen
                try:
                    data = os.pread(fd, min(hi - at, (1 << 24) + 256), at)
                except OSError:
                    break
                found.update(n for n in needles if n.encode() in data)
                at += 1 << 24
    finally:
        os.close(fd)
    return found


@test
def secrets_do_not_stay_in_memory():
    """Passwords and API-key secrets in answers, passwords in callers' bodies
    and the signatures sent: once the requests are done, none is left in the
    proxy's memory (freed buffers are zeroed, OpenSSL cleanses plaintext)."""
    if os.geteuid() != 0:
        raise Skip("reading /proc/PID/mem of a non-dumpable process needs root")
    with open(binary("ocp-proxy"), "rb") as f:
        exe = f.read()
    for mark, name in ((b"__asan_init", "an ASan"), (b"__tsan_init", "a TSan")):
        if mark in exe:
            raise Skip("%s build reserves terabytes of shadow memory; the plain "
                       "and valgrind stages run this scan" % name)
    s = sim()
    st = Setup(s)
    p = st.start()
    try:
        secrets = []
        c = connect(p.target)
        for _ in range(20):
            r = ok(request(p.target, "/partner/api/create-user", b'{"email":"u@example.test"}',
                           conn=c), "create-user")
            secrets.append(r["password"])
            r = ok(request(p.target, "/partner/api/create-api-keys",
                           ('{"userId":"%s"}' % uuid.uuid4()).encode(), conn=c), "create-api-keys")
            secrets.append(r["secret"])
            pw = "client-pw-" + uuid.uuid4().hex
            ok(request(p.target, "/partner/api/create-user",
                       ('{"email":"v@example.test","password":"%s"}' % pw).encode(), conn=c),
               "create-user with the caller's password")
            secrets.append(pw)
        c.close()
        for rec in s.records():
            key = MERCHANT_SECRET if rec["public_key"] == MERCHANT_PUBLIC else PARTNER_SECRET
            secrets.append(sign(key, rec["body"].encode("utf-8")))
        for x in secrets:
            add_secret(x)
        time.sleep(0.5)
        left = memory_holding(p.pid, secrets)
        assert_eq(len(left), 0, "secrets left in the proxy's memory (of %d)" % len(secrets))
    finally:
        assert_eq(st.stop(), 0, "exit code")


@test
def a_body_refused_for_lack_of_memory_is_wiped():
    """No memory for the request object: the caller gets 503
    PROXY_OVERLOADED and the body it sent (a password) is zeroed before it
    is freed, like every other body."""
    if os.geteuid() != 0:
        raise Skip("reading /proc/PID/mem of a non-dumpable process needs root")
    with open(binary("ocp-proxy"), "rb") as f:
        exe = f.read()
    for mark, name in ((b"__asan_init", "an ASan"), (b"__tsan_init", "a TSan")):
        if mark in exe:
            raise Skip("%s build: its allocator cannot be replaced for the fault" % name)
    s = sim()
    st = Setup(s, "oom")
    p = st.start(env=fail_alloc_env("calloc", "request_start"))
    try:
        pw = "client-pw-oom-" + uuid.uuid4().hex
        add_secret(pw)
        r = request(p.target, "/partner/api/create-user",
                    ('{"email":"v@example.test","password":"%s"}' % pw).encode())
        proxy_error(r, 503, ("PROXY_OVERLOADED",), "no memory for the request")
        time.sleep(0.5)
        assert_eq(len(memory_holding(p.pid, [pw])), 0, "the caller's password in memory")
        ok(request(p.target, "/api-gateway/orders", b"{}"), "the next request")
    finally:
        assert_eq(st.stop(), 0, "exit code")


@test
def secrets_reach_the_caller_but_not_the_logs():
    s = sim()
    st = Setup(s)
    p = st.start(log={"level": "debug"})
    try:
        c = connect(p.target)
        r = ok(request(p.target, "/partner/api/create-user",
                       b'{"email":"u@example.test"}', conn=c), "create-user")
        pw = r["password"]
        add_secret(pw)
        assert_true(isinstance(pw, str) and pw.startswith("sim-pw-") and len(pw) > 12,
                    "password relayed unchanged")
        r = ok(request(p.target, "/partner/api/create-api-keys",
                       ('{"userId":"%s"}' % uuid.uuid4()).encode(), conn=c),
               "create-api-keys")
        secrets = [r["secret"]]
        r = ok(request(p.target, "/partner/api/get-api-keys", b"{}", conn=c),
               "get-api-keys")
        secrets += [k["secret"] for k in r["keys"]]
        for x in secrets:
            assert_true(isinstance(x, str) and len(x) == 88 and x.endswith("=="),
                        "API key secret relayed unchanged (88-char base64)")
        r = ok(request(p.target, "/api-gateway/webhooks/get-verbose",
                       ('{"webhookId":"%s"}' % uuid.uuid4()).encode(), conn=c),
               "get-verbose")
        secrets += [r["signature"]]
        r = ok(request(p.target, "/api-gateway/test-signature", b'{"q":1}', conn=c),
               "test-signature")
        secrets += [r["signature"]]
        # a caller's own password in a request body is redacted as well
        client_pw = "client-pw-" + uuid.uuid4().hex
        ok(request(p.target, "/partner/api/create-user",
                   ('{"email":"v@example.test","password":"%s"}' % client_pw).encode(),
                   conn=c), "create-user with a password")
        c.close()
        secrets += [client_pw]
        for x in secrets:
            add_secret(x)
            assert_true(isinstance(x, str) and len(x) >= 16, "secret value relayed")
        # every x-api-signature the proxy sent
        sigs = []
        for rec in s.records():
            key = MERCHANT_SECRET if rec["public_key"] == MERCHANT_PUBLIC else PARTNER_SECRET
            sigs.append(sign(key, rec["body"].encode("utf-8")))
        for x in sigs:
            add_secret(x)
        wait_for(lambda: len([l for l in st.audit_lines()
                              if l.get("phase") == "outcome"]) >= 6, 5, "outcomes")
        assert_eq(st.stop(), 0, "exit code")
        audit, err = st.audit_text(), p.stderr_text()
        assert_contains(audit, "[REDACTED]", "audit redacts")
        for where, text in (("audit", audit), ("stderr", err)):
            no_secrets(text, where)
            assert_not_contains(text, pw, where + ": create-user password")
            for x in secrets:
                assert_not_contains(text, x, where + ": relayed secret")
            for x in sigs:
                assert_not_contains(text, x, where + ": x-api-signature")
            # no 64-hex signature-shaped value at all (chain values aside)
            for m in re.finditer(r"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])", text):
                assert_true(m.group(0) not in sigs, where + ": signature hex")
    finally:
        st.stop()


# ------------------------------------------------------------------ 6 errors

@test
def bad_requests_get_envelopes_and_are_not_forwarded():
    s = sim()
    st = Setup(s)
    p = st.start(listen={"max_body_bytes": "64"})
    try:
        n0 = rec_count(s)
        for what, body in (("invalid JSON", b"{"), ("trailing garbage", b'{"a":1}x'),
                           ("array", b"[]"), ("array of object", b'[{"a":1}]'),
                           ("string", b'"x"'), ("number", b"42"), ("null", b"null"),
                           ("two objects", b'{"a":1}{"b":2}'),
                           ("bad utf-8", b'{"a":"\xff"}'), ("trailing comma", b'{"a":1,}')):
            proxy_error(request(p.target, "/api-gateway/orders", body), 400,
                        "PROXY_INVALID_JSON", what)
        proxy_error(request(p.target, "/elsewhere/orders", b"{}"), 404,
                    "PROXY_NO_ROUTE", "path outside every route")
        proxy_error(request(p.target, "/", b"{}"), 404, "PROXY_NO_ROUTE", "root")
        proxy_error(request(p.target, "/api-gateway", b"{}"), 404, "PROXY_NO_ROUTE",
                    "prefix without its slash")
        for m in ("GET", "PUT", "DELETE"):
            resp = request(p.target, "/api-gateway/orders", b"", method=m)
            proxy_error(resp, 405, "PROXY_METHOD_NOT_ALLOWED", m)
            assert_eq(resp[1].get("allow"), "POST", m + " Allow header")
        proxy_error(request(p.target, "/api-gateway/orders", b'{"a":"%s"}' % (b"x" * 80)),
                    413, "PROXY_BODY_TOO_LARGE", "body over max_body_bytes")
        chunked = (b'{"a":"%s"}' % (b"y" * 80))
        data = raw(p.target, b"POST /api-gateway/orders HTTP/1.1\r\nHost: localhost\r\n"
                   b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"%x\r\n%s\r\n0\r\n\r\n" % (len(chunked), chunked))
        proxy_error(parse_http(data), 413, "PROXY_BODY_TOO_LARGE", "chunked body over the limit")
        # exactly at the limit is fine
        at = b'{"a":"%s"}' % (b"z" * (64 - 8))
        assert_eq(len(at), 64, "test body size")
        ok(request(p.target, "/api-gateway/orders", at), "body of exactly max_body_bytes")
        assert_eq(rec_count(s), n0 + 1, "only the good request reached the sim")
        # the refusals are in the audit trail with their error names
        names = [l.get("error") for l in st.audit_lines() if l.get("phase") == "outcome"]
        for n in ("PROXY_INVALID_JSON", "PROXY_NO_ROUTE", "PROXY_METHOD_NOT_ALLOWED",
                  "PROXY_BODY_TOO_LARGE"):
            assert_true(n in names, "audit outcome with error " + n)
    finally:
        assert_eq(st.stop(), 0, "exit code")


@test
def refusals_after_routing_name_the_profile():
    """405 and 413 answers for a path that a profile's routes match record
    that profile in the audit; paths no route matches record null."""
    s = sim()
    st = Setup(s)
    p = st.start(listen={"max_body_bytes": "64"})
    try:
        over = b'{"a":"%s"}' % (b"x" * 80)
        chunked = (b"POST /api-gateway/orders HTTP/1.1\r\nHost: localhost\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
                   % (len(over), over))
        for what, resp, status, profile in (
                ("GET merchant", request(p.target, "/api-gateway/orders", method="GET"),
                 405, "merchant"),
                ("PUT partner", request(p.target, "/partner/api/get-users", b"{}",
                                        method="PUT"), 405, "partner"),
                ("GET no route", request(p.target, "/nowhere", method="GET"), 405, None),
                ("GET bad target", request(p.target, "/api-gateway/a?b=1", method="GET"),
                 405, None),
                ("too large", request(p.target, "/api-gateway/orders", over), 413,
                 "merchant"),
                ("too large chunked", parse_http(raw(p.target, chunked)), 413, "merchant"),
                ("no route", request(p.target, "/nowhere", b"{}"), 404, None)):
            assert_status(resp, status, what)
            rec = st.audit_for(resp[1]["x-request-id"])
            assert_eq((rec["status"], rec["profile"]), (status, profile), what + ": audit")
    finally:
        assert_eq(st.stop(), 0, "exit code")


@test
def upstream_answer_without_content_type_gets_none():
    """SPEC 6: status, Content-Type and body are relayed unchanged, so an
    answer without Content-Type reaches the caller without one; the proxy's
    own error answers are application/json."""
    s = sim()
    st = Setup(s)
    p = st.start()
    try:
        s.fault("no_ctype", count=1)
        st_, h, body = parse_http(raw(p.target, b"POST /api-gateway/orders HTTP/1.1\r\n"
                                      b"Host: localhost\r\nContent-Length: 2\r\n"
                                      b"Connection: close\r\n\r\n{}"))
        assert_eq(st_, 200, "relayed status")
        assert_true("content-type" not in h, "Content-Type %r added" % h.get("content-type"))
        assert_eq(envelope(body).get("success"), True, "relayed body")
        assert_true(h.get("x-request-id"), "X-Request-Id")
        ok(request(p.target, "/api-gateway/orders", b"{}"), "next answer has its type")
        proxy_error(request(p.target, "/nowhere", b"{}"), 404, "PROXY_NO_ROUTE",
                    "proxy-made answer")
    finally:
        assert_eq(st.stop(), 0, "exit code")


@test
def upstream_204_and_304_relayed_without_content_length():
    """RFC 9110 8.6: a 204 or 304 has no body and must not carry
    Content-Length; the proxy relays the upstream's status with neither, keeps
    X-Request-Id, and the keep-alive connection answers the next request."""
    s = sim()
    st = Setup(s)
    p = st.start()
    try:
        post = b"POST /api-gateway/orders HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n"
        for mode, status in (("status204", 204), ("status304", 304)):
            s.fault(mode, count=1)
            data = raw(p.target, post + b"\r\n{}" + post + b"Connection: close\r\n\r\n{}")
            hd, sep, rest = data.partition(b"\r\n\r\n")
            assert_true(sep, mode + ": no complete answer head")
            lines = hd.decode("latin-1").split("\r\n")
            h = {l.partition(":")[0].strip().lower(): l.partition(":")[2].strip()
                 for l in lines[1:]}
            assert_eq(int(lines[0].split(" ")[1]), status, mode + ": relayed status")
            assert_true("content-length" not in h,
                        "%s: Content-Length: %s sent" % (mode, h.get("content-length")))
            assert_true("transfer-encoding" not in h, mode + ": Transfer-Encoding sent")
            assert_true(h.get("x-request-id"), mode + ": X-Request-Id")
            assert_true(rest.startswith(b"HTTP/1.1 200 "),
                        mode + ": the next answer does not follow the head")
            assert_eq(envelope(parse_http(rest)[2]).get("success"), True,
                      mode + ": the request behind it")
            rec = st.audit_for(h["x-request-id"])
            assert_eq((rec["status"], rec["upstream_status"], rec["bytes_out"], rec["error"]),
                      (status, status, 0, None), mode + ": audited")
    finally:
        assert_eq(st.stop(), 0, "exit code")


@test
def upstream_self_connect_is_a_connect_failure():
    # Nothing listens on a loopback port of the ephemeral range: the kernel may
    # pick that very port as the source, and connect() "succeeds" against
    # itself.  Made certain here: a private network namespace whose ephemeral
    # range is that one port.  The proxy must see a refused connection, not
    # run a TLS handshake with itself.
    if os.geteuid() != 0:
        raise Skip("needs root for a private network namespace")
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            raise Skip("%s not installed" % tool)
    port = 40000
    prefix = ["unshare", "-n", "sh", "-c",
              'ip link set lo up && echo "%d %d" >/proc/sys/net/ipv4/ip_local_port_range'
              ' && exec "$@"' % (port, port), "sh"]
    r = subprocess.run(prefix + ["true"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise Skip("no private network namespace here: " + r.stdout.decode(errors="replace")[:120])
    s = sim()
    st = Setup(s, "self")
    sock = os.path.join(st.dir, "ocp.sock")
    st.proxy = p = Proxy(st.ini(listen={"address": "unix:" + sock},
                                upstream={"url": "https://127.0.0.1:%d" % port}),
                         argv_prefix=prefix)
    try:
        name, rid = proxy_error(request(p.target, "/api-gateway/orders", b"{}"), 502,
                                "PROXY_UPSTREAM_CONNECT_FAILED", "connect to itself")
        assert_contains(p.stderr_text(), "connected to itself", "the log says why")
        assert_not_contains(p.stderr_text(), "TLS", "no TLS handshake with itself")
        assert_eq(st.audit_for(rid)["error"], "PROXY_UPSTREAM_CONNECT_FAILED", "audit")
    finally:
        assert_eq(st.stop(), 0, "exit code")


@test
def upstream_failures_502_and_504():
    s = sim()
    # connection refused: nothing listens on the port
    st = Setup(s, "refused")
    p = st.start(upstream={"url": "https://127.0.0.1:%d" % free_port()})
    try:
        name, rid = proxy_error(request(p.target, "/api-gateway/orders", b"{}"), 502,
                                "PROXY_UPSTREAM_CONNECT_FAILED", "upstream refused")
        rec = st.audit_for(rid)
        assert_eq((rec["status"], rec["upstream_status"], rec["error"]),
                  (502, None, "PROXY_UPSTREAM_CONNECT_FAILED"), "audit of refused")
    finally:
        assert_eq(st.stop(), 0, "exit code (refused)")
    # TLS verification failure: the sim's certificate is not from other_ca
    st = Setup(s, "tls")
    p = st.start(upstream={"ca_file": certs()["other_ca"]})
    try:
        proxy_error(request(p.target, "/api-gateway/orders", b"{}"), 502,
                    "PROXY_UPSTREAM_TLS_FAILED", "TLS verification failure")
        assert_eq(rec_count(s), 0, "nothing reached the sim over unverified TLS")
        assert_eq(s.stats()["requests"], 0, "no API request at the sim")
    finally:
        assert_eq(st.stop(), 0, "exit code (tls)")
    # timeout: the sim answers after 1.5 s, the proxy waits 400 ms
    s.reset()
    st = Setup(s, "timeout")
    p = st.start(upstream={"timeout_ms": "400"})
    try:
        s.fault("delay", ms=1500, count=1)
        t0 = time.monotonic()
        name, rid = proxy_error(request(p.target, "/api-gateway/orders", b"{}"), 504,
                                "PROXY_UPSTREAM_TIMEOUT", "upstream timeout")
        assert_true(time.monotonic() - t0 < 1.4, "504 before the sim answered")
        assert_eq(rec_count(s), 1, "forwarded exactly once")
        rec = st.audit_for(rid)
        assert_eq((rec["status"], rec["error"]), (504, "PROXY_UPSTREAM_TIMEOUT"),
                  "audit of timeout")
        # the proxy keeps working afterwards
        ok(request(p.target, "/api-gateway/orders", b"{}"), "after the timeout")
    finally:
        assert_eq(st.stop(), 0, "exit code (timeout)")


@test
def upstream_closing_is_502_and_never_resent():
    """SPEC 8: a request that reached the upstream is not sent twice."""
    s = sim()
    st = Setup(s)
    p = st.start()
    try:
        c = connect(p.target)
        ok(request(p.target, "/api-gateway/orders", b"{}", conn=c), "warm-up")
        for mode in ("close", "close_mid"):
            s.fault(mode, count=1)
            n0 = rec_count(s)
            proxy_error(request(p.target, "/api-gateway/orders", b"{}", conn=c), 502,
                        "PROXY_UPSTREAM_BAD_RESPONSE", "upstream " + mode)
            assert_eq(rec_count(s), n0 + 1, mode + ": received once, not retried")
        s.fault("status500", count=1)
        resp = request(p.target, "/api-gateway/orders", b"{}", conn=c)
        assert_status(resp, 500, "upstream 500 relayed")
        assert_eq(error_name(resp[2]), "INTERNAL_ERROR", "upstream error relayed as is")
        ok(request(p.target, "/api-gateway/orders", b"{}", conn=c), "after faults")
        c.close()
    finally:
        assert_eq(st.stop(), 0, "exit code")


@test
def stale_keepalive_upstream_connection_is_retried_safely():
    """SPEC 8: a kept-alive connection the upstream closed while idle: the
    request certainly did not reach it, so it goes out on a new one."""
    s2 = Sim(timeout=1)
    try:
        st = Setup(s2)
        p = st.start()
        try:
            ok(request(p.target, "/api-gateway/orders", b"{}"), "first")
            time.sleep(1.6)           # the sim closes the idle connection after 1 s
            ok(request(p.target, "/api-gateway/orders", b"{}"), "after idle close")
            recs = s2.records()
            assert_eq(len(recs), 2, "each request received once")
            assert_eq([r["result"] for r in recs], ["ok", "ok"], "accepted")
        finally:
            assert_eq(st.stop(), 0, "exit code")
    finally:
        s2.stop()


@test
def multi_megabyte_body_is_signed_and_forwarded_whole():
    """A body far larger than the socket buffers: TLS takes it in pieces
    (the upstream connection waits for the socket to drain) and the API
    still verifies the signature over exactly what arrived."""
    s = sim()
    st = Setup(s)
    p = st.start(listen={"max_body_bytes": "8388608"})
    try:
        body = b'{"pad":"' + b"x" * 6000000 + b'","amount":"1.00"}'
        for i in range(2):
            n0 = rec_count(s)
            if i == 0:
                got = request(p.target, "/api-gateway/orders", body, timeout=30)
            else:
                # on the kept-alive connection, with the API not reading for
                # a while: the socket fills up and the proxy waits to write
                res = []
                t = threading.Thread(target=lambda: res.append(
                    request(p.target, "/api-gateway/orders", body, timeout=30)))
                os.kill(s.pid, signal.SIGSTOP)
                try:
                    t.start()
                    time.sleep(0.8)
                finally:
                    os.kill(s.pid, signal.SIGCONT)
                t.join(30)
                got = res[0] if res else (0, {}, b"no answer")
            ok(got, "6 MB body %d" % i)
            rec = s.records()[n0]
            assert_eq(rec["result"], "ok", "signature verified over the raw body")
            member = b'"nonce":%d,' % int(rec["nonce"])
            sent = body[:1] + member + body[1:]
            assert_eq((rec["body_len"], rec["body_sha256"]),
                      (len(sent), hashlib.sha256(sent).hexdigest()),
                      "forwarded bytes = the body with the nonce spliced in")
    finally:
        assert_eq(st.stop(), 0, "exit code")


@test
def nonce_state_unwritable_is_503():
    s = sim()
    st = Setup(s)
    p = st.start()
    try:
        # nonce reservation writes <state>/nonce.<profile>.tmp then renames it;
        # a directory in its way makes that fail (even for root)
        os.mkdir(os.path.join(st.state, "nonce.merchant.tmp"))
        name, rid = proxy_error(request(p.target, "/api-gateway/orders", b"{}"), 503,
                                "PROXY_NONCE_UNAVAILABLE", "nonce reservation fails")
        assert_eq(rec_count(s), 0, "nothing forwarded without a durable nonce")
        rec = st.audit_for(rid)
        assert_eq((rec["status"], rec["error"]), (503, "PROXY_NONCE_UNAVAILABLE"),
                  "audit of 503")
        # a caller-chosen nonce needs no reservation; the other profile is fine
        ok(request(p.target, "/api-gateway/orders",
                   ('{"nonce":"%s"}' % uuid.uuid4()).encode()), "client nonce")
        ok(request(p.target, "/partner/api/get-users", b"{}"), "partner unaffected")
        os.rmdir(os.path.join(st.state, "nonce.merchant.tmp"))
        ok(request(p.target, "/api-gateway/orders", b"{}"), "recovers")
    finally:
        assert_eq(st.stop(), 0, "exit code")


@test
def key_not_loaded_refuses_start_and_reload():
    """A file key that cannot be read refuses the start; on SIGHUP a key
    that cannot be re-read keeps the old key for that profile (issue 7:
    "keeping the old key where the new read fails") and says so.
    503 PROXY_KEY_UNAVAILABLE for keys that never loaded is covered by the
    Vault tests (a Vault outage at start)."""
    s = sim()
    st = Setup(s)
    os.chmod(st.partner_secret, 0o644)
    rc, out, err = run_proxy(["-c", write_file(os.path.join(st.dir, "bad.ini"), st.ini())])
    assert_eq(rc, 1, "start refused with an unreadable-by-policy key")
    assert_contains(err, "profile.partner", "names the profile")
    os.chmod(st.partner_secret, 0o600)
    p = st.start()
    try:
        os.unlink(st.partner_secret)
        p.signal(signal.SIGHUP)
        wait_for(lambda: "keeping key" in p.stderr_text(), 5, "old key kept")
        assert_contains(p.stderr_text(), st.partner_secret, "names the missing file")
        ok(request(p.target, "/partner/api/get-users", b"{}"), "old partner key serves")
        assert_eq(s.records()[-1]["result"], "ok", "signed with the old key")
    finally:
        assert_eq(st.stop(), 0, "exit code")


@test
def logs_name_the_bound_address_and_a_secret_only_rotation():
    """The open-access warning names the address actually bound (port 0 in
    tests), also after a reload; a reload that changes only a secret says
    so instead of "key changed X -> X" (fingerprints are of public keys)."""
    s = sim()
    st = Setup(s)
    p = st.start()
    try:
        want = "any local process that can reach 127.0.0.1:%d may call" % p.port
        assert_contains(p.stderr_text(), want, "warning at start names the bound port")
        before = p.stderr_text()
        write_file(st.partner_secret, "fake-rotated-partner-secret-0000")
        p.signal(signal.SIGHUP)
        wait_for(lambda: "reloaded" in p.stderr_text()[len(before):], 5, "reloaded")
        err = p.stderr_text()[len(before):]
        fpr = hashlib.sha256(PARTNER_PUBLIC.encode()).hexdigest()[:16]
        assert_contains(err, "profile partner: secret changed, public key %s unchanged (reload)"
                        % fpr, "a secret-only rotation is named as such")
        assert_contains(err, want, "warning after the reload names the bound port")
        no_secrets(p.stderr_text(), "stderr")
    finally:
        assert_eq(st.stop(), 0, "exit code")


@test
def sighup_with_new_key_source_unreadable_refuses_the_whole_reload():
    """SPEC: a bad new config is refused and the old one stays.  A config
    that names a new secret source which cannot be read is bad (-t refuses
    it): no part of it applies, neither its routes nor the keys of other
    profiles read before the failing one.  (A re-read of the running key's
    own source that fails keeps the old key: the test above.)"""
    s = sim()
    st = Setup(s)
    p = st.start()
    try:
        ok(request(p.target, "/partner/api/get-users", b"{}"), "before reload")
        assert_eq(s.records()[-1]["public_key"], PARTNER_PUBLIC, "partner key before")
        merchant_copy = write_file(os.path.join(st.dir, "merchant2.secret"),
                                   MERCHANT_SECRET + "\n")
        partner_open = write_file(os.path.join(st.dir, "partner2.secret"), PARTNER_SECRET)
        os.chmod(partner_open, 0o644)
        before = p.stderr_text()
        write_file(p.conf, st.ini(profile_merchant={"secret": "file:" + merchant_copy,
                                                    "routes": "/api-gateway/, "
                                                    "/partner/api/get-users"},
                                  profile_partner={"secret": "file:" + partner_open}))
        p.signal(signal.SIGHUP)
        wait_for(lambda: "reload refused" in p.stderr_text(), 5, "reload refused")
        err = p.stderr_text()[len(before):]
        assert_contains(err, "profile.partner", "names the profile whose key failed")
        assert_true("(reload)" not in err, "no key was swapped by the refused reload: %r" % err)
        ok(request(p.target, "/partner/api/get-users", b"{}"), "after the refused reload")
        assert_eq(s.records()[-1]["public_key"], PARTNER_PUBLIC,
                  "the refused config's route did not apply")
        ok(request(p.target, "/api-gateway/orders", b"{}"), "merchant after")
        assert_eq(s.records()[-1]["result"], "ok", "merchant still signs")
        # the same config with a readable file is accepted, keys and routes together
        os.chmod(partner_open, 0o600)
        p.signal(signal.SIGHUP)
        wait_for(lambda: "reloaded" in p.stderr_text()[len(before):], 5, "reloaded")
        err = p.stderr_text()[len(before):]
        assert_contains(err, "profile merchant: key", "merchant key re-read on the reload")
        ok(request(p.target, "/partner/api/get-users", b"{}"), "after the good reload")
        assert_eq(s.records()[-1]["public_key"], MERCHANT_PUBLIC, "the new route applies")
        no_secrets(p.stderr_text(), "stderr")
    finally:
        assert_eq(st.stop(), 0, "exit code")


@test
def signature_never_in_the_audit_even_with_a_short_redact_list():
    """SPEC: neither the secret nor the signature ever appears in the audit
    file.  test-signature echoes the signature the proxy sent; with a redact
    list that leaves out "signature" the proxy still masks this request's
    signature in the audit record (the caller still gets it: answers are
    relayed unchanged)."""
    s = sim()
    st = Setup(s)
    p = st.start(audit={"redact": "password, secret"})
    try:
        status, hdrs, raw = request(p.target, "/api-gateway/test-signature",
                                    b'{"q":"echo me"}')
        r = ok((status, hdrs, raw), "test-signature")
        got = s.records()[-1]["body"].encode("utf-8")
        sig = sign(MERCHANT_SECRET, got)
        # (no assert_eq on signatures: a failure must not print one)
        assert_true(r["signature"] == sig, "the caller gets the answer unchanged")
        rec = st.audit_for(hdrs["x-request-id"])
        assert_true(rec["response"]["response"]["signature"] == "*" * 64,
                    "the echoed signature is masked in the audit record")
        assert_eq(rec["response"]["response"]["receivedBody"], got.decode(),
                  "the rest of the answer is logged")
        assert_not_contains(st.audit_text(), sig, "audit file")
        assert_not_contains(p.stderr_text(), sig, "stderr")
        assert_contains(p.stderr_text(), "holds this request's signature", "warned")
    finally:
        assert_eq(st.stop(), 0, "exit code")


# ------------------------------------------------------------------ 7 headers

@test
def client_auth_and_hop_headers_are_not_forwarded():
    s = sim()
    st = Setup(s)
    p = st.start()
    try:
        body = b'{"h":1}'
        evil_sig = sign("attacker", body)
        hdrs = (b"POST /api-gateway/test-signature HTTP/1.1\r\n"
                b"Host: 127.0.0.1:%d\r\n"
                b"Content-Type: text/plain\r\n"
                b"x-api-public-key: pub-attacker\r\n"
                b"X-Api-Signature: %s\r\n"
                b"X-Api-Extra: 1\r\n"
                b"Authorization: Bearer attacker-token\r\n"
                b"Cookie: session=attacker-cookie\r\n"
                b"Proxy-Authorization: Basic YXR0YWNrZXI=\r\n"
                b"Proxy-Connection: keep-alive\r\n"
                b"X-Forwarded-For: 203.0.113.9\r\n"
                b"Forwarded: for=203.0.113.9\r\n"
                b"X-Custom-Hop: secret-hop\r\n"
                b"Keep-Alive: timeout=5\r\n"
                b"TE: trailers\r\n"
                b"Upgrade: h2c\r\n"
                b"Connection: close, X-Custom-Hop, Upgrade\r\n"
                b"X-Harmless: yes\r\n"
                b"Content-Length: %d\r\n\r\n%s") % (p.port, evil_sig.encode(), len(body), body)
        resp = parse_http(raw(p.target, hdrs))
        r = ok(resp, "request with hostile headers")
        assert_eq(r["checkSignatureResult"], True, "the proxy's own signature")
        rec = s.records()[-1]
        h = rec["headers"]
        assert_eq(rec["public_key"], MERCHANT_PUBLIC, "x-api-public-key replaced")
        assert_eq(h.get("x-api-public-key"), MERCHANT_PUBLIC, "one public key header")
        assert_eq(h.get("content-type"), "application/json", "content-type")
        assert_eq(h.get("host"), s.hostport, "Host is the upstream")
        for name in ("x-api-extra", "authorization", "cookie", "proxy-authorization",
                     "proxy-connection", "x-forwarded-for", "forwarded", "x-custom-hop",
                     "keep-alive", "te", "upgrade"):
            assert_true(name not in h, name + " was forwarded")
        text = json.dumps(rec)
        for v in ("attacker-token", "attacker-cookie", "pub-attacker", "203.0.113.9",
                  "secret-hop", "YXR0YWNrZXI="):
            assert_not_contains(text, v, "forwarded value " + v)
    finally:
        assert_eq(st.stop(), 0, "exit code")


# ------------------------------------------------------------------ 8 not a proxy

@test
def not_an_open_proxy():
    s = sim()
    st = Setup(s)
    p = st.start()
    try:
        body = b"{}"
        cases = [
            ("absolute-form", b"POST http://evil.example/api-gateway/orders HTTP/1.1\r\n"
                              b"Host: evil.example\r\n", (400, 405)),
            ("absolute-form to itself", b"POST http://127.0.0.1:%d/api-gateway/orders "
                                        b"HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                                        % (p.port, p.port), (400,)),
            ("CONNECT", b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n",
             (400, 405)),
            ("CONNECT to the sim", b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n"
                                   % (s.hostport.encode(), s.hostport.encode()), (400, 405)),
            ("foreign Host", b"POST /api-gateway/orders HTTP/1.1\r\nHost: evil.example\r\n",
             (400, 403, 421)),
            ("foreign Host with port", b"POST /api-gateway/orders HTTP/1.1\r\n"
                                       b"Host: ocp.onchainpay.io:443\r\n", (400, 403, 421)),
            ("other loopback host", b"POST /api-gateway/orders HTTP/1.1\r\n"
                                    b"Host: 127.0.0.2:%d\r\n" % p.port, (400, 403, 421)),
            ("upstream name as Host", b"POST /api-gateway/orders HTTP/1.1\r\n"
                                      b"Host: ocp.onchainpay.io\r\n", (400, 403, 421)),
            ("no Host", b"POST /api-gateway/orders HTTP/1.1\r\n", (400,)),
            ("asterisk", b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\n", (400, 405)),
        ]
        for what, head, statuses in cases:
            data = raw(p.target, head + b"Content-Type: application/json\r\n"
                       b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            resp = parse_http(data)
            assert_true(resp[0] in statuses, "%s: HTTP %d not in %r (error %r)"
                        % (what, resp[0], statuses, error_name(resp[2])))
            proxy_error(resp, resp[0], ("PROXY_BAD_TARGET", "PROXY_BAD_HOST",
                                        "PROXY_METHOD_NOT_ALLOWED", "PROXY_BAD_REQUEST"),
                        what)
        assert_eq(rec_count(s), 0, "nothing forwarded")
        # the names of this proxy are accepted
        for host in (b"localhost", b"127.0.0.1:%d" % p.port, b"LOCALHOST:%d" % p.port):
            data = raw(p.target, b"POST /api-gateway/orders HTTP/1.1\r\nHost: %s\r\n"
                       b"Connection: close\r\nContent-Length: 2\r\n\r\n{}" % host)
            ok(parse_http(data), "Host " + host.decode())
        assert_eq(rec_count(s), 3, "the three good requests were forwarded")
        # HTTP/1.0 does not require Host (RFC 9112 3.2); a foreign one is still refused
        data = raw(p.target, b"POST /api-gateway/orders HTTP/1.0\r\n"
                   b"Content-Length: 2\r\n\r\n{}")
        ok(parse_http(data), "HTTP/1.0 without Host")
        data = raw(p.target, b"POST /api-gateway/orders HTTP/1.0\r\nHost: evil.example\r\n"
                   b"Content-Length: 2\r\n\r\n{}")
        proxy_error(parse_http(data), 400, ("PROXY_BAD_HOST",), "HTTP/1.0, foreign Host")
        assert_eq(rec_count(s), 4, "the HTTP/1.0 request without Host was forwarded")
    finally:
        assert_eq(st.stop(), 0, "exit code")


# ------------------------------------------------------------------ 9 SIGHUP

@test
def sighup_reload_good_and_bad():
    s = sim()
    st = Setup(s)
    p = st.start()
    try:
        ok(request(p.target, "/partner/api/get-users", b"{}"), "before reload")
        assert_eq(s.records()[-1]["public_key"], PARTNER_PUBLIC, "partner key before")
        # a request in flight across the reload
        s.fault("delay", ms=1200, count=1)
        n0 = rec_count(s)
        t, box = thread(request, p.target, "/api-gateway/orders", b'{"inflight":1}', "POST",
                        None, 15)
        wait_for(lambda: rec_count(s) > n0, 5, "in-flight request at the sim")
        write_file(p.conf, st.ini(log={"level": "debug"},
                                  profile_merchant={"routes": "/api-gateway/, "
                                                    "/partner/api/get-users"}))
        p.signal(signal.SIGHUP)
        wait_for(lambda: "reloaded" in p.stderr_text(), 5, "reloaded")
        assert_true(t.is_alive(), "request still in flight after the reload")
        ok(joined(t, box, "in-flight request"), "in-flight request across reload")
        ok(request(p.target, "/partner/api/get-users", b"{}"), "after reload")
        assert_eq(s.records()[-1]["public_key"], MERCHANT_PUBLIC,
                  "new longest-prefix route took effect")
        ok(request(p.target, "/partner/api/get-user", b"{}"), "other partner path")
        assert_eq(s.records()[-1]["public_key"], PARTNER_PUBLIC, "partner route kept")
        assert_true(p.running(), "still running")
        # a bad config is refused; the running one stays
        good_err = p.stderr_text()
        write_file(p.conf, st.ini(extra="[listen]\nbogus_key = 1\n"))
        p.signal(signal.SIGHUP)
        wait_for(lambda: "reload refused" in p.stderr_text(), 5, "reload refused")
        err = p.stderr_text()[len(good_err):]
        assert_contains(err, "bogus_key", "stderr names the unknown key")
        assert_contains(err, p.conf, "stderr names the file")
        assert_true(re.search(re.escape(p.conf) + r":\d+", err), "stderr names the line")
        assert_true(p.running(), "still running after a bad reload")
        # an empty unknown section refuses the reload too, with its line
        refused = p.stderr_text().count("reload refused")
        text = st.ini(extra="[bogus]\n")
        write_file(p.conf, text)
        p.signal(signal.SIGHUP)
        wait_for(lambda: p.stderr_text().count("reload refused") > refused, 5,
                 "reload with [bogus] refused")
        assert_contains(p.stderr_text(), "%s:%d: [bogus]: unknown section" %
                        (p.conf, len(text.splitlines())), "[bogus] named with its line")
        assert_true(p.running(), "still running after the [bogus] reload")
        ok(request(p.target, "/partner/api/get-users", b"{}"), "old config serves")
        assert_eq(s.records()[-1]["public_key"], MERCHANT_PUBLIC, "previous good config kept")
        no_secrets(p.stderr_text(), "stderr")
    finally:
        assert_eq(st.stop(), 0, "exit code")


# ------------------------------------------------------------------ 10 SIGTERM

@test
def sigterm_drains_in_flight_requests():
    s = sim()
    st = Setup(s)
    p = st.start()
    idle = connect(p.target)
    ok(request(p.target, "/api-gateway/orders", b"{}", conn=idle), "idle keep-alive")
    s.fault("delay", ms=1000, count=1)
    n0 = rec_count(s)
    t, box = thread(request, p.target, "/api-gateway/orders", b'{"drain":1}', "POST",
                    None, 15)
    wait_for(lambda: rec_count(s) > n0, 5, "in-flight request at the sim")
    t0 = time.monotonic()
    p.signal(signal.SIGTERM)
    wait_for(lambda: "shutting down" in p.stderr_text(), 5, "shutting down")
    try:
        refused = False
        try:
            request(p.target, "/api-gateway/orders", b"{}", timeout=2)
        except (ConnectionRefusedError, ConnectionResetError,
                http.client.RemoteDisconnected, BrokenPipeError):
            refused = True
        assert_true(refused, "a new connection after SIGTERM is refused")
        resp = joined(t, box, "in-flight request")
        ok(resp, "in-flight request completes")
        rid = resp[1]["x-request-id"]
        rc = p.wait_exit(10)
        assert_eq(rc, 0, "exit code after draining")
        assert_true(time.monotonic() - t0 < 5, "stopped soon after the request")
        try:
            idle.request("POST", "/api-gateway/orders", body=b"{}")
            idle.getresponse().read()
            raise AssertionError("the idle keep-alive connection was not closed")
        except (ConnectionError, http.client.HTTPException, OSError):
            pass
        rec = st.audit_for(rid, timeout=1)
        assert_eq((rec["status"], rec["upstream_status"], rec["error"]), (200, 200, None),
                  "outcome line of the drained request")
        last = st.audit_lines()[-1]
        assert_eq((last.get("phase"), last.get("reason")), ("close", "shutdown"),
                  "closing audit record")
    finally:
        idle.close()
        st.stop()


# ------------------------------------------------------------------ 11 keep-alive

@test
def upstream_connections_are_kept_alive():
    s = sim()
    st = Setup(s)
    p = st.start()
    n = 20
    try:
        for i in range(n):      # a new client connection each time
            ok(request(p.target, "/api-gateway/orders", b"{}"), "request %d" % i)
        stats = s.stats()
        assert_eq(stats["requests"], n, "requests at the sim")
        assert_eq(stats["connections"], 1, "upstream TCP connections")
        assert_eq(stats["handshakes"], 1, "upstream TLS handshakes")
    finally:
        assert_eq(st.stop(), 0, "exit code")


# ------------------------------------------------------------------ 12 -t -V -h

@test
def check_mode_version_and_usage():
    s = sim()
    st = Setup(s)
    good = write_file(os.path.join(st.dir, "good.ini"), st.ini())
    rc, out, err = run_proxy(["-t", "-c", good])
    assert_eq(rc, 0, "-t on a good config (stderr: %s)" % err[-300:])
    assert_contains(out + err, "OK", "-t says OK")
    no_secrets(out + err, "-t output")

    def bad(name, text):
        path = write_file(os.path.join(st.dir, name), text)
        rc, out, err = run_proxy(["-t", "-c", path])
        assert_eq(rc, 1, name + " exit code")
        no_secrets(out + err, name)
        lines = [l for l in err.splitlines() if path in l]
        return path, lines, out + err

    # several parse-level problems at once: one line each, with file:line
    literal = "literal-secret-" + uuid.uuid4().hex
    add_secret(literal)
    text = st.ini(extra="[listen]\nbogus = 1\n[nosuch]\nx = 1\n",
                  profile_merchant={"secret": literal})
    path, lines, allout = bad("many.ini", text)
    assert_not_contains(allout, literal, "literal secret printed")
    assert_true(any("bogus" in l for l in lines), "unknown key reported")
    assert_true(any("nosuch" in l for l in lines), "unknown section reported")
    assert_true(any("profile.merchant" in l and "secret" in l for l in lines),
                "literal secret reported")
    for l in lines:
        if "bogus" in l or "nosuch" in l or "profile.merchant" in l:
            assert_true(re.search(re.escape(path) + r":\d+", l), "line number in %r" % l)
    assert_true(len(lines) >= 3, "one line per problem")
    # world-readable secret file (its content never printed)
    leaked = "world-readable-secret-" + uuid.uuid4().hex
    add_secret(leaked)
    wr = write_file(os.path.join(st.dir, "wr.secret"), leaked, 0o644)
    path, lines, allout = bad("wr.ini", st.ini(profile_merchant={"secret": "file:" + wr}))
    assert_not_contains(allout, leaked, "world-readable secret printed")
    assert_true(any(wr in l and "profile.merchant" in l for l in lines),
                "0644 secret reported with file and profile")
    # missing secret file, together with a second problem: two lines
    missing = os.path.join(st.dir, "missing.secret")
    path, lines, allout = bad("missing.ini", st.ini(
        profile_merchant={"secret": "file:" + missing},
        profile_partner={"secret": "file:" + wr}))
    assert_true(any(missing in l and "profile.merchant" in l for l in lines),
                "missing secret reported")
    assert_true(any(wr in l and "profile.partner" in l for l in lines),
                "second problem reported too")
    assert_not_contains(allout, leaked, "world-readable secret printed")
    # vault: source (no Vault reachable here)
    path, lines, allout = bad("vault.ini", st.ini(
        profile_merchant={"secret": "vault:secret/ocp#merchant"}))
    assert_true(any("profile.merchant" in l for l in lines), "vault: problem reported")
    # env: variable not set
    path, lines, allout = bad("env.ini", st.ini(
        profile_merchant={"secret": "env:OCP_IT_NOT_SET_%s" % uuid.uuid4().hex[:8]}))
    assert_true(any("OCP_IT_NOT_SET" in l for l in lines), "unset variable named")
    # -V and -h
    rc, out, err = run_proxy(["-V"])
    assert_eq(rc, 0, "-V exit code")
    assert_true(re.search(r"ocp-proxy \d+\.\d+(\.\d+)?", out), "-V prints a version")
    rc, out, err = run_proxy(["-h"])
    assert_eq(rc, 0, "-h exit code")
    assert_contains(out, "usage", "-h prints usage")
    assert_contains(out, "-t", "usage mentions -t")
    assert_contains(out, "-c", "usage mentions -c")
    rc, out, err = run_proxy(["--version"])
    assert_eq((rc, out), (0, run_proxy(["-V"])[1]), "--version is -V")
    rc, out, err = run_proxy(["--help"])
    assert_eq(rc, 0, "--help exit code")
    assert_contains(out, "usage", "--help prints usage")
    rc, out, err = run_proxy(["-x"])
    assert_true(rc != 0, "unknown option is an error")
    rc, out, err = run_proxy(["--bogus"])
    assert_true(rc != 0 and "usage" in err, "unknown long option is an error, with usage")


def line_of(text, needle):
    """The 1-based number of the first line of text that starts with needle."""
    for n, l in enumerate(text.splitlines(), 1):
        if l.startswith(needle):
            return n
    raise AssertionError("no line starts with %r" % needle)


@test
def check_mode_lines_keys_and_sections():
    """-t: every problem is one line FILE:LINE: [section] key: message, at the
    key's own line; empty unknown or incomplete sections are refused; the
    stages that can be checked independently are all reported in one run."""
    s = sim()
    st = Setup(s, "tlines")
    problem = re.compile(r"^(.*):(\d+): \[([^\]]+)\]( [a-z_]+)?: (.+)$")

    def check(name, text):
        path = write_file(os.path.join(st.dir, name), text)
        rc, out, err = run_proxy(["-t", "-c", path])
        assert_eq(rc, 1, name + " exit code (stderr: %s)" % err[-300:])
        no_secrets(out + err, name)
        # one line per problem and nothing else (exit 1 says the check failed)
        lines = err.splitlines()
        for l in lines:
            m = problem.match(l)
            assert_true(m and m.group(1) == path, "FILE:LINE: [section] key: in %r" % l)
        return [problem.match(l).groups()[1:] for l in lines]

    def where(found, line, section, key, what):
        hits = [f for f in found if f[:3] == (str(line), section, key)]
        assert_eq(len(hits), 1, "one line for %s at %d: %r" % (what, line, found))
        return hits[0][3]

    # an empty unknown section, a misspelt empty one, an empty profile
    text = st.ini() + "[bogus]\n\n[audti]\n; nothing here\n[profile.third]\n"
    found = check("empty.ini", text)
    where(found, line_of(text, "[bogus]"), "bogus", None, "[bogus]")
    where(found, line_of(text, "[audti]"), "audti", None, "[audti]")
    for key in ("public_key", "secret", "routes"):
        assert_contains(where(found, line_of(text, "[profile.third]"), "profile.third",
                              " " + key, key), "missing", key)
    assert_eq(len(found), 5, "one line per problem: %r" % found)

    # post-parse problems at the key's line, and the key loaded as well
    wr = write_file(os.path.join(st.dir, "g.secret"), "FAKE-group-readable\n", 0o640)
    text = st.ini(upstream={"url": "http://127.0.0.1:9/api"},
                  listen={"address": "192.0.2.1:8780"},
                  audit={"path": "relative/audit.jsonl"},
                  profile_merchant={"secret": "file:" + wr})
    found = check("stages.ini", text)
    where(found, line_of(text, "url ="), "upstream", " url", "url")
    where(found, line_of(text, "address ="), "listen", " address", "address")
    where(found, line_of(text, "path ="), "audit", " path", "audit path")
    msg = where(found, line_of(text, "secret = file:" + wr), "profile.merchant", " secret",
                "group-readable secret")
    assert_contains(msg, "cannot load key", "key stage reported with the url problem")
    assert_eq(len(found), 4, "one line per problem: %r" % found)

    # a unix socket mode and a state dir that does not exist
    text = st.ini(listen={"address": "unix:" + os.path.join(st.dir, "s.sock"),
                          "socket_mode": "0666"},
                  state={"dir": os.path.join(st.dir, "no-such-dir")})
    found = check("state.ini", text)
    where(found, line_of(text, "socket_mode ="), "listen", " socket_mode", "socket_mode")
    where(found, line_of(text, "dir ="), "state", " dir", "state dir")

    # an audit file that start-up could not open: in a directory that does
    # not exist, or a directory itself (-t does not open it: a running
    # instance holds its lock)
    for name, path, why in (("auditdir.ini", os.path.join(st.dir, "no-such-logs", "a.jsonl"),
                             "cannot be created"),
                            ("auditisdir.ini", st.dir, "not a regular file")):
        text = st.ini(audit={"path": path})
        found = check(name, text)
        assert_contains(where(found, line_of(text, "path ="), "audit", " path", name), why, name)
        assert_eq(len(found), 1, "one line per problem: %r" % found)

    # an unknown source scheme: one line, not also "missing"
    text = st.ini(profile_partner={"secret": "foo:bar"})
    found = check("scheme.ini", text)
    where(found, line_of(text, "secret = foo:bar"), "profile.partner", " secret", "foo:bar")
    assert_eq(len(found), 1, "one line per problem: %r" % found)

    # a public key source that fails is named as such
    text = st.ini(profile_partner={"public_key": "env:OCP_IT_UNSET_PK_%s" %
                                   uuid.uuid4().hex[:8]})
    found = check("pub.ini", text)
    where(found, line_of(text, "public_key = env:"), "profile.partner", " public_key",
          "public_key source")


def key_line(text, section, key):
    """The 1-based number of the line of key in [section] of text."""
    lines = text.splitlines()
    for n in range(line_of(text, "[%s]" % section), len(lines)):
        if lines[n].startswith(key + " ="):
            return n + 1
        if lines[n].startswith("["):
            break
    raise AssertionError("no %s in [%s]" % (key, section))


def check_lines(st, name, text, env=None):
    """-t on text, expected to fail: its stderr lines (nothing else there)."""
    path = write_file(os.path.join(st.dir, name), text)
    rc, out, err = run_proxy(["-t", "-c", path], env=env)
    assert_eq(rc, 1, name + " exit code (stderr: %s)" % err[-300:])
    assert_not_contains(out, "OK", name + ": not OK")
    no_secrets(out + err, name)
    return path, err.splitlines()


@test
def text_after_a_section_header_is_refused():
    """inih ignores what follows a header's ']': "[listen]junk" or
    "[profile.a] [profile.b]" must not pass silently.  Only blanks and a ';'
    comment may follow; refused at -t, at start and on SIGHUP."""
    s = sim()
    st = Setup(s, "hdrtext")
    base = st.ini()
    for name, header, section in (("junk.ini", "[listen]junk", "listen"),
                                  ("word.ini", "[listen] trailing", "listen"),
                                  ("hash.ini", "[log] # not a comment", "log"),
                                  ("two.ini", "[profile.merchant] [profile.evil]",
                                   "profile.merchant")):
        old = "[%s]" % section
        text = base.replace(old + "\n", header + "\n", 1)
        assert_true(text != base, name + ": header replaced")
        path, lines = check_lines(st, name, text)
        assert_eq(lines, ["%s:%d: [%s]: text after the section header (only a ';' comment "
                          "may follow the ']')" % (path, line_of(text, header), section)],
                  name + ": one line at the header")
    # a ';' comment (with or without blanks before it) is fine
    text = base.replace("[listen]\n", "[listen] ; the front end\n", 1).replace(
        "[log]\n", "[log];levels\n", 1)
    rc, out, err = run_proxy(["-t", "-c", write_file(os.path.join(st.dir, "c.ini"), text)])
    assert_eq((rc, err), (0, ""), "-t with ';' comments after headers")
    rc, err = refused_start(base.replace("[listen]\n", "[listen]junk\n", 1), "start")
    assert_eq(rc, 1, "start refused")
    assert_contains(err, "[listen]: text after the section header", "start names it")
    p = st.start()
    try:
        write_file(p.conf, base.replace("[profile.partner]\n",
                                        "[profile.partner] [profile.evil]\n", 1))
        log = reload_outcome(p, "reload with text after a header")
        assert_contains(log, "[profile.partner]: text after the section header",
                        "reload names the header")
        assert_contains(log, "reload refused", "reload refused")
        ok(request(p.target, "/partner/api/get-users", b"{}"), "old config serves")
    finally:
        assert_eq(st.stop(), 0, "exit code")


@test
def profile_and_caller_names_up_to_64_characters():
    """docs: profile and caller names have at most 64 characters.  64 pass
    -t (a caller naming the profile); 65 and 128 are refused at the header,
    not cut to fit inih's section buffer."""
    s = sim()
    st = Setup(s, "names")
    n64 = "p" * 64
    text = st.ini(profile_merchant=None, **{
        "profile." + n64: {"public_key": MERCHANT_PUBLIC,
                           "secret": "file:" + st.merchant_secret, "routes": "/api-gateway/"},
        "caller." + "c" * 64: {"uid": str(os.getuid()), "profiles": n64}})
    rc, out, err = run_proxy(["-t", "-c", write_file(os.path.join(st.dir, "64.ini"), text)])
    assert_eq((rc, err), (0, ""), "-t with 64-character names")
    assert_contains(out, "1 named caller(s)", "the caller is taken")
    for name, header, msg in (
            ("p65.ini", "profile." + "p" * 65, "profile names use letters, digits, '-' and "
             "'_' only, at most 64 of them"),
            ("c65.ini", "caller." + "c" * 65, "caller names use letters, digits, '-' and '_' "
             "only (at most 64)"),
            ("c128.ini", "caller." + "c" * 128, "caller names use letters, digits, '-' and "
             "'_' only (at most 64)")):
        text = st.ini(**{header: {"uid": "1001"} if header.startswith("caller") else
                         {"public_key": "pk-" + name, "secret": "file:" + st.merchant_secret,
                          "routes": "/" + name + "/"}})
        path, lines = check_lines(st, name, text)
        assert_eq(lines, ["%s:%d: [%s]: %s" % (path, line_of(text, "[" + header + "]"),
                                               header, msg)], name)


SAME_PAIR = ("the same public key as [profile.merchant]: one section serves one API key "
             "pair (list several routes prefixes in one profile instead)")


@test
def two_profiles_with_one_key_pair_are_refused():
    """Two [profile.*] sections with one public key would each keep a nonce
    counter of their own (the API refuses reused nonces): refused at -t, at
    start and on SIGHUP (the running config kept), at the later profile's
    public_key line, whether the key is literal or loaded from a source; the
    key itself is not printed."""
    s = sim()
    st = Setup(s, "samepair")
    pub = write_file(os.path.join(st.dir, "merchant.pub"), MERCHANT_PUBLIC + "\n")
    var = "OCP_IT_PUB_%s" % uuid.uuid4().hex[:8]
    env = dict(os.environ, **{var: MERCHANT_PUBLIC})
    for name, source, e in (("literal.ini", MERCHANT_PUBLIC, None),
                            ("file.ini", "file:" + pub, None),
                            ("env.ini", "env:" + var, env)):
        text = st.ini(profile_partner={"public_key": source})
        path, lines = check_lines(st, name, text, env=e)
        want = "%s:%d: [profile.partner] public_key: %s" % (
            path, key_line(text, "profile.partner", "public_key"), SAME_PAIR)
        assert_eq(lines, [want], name + ": one line at the partner's public_key")
        assert_not_contains("\n".join(lines), MERCHANT_PUBLIC, name + ": key printed")
    # a third profile names the first it shares the pair with
    text = st.ini(profile_third={"public_key": "file:" + pub, "routes": "/third/",
                                 "secret": "file:" + st.merchant_secret})
    path, lines = check_lines(st, "third.ini", text)
    assert_eq(lines, ["%s:%d: [profile.third] public_key: %s" % (
        path, key_line(text, "profile.third", "public_key"), SAME_PAIR)], "third profile")
    # start
    rc, err = refused_start(st.ini(profile_partner={"public_key": "file:" + pub}), "start")
    assert_eq(rc, 1, "start refused")
    assert_contains(err, "[profile.partner] public_key: " + SAME_PAIR, "start names it")
    # SIGHUP: refused, the running pairs keep signing
    p = st.start()
    try:
        for over in ({"public_key": "file:" + pub}, {"public_key": MERCHANT_PUBLIC}):
            write_file(p.conf, st.ini(profile_partner=over))
            log = reload_outcome(p, "reload with one pair in two profiles")
            assert_contains(log, "[profile.partner] public_key: " + SAME_PAIR,
                            "reload names the profile")
            assert_contains(log, "reload refused", "reload refused")
            ok(request(p.target, "/partner/api/get-users", b"{}"), "partner after it")
            assert_eq(s.records()[-1]["public_key"], PARTNER_PUBLIC, "partner pair kept")
            ok(request(p.target, "/api-gateway/orders", b"{}"), "merchant after it")
            assert_eq(s.records()[-1]["public_key"], MERCHANT_PUBLIC, "merchant pair kept")
        no_secrets(p.stderr_text(), "stderr")
    finally:
        assert_eq(st.stop(), 0, "exit code")


# ------------------------------------------------------------------ 12b one instance

def refused_start(ini_text, what):
    """Start a proxy expected to refuse: (exit code, its stderr)."""
    p = Proxy(ini_text, wait=False)
    rc = p.wait_exit(15)
    if rc is None:
        p.stop()
        raise AssertionError("%s: still running, expected a refused start" % what)
    return rc, p.stderr_text()


def one_error_line(text, what):
    """The error lines of a refused start: exactly one is expected."""
    lines = [l for l in text.splitlines() if l.strip()]
    assert_eq(len(lines), 1, "%s: one line on stderr (%d)" % (what, len(lines)))
    return lines[0]


@test
def second_instance_on_the_same_socket_refuses():
    """A second instance with the same config must not take over the unix
    socket (nor share the state dir); one with its own state dir and audit
    but the same socket path neither; the first keeps serving, keeps its
    socket file, and once it stops (or dies) a new start succeeds."""
    s = sim()
    st = Setup(s, "dup")
    sock = os.path.join(st.dir, "ocp.sock")
    stale = socket.socket(socket.AF_UNIX)       # left behind by a process gone
    stale.bind(sock)
    stale.close()
    text = st.ini(listen={"address": "unix:" + sock})
    p = st.start(listen={"address": "unix:" + sock})
    try:
        ok(request(p.target, "/api-gateway/orders", b"{}"), "first, over a stale socket file")
        ino = os.stat(sock).st_ino
        with open(os.path.join(st.state, "ocp-proxy.lock")) as f:
            assert_eq(f.read(), "%d\n" % p.pid, "the lock file names the holder")

        rc, err = refused_start(text, "same config")
        assert_eq(rc, 1, "second instance, same config: exit code")
        line = one_error_line(err, "same config")
        assert_contains(line, "[state] dir: %s is in use by another ocp-proxy (pid %d holds "
                        "ocp-proxy.lock): one instance per state directory"
                        % (st.state, p.pid), "the refusal names the dir and the pid")

        other = Setup(s, "dup2")
        rc, err = refused_start(other.ini(listen={"address": "unix:" + sock}),
                                "own state dir, same socket")
        assert_eq(rc, 1, "second instance, same socket path: exit code")
        assert_contains(err, "[listen] address: unix:%s: another process is listening on it"
                        % sock, "the refusal names the socket")
        assert_not_contains(err, "listening on unix:", "it never listened")

        assert_eq(os.stat(sock).st_ino, ino, "the first one's socket file is untouched")
        ok(request(p.target, "/api-gateway/orders", b"{}"), "first still serves")
        assert_true(p.running(), "first still running")
    finally:
        assert_eq(st.stop(), 0, "exit code")
    assert_true(not os.path.exists(sock), "socket removed at exit")

    p = st.start(listen={"address": "unix:" + sock})   # the lock went with the process
    try:
        ok(request(p.target, "/api-gateway/orders", b"{}"), "a new start after the stop")
        p.signal(signal.SIGKILL)
        p.wait_exit(10)
    finally:
        p.stop()
    assert_true(os.path.exists(sock), "a killed proxy leaves its socket file")
    p = st.start(listen={"address": "unix:" + sock})
    try:
        ok(request(p.target, "/api-gateway/orders", b"{}"), "a new start after a crash")
    finally:
        assert_eq(st.stop(), 0, "exit code")


def lock_held(d):
    """Whether some process holds the flock on d/ocp-proxy.lock."""
    try:
        fd = os.open(os.path.join(d, "ocp-proxy.lock"), os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def lock_pid(d):
    with open(os.path.join(d, "ocp-proxy.lock")) as f:
        return f.read()


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def reload_outcome(p, what):
    """SIGHUP p; the log after it once "reloaded" or "reload refused" shows."""
    before = len(p.stderr_text())
    p.signal(signal.SIGHUP)
    wait_for(lambda: re.search(r"reloaded |reload refused",
                               p.stderr_text()[before:]), 15, what)
    return p.stderr_text()[before:]


def last_nonce(s):
    return int(s.records()[-1]["nonce"])


@test
def reload_onto_a_state_dir_another_instance_holds_is_refused():
    """A reload moving [state] dir to a dir another instance holds is refused
    as a whole, with the message of a refused start: the old dir stays locked
    and in use, and the other instance is unaffected."""
    s = sim()
    a = Setup(s, "mv-held-a")
    b = Setup(s, "mv-held-b")
    pa = a.start()
    pb = b.start()
    try:
        ok(request(pa.target, "/api-gateway/orders", b"{}"), "a before")
        ok(request(pb.target, "/partner/api/get-users", b"{}"), "b before")
        held = {n: read_bytes(os.path.join(b.state, n)) for n in os.listdir(b.state)}
        text = a.ini(state={"dir": b.state}, log={"level": "debug"})
        write_file(pa.conf, text)
        err = reload_outcome(pa, "reload onto b's state dir")
        assert_contains(err, "%s:%d: [state] dir: %s is in use by another ocp-proxy (pid %d "
                        "holds ocp-proxy.lock): one instance per state directory"
                        % (pa.conf, line_of(text, "dir = "), b.state, pb.pid),
                        "the refusal names the file, line, dir and holder")
        assert_contains(err, "reload refused: keeping the running configuration",
                        "the reload is refused as a whole")
        assert_not_contains(err, "debug:", "the old log level stays")
        assert_true(lock_held(a.state), "a's dir is still locked")
        assert_eq(lock_pid(a.state), "%d\n" % pa.pid, "a's lock file names a")
        assert_eq(lock_pid(b.state), "%d\n" % pb.pid, "b's lock file still names b")

        ok(request(pb.target, "/partner/api/get-users", b"{}"), "b unaffected")
        ahead = last_nonce(s) + 3600000
        ok(request(pa.target, "/api-gateway/orders", b'{"nonce":%d}' % ahead),
           "a after, its own nonce")
        with open(os.path.join(a.state, "nonce.merchant")) as f:
            assert_true(int(f.read()) >= ahead, "a reserves in its old dir")
        assert_true(not os.path.exists(os.path.join(b.state, "nonce.merchant")),
                    "a wrote no nonce state in b's dir")
        assert_true(all(read_bytes(os.path.join(b.state, n)) == v for n, v in held.items()),
                    "b's state files unchanged")
        assert_true(pa.running() and pb.running(), "both still running")
    finally:
        assert_eq(a.stop(), 0, "a: exit code")
        assert_eq(b.stop(), 0, "b: exit code")


@test
def reload_onto_a_free_state_dir_moves_lock_and_nonces():
    """A reload to a free [state] dir takes its lock, releases the old one
    and writes reservations there that cover every nonce so far (also a
    caller's, an hour ahead of the clock): a second instance on the new dir
    is refused, and nonces after the reload and after a restart on the new
    dir are above all those before.  A reload naming the same dir (also
    spelled otherwise) keeps the lock."""
    s = sim()
    a = Setup(s, "mv-free")
    new = subdir("mv-free-new")
    p = a.start()
    try:
        ok(request(p.target, "/api-gateway/orders", b"{}"), "before")
        err = reload_outcome(p, "reload, same dir")
        assert_contains(err, "reloaded ", "same dir: reloaded")
        assert_true(lock_held(a.state), "same dir: still locked")
        assert_eq(lock_pid(a.state), "%d\n" % p.pid, "same dir: the lock file names it")
        ahead = last_nonce(s) + 3600000
        ok(request(p.target, "/api-gateway/orders", b'{"nonce":%d}' % ahead), "own nonce")
        ok(request(p.target, "/api-gateway/orders", b"{}"), "inserted above it")
        before = last_nonce(s)
        assert_true(before > ahead, "inserted nonce above the caller's")

        text = a.ini(state={"dir": new})
        write_file(p.conf, text)
        err = reload_outcome(p, "reload onto a free dir")
        assert_contains(err, "reloaded ", "moved: reloaded")
        assert_true(lock_held(new), "the new dir is locked")
        assert_eq(lock_pid(new), "%d\n" % p.pid, "the new lock file names it")
        assert_true(not lock_held(a.state), "the old dir's lock is released")
        with open(os.path.join(new, "nonce.merchant")) as f:
            assert_true(int(f.read()) >= before, "the new dir's reservation covers the old")
        assert_true(os.path.exists(os.path.join(new, "audit.tail")),
                    "the audit tail copy moved along")

        rc, err = refused_start(text, "second instance on the new dir")
        assert_eq(rc, 1, "second instance on the new dir: exit code")
        line = one_error_line(err, "second instance on the new dir")
        assert_contains(line, "[state] dir: %s is in use by another ocp-proxy (pid %d holds "
                        "ocp-proxy.lock): one instance per state directory" % (new, p.pid),
                        "the second instance is refused by the new dir's lock")

        ok(request(p.target, "/api-gateway/orders", b"{}"), "after the move")
        assert_true(last_nonce(s) > before, "nonce after the move above those before")
        write_file(p.conf, a.ini(state={"dir": os.path.join(new, ".")}))
        err = reload_outcome(p, "reload, the new dir spelled otherwise")
        assert_contains(err, "reloaded ", "spelled otherwise: reloaded")
        assert_true(lock_held(new), "spelled otherwise: still locked")
        ok(request(p.target, "/api-gateway/orders", b"{}"), "after the respelling")
        before = last_nonce(s)
    finally:
        assert_eq(a.stop(), 0, "exit code")

    p = a.start(state={"dir": new})
    try:
        ok(request(p.target, "/api-gateway/orders", b"{}"), "after a restart on the new dir")
        assert_true(last_nonce(s) > before, "nonce after the restart above all before")
    finally:
        assert_eq(a.stop(), 0, "exit code after the restart")


@test
def refused_reload_onto_a_new_state_dir_leaves_nothing_there():
    """A reload to a new [state] dir refused for another reason (a key that
    cannot be read) releases the new dir at once and keeps nothing opened
    there: a profile it named, added later by a reload that keeps the old
    dir, counts in the old dir."""
    s = sim()
    a = Setup(s, "mv-refused")
    new = subdir("mv-refused-new")
    # the partner's pair moves to "third" (one profile per pair)
    third = {"public_key": PARTNER_PUBLIC, "secret": "file:" + a.partner_secret,
             "routes": "/partner/api/get-user"}
    p = a.start()
    try:
        ok(request(p.target, "/api-gateway/orders", b"{}"), "before")
        write_file(p.conf, a.ini(state={"dir": new}, profile_third=third, profile_partner=None,
                                 profile_merchant={"secret": "file:" +
                                                   os.path.join(a.dir, "missing")}))
        err = reload_outcome(p, "refused reload onto a new dir")
        assert_contains(err, "reload refused: keeping the running configuration", "refused")
        assert_true(not lock_held(new), "the new dir is not kept locked")
        assert_true(lock_held(a.state), "the old dir is still locked")

        write_file(p.conf, a.ini(profile_third=third, profile_partner=None))
        err = reload_outcome(p, "reload adding the profile, same dir")
        assert_contains(err, "reloaded ", "reloaded")
        ok(request(p.target, "/partner/api/get-user", b"{}"), "the new profile")
        assert_true(os.path.exists(os.path.join(a.state, "nonce.third")),
                    "the new profile reserves in the running dir")
        assert_eq(sorted(n for n in os.listdir(new) if n.startswith("nonce.")), [],
                  "no nonce state written in the refused dir")
    finally:
        assert_eq(a.stop(), 0, "exit code")


@test
def stopping_never_removes_another_socket():
    """The socket path was handed to another instance meanwhile (the first
    one's file renamed away): the first one's stop leaves the path alone."""
    s = sim()
    a = Setup(s, "sock-a")
    b = Setup(s, "sock-b")
    sock = os.path.join(a.dir, "ocp.sock")
    pa = a.start(listen={"address": "unix:" + sock})
    try:
        os.rename(sock, sock + ".old")
        pb = b.start(listen={"address": "unix:" + sock})
        ok(request(pb.target, "/api-gateway/orders", b"{}"), "second on the free path")
        assert_eq(a.stop(), 0, "first: exit code")
        assert_true(os.path.exists(sock), "the second one's socket is still there")
        ok(request(pb.target, "/api-gateway/orders", b"{}"), "second still reachable")
        assert_true(os.path.exists(sock + ".old"), "the moved file is not ours to remove")
    finally:
        a.stop()
        assert_eq(b.stop(), 0, "second: exit code")


# ------------------------------------------------------------------ 12c reload moves the listener

def refused_for(p, what):
    """SIGHUP p, expecting a refusal: the log after it."""
    err = reload_outcome(p, what)
    assert_contains(err, "reload refused: keeping the running configuration", what + ": refused")
    assert_not_contains(err, "reloaded ", what + ": not reloaded")
    return err


def connection_refused(target, what):
    """A new connection to target (port, "host:port", "unix:/path") must fail."""
    try:
        conn = connect(target, timeout=2)
        conn.connect()
        conn.close()
    except (ConnectionRefusedError, FileNotFoundError):
        return
    raise AssertionError(what + ": a new connection was accepted")


@test
def sighup_moves_the_listener_to_a_new_port():
    """A changed [listen] address applies on reload: the new port serves
    signed requests, the old one takes no new connection, and a keep-alive
    connection made before the reload is served on (its Host, the old listen
    host 127.0.0.2, still counts as this proxy's)."""
    s = sim()
    st = Setup(s, "move")
    p = st.start(listen={"address": "127.0.0.2:0"})
    old = p.target
    kept = connect(old)
    try:
        ok(request(old, "/api-gateway/orders", b"{}", conn=kept), "keep-alive, before")
        new = "127.0.0.1:%d" % free_port()
        write_file(p.conf, st.ini(listen={"address": new}))
        err = reload_outcome(p, "reload to a new port")
        assert_contains(err, "listening on %s (was %s)" % (new, old), "the move is logged")
        assert_contains(err, "reloaded ", "reloaded")
        p._set_addr(new)
        check_signed(s, p, "on the new port")
        connection_refused(old, "the old port")
        ok(request(old, "/api-gateway/orders", b"{}", conn=kept), "keep-alive, after the move")
        assert_eq(s.records()[-1]["public_key"], MERCHANT_PUBLIC, "signed on the old connection")
        # the same address again: nothing is bound anew
        err = reload_outcome(p, "reload, address unchanged")
        assert_contains(err, "reloaded ", "reloaded again")
        assert_not_contains(err, "listening on", "nothing bound again")
        ok(request(new, "/partner/api/get-users", b"{}"), "new port after a second reload")
    finally:
        kept.close()
        assert_eq(st.stop(), 0, "exit code")
    connection_refused(new, "the new port after the stop")


@test
def sighup_onto_a_taken_port_is_refused():
    """A reload to a port another socket holds is refused with the cause, and
    the old listener serves on; a move that overlaps the running listener on
    its own port (127.0.0.1:P to 0.0.0.0:P) cannot be bound while it listens:
    refused, saying it needs a restart."""
    s = sim()
    st = Setup(s, "taken")
    port = free_port()
    p = st.start(listen={"address": "127.0.0.1:%d" % port})
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        taken = "127.0.0.1:%d" % holder.getsockname()[1]
        text = st.ini(listen={"address": taken})
        write_file(p.conf, text)
        err = refused_for(p, "reload onto a taken port")
        assert_contains(err, "%s:%d: [listen] address: bind %s: Address already in use"
                        % (p.conf, line_of(text, "address = "), taken),
                        "the file, line, key and cause")
        assert_not_contains(err, "listening on", "nothing new listens")
        ok(request(p.target, "/api-gateway/orders", b"{}"), "the old port serves on")

        token = hashlib.sha256(b"listen-move-test").hexdigest()
        write_file(p.conf, st.ini(extra="[caller.net]\ntoken_sha256 = %s\n" % token,
                                  listen={"address": "0.0.0.0:%d" % port,
                                          "allow_non_loopback": "yes"}))
        err = refused_for(p, "reload onto 0.0.0.0 on the same port")
        assert_contains(err, "[listen] address: bind 0.0.0.0:%d: Address already in use "
                        "(the running listener holds that port: a move to an address that "
                        "overlaps it needs a restart)" % port, "the overlap is explained")
        ok(request(p.target, "/api-gateway/orders", b"{}"), "the old port serves on (2)")
    finally:
        holder.close()
        assert_eq(st.stop(), 0, "exit code")


def other_group(gid):
    """A group other than gid the socket can be given (as root), or None."""
    if os.geteuid() != 0:
        return None
    for name in ("nogroup", "daemon"):
        try:
            g = grp.getgrnam(name)
        except KeyError:
            continue
        if g.gr_gid != gid:
            return g
    return None


@test
def sighup_moves_between_tcp_and_a_unix_socket():
    """TCP -> unix socket (in a private dir, with socket_mode) -> TCP: each
    move serves at once, the socket file is made with its mode and removed
    once the proxy moves away from it; a changed socket_mode or socket_group
    on the same path is applied to the file (undone when the reload is
    refused)."""
    s = sim()
    st = Setup(s, "tcp-unix")
    sock = os.path.join(st.dir, "ocp.sock")
    p = st.start()
    tcp = p.target
    kept = connect(tcp)
    try:
        ok(request(tcp, "/api-gateway/orders", b"{}", conn=kept), "keep-alive on TCP")
        write_file(p.conf, st.ini(listen={"address": "unix:" + sock, "socket_mode": "0660"}))
        err = reload_outcome(p, "reload to a unix socket")
        assert_contains(err, "listening on unix:%s (was %s)" % (sock, tcp), "the move is logged")
        sb = os.lstat(sock)
        assert_true(stat.S_ISSOCK(sb.st_mode), "a socket file is made")
        assert_eq(oct(sb.st_mode & 0o777), oct(0o660), "with socket_mode")
        ok(request("unix:" + sock, "/api-gateway/orders", b"{}"), "served on the unix socket")
        connection_refused(tcp, "the TCP port")
        ok(request(tcp, "/api-gateway/orders", b"{}", conn=kept), "keep-alive TCP connection")

        write_file(p.conf, st.ini(listen={"address": "unix:" + sock, "socket_mode": "0600"}))
        err = reload_outcome(p, "reload with a new socket_mode")
        assert_contains(err, "reloaded ", "reloaded")
        assert_eq(os.lstat(sock).st_ino, sb.st_ino, "the same socket file")
        assert_eq(oct(os.lstat(sock).st_mode & 0o777), oct(0o600), "socket_mode applied")
        other = other_group(sb.st_gid)
        if other is not None:       # root: chown to any group, then back to the first one
            write_file(p.conf, st.ini(listen={"address": "unix:" + sock, "socket_mode": "0600",
                                              "socket_group": other.gr_name}))
            assert_contains(reload_outcome(p, "reload with a socket_group"), "reloaded ",
                            "reloaded with a socket_group")
            assert_eq(os.lstat(sock).st_gid, other.gr_gid, "socket_group applied")
            write_file(p.conf, st.ini(listen={"address": "unix:" + sock, "socket_mode": "0600"}))
            assert_contains(reload_outcome(p, "reload without socket_group"), "reloaded ",
                            "reloaded without a socket_group")
            assert_eq(os.lstat(sock).st_gid, sb.st_gid, "back to the group it was made with")
        write_file(p.conf, st.ini(listen={"address": "unix:" + sock, "socket_mode": "0660",
                                          "socket_group": "ocp-no-such-group"}))
        err = refused_for(p, "reload with an unknown socket_group")
        assert_contains(err, "[listen] socket_group: no group ocp-no-such-group", "says why")
        assert_eq(oct(os.lstat(sock).st_mode & 0o777), oct(0o600), "socket_mode kept")
        assert_eq(os.lstat(sock).st_gid, sb.st_gid, "group kept")
        # refused after the mode was applied (the new audit path cannot be opened): undone
        write_file(p.conf, st.ini(listen={"address": "unix:" + sock, "socket_mode": "0640"},
                                  audit={"path": os.path.join(st.dir, "no-dir", "a.jsonl")}))
        err = reload_outcome(p, "reload refused by its audit path")
        assert_contains(err, "reload refused: audit", "refused by the audit path")
        assert_eq(oct(os.lstat(sock).st_mode & 0o777), oct(0o600), "socket_mode restored")

        back = "127.0.0.1:%d" % free_port()
        write_file(p.conf, st.ini(listen={"address": back}))
        err = reload_outcome(p, "reload back to TCP")
        assert_contains(err, "listening on %s (was unix:%s)" % (back, sock), "moved back")
        assert_true(not os.path.lexists(sock), "the socket file is removed")
        ok(request(back, "/api-gateway/orders", b"{}"), "served on TCP again")
        ok(request(tcp, "/api-gateway/orders", b"{}", conn=kept), "the first connection still")
    finally:
        kept.close()
        assert_eq(st.stop(), 0, "exit code")


@test
def sighup_names_the_same_unix_socket_another_way():
    """A reload whose [listen] address names the unix socket in use in another
    spelling ("/./", "//", through a symlinked directory) is the address
    unchanged: reloaded, nothing bound anew, the same socket file serves on
    (a changed socket_mode is applied to it), and it is removed at the stop."""
    s = sim()
    st = Setup(s, "same-unix")
    run = os.path.join(st.dir, "run")
    os.mkdir(run, 0o700)
    link = os.path.join(st.dir, "link")
    os.symlink(run, link)
    sock = os.path.join(run, "ocp.sock")
    p = st.start(listen={"address": "unix:" + sock, "socket_mode": "0660"})
    ino = os.lstat(sock).st_ino
    kept = connect("unix:" + sock)
    try:
        ok(request("unix:" + sock, "/api-gateway/orders", b"{}", conn=kept), "keep-alive, before")
        spellings = (run + "/./ocp.sock", run + "//ocp.sock", os.path.join(link, "ocp.sock"),
                     sock)
        for n, path in enumerate(spellings):
            mode = ("0600", "0660")[n % 2]
            write_file(p.conf, st.ini(listen={"address": "unix:" + path, "socket_mode": mode}))
            err = reload_outcome(p, "reload naming unix:" + path)
            assert_contains(err, "reloaded ", "reloaded (%s)" % path)
            assert_not_contains(err, "another process", "not taken for another's (%s)" % path)
            assert_not_contains(err, "listening on", "nothing bound anew (%s)" % path)
            assert_contains(err, "[listen] address unix:%s is the socket in use" % path,
                            "said (%s)" % path)
            assert_eq(os.lstat(sock).st_ino, ino, "the same socket file (%s)" % path)
            assert_eq(oct(os.lstat(sock).st_mode & 0o777), oct(int(mode, 8)),
                      "socket_mode applied (%s)" % path)
            ok(request("unix:" + path, "/api-gateway/orders", b"{}"), "served at " + path)
            ok(request("unix:" + sock, "/api-gateway/orders", b"{}", conn=kept),
               "keep-alive after the reload naming " + path)
    finally:
        kept.close()
        assert_eq(st.stop(), 0, "exit code")
    assert_true(not os.path.lexists(sock), "socket removed at exit")


@test
def sighup_to_a_refused_unix_socket_leaves_nothing_behind():
    """A reload to a unix path the proxy must not use is refused like any bad
    config, the TCP listener serves on and nothing is left in the directory:
    a directory everyone may write to without the sticky bit, a path that is
    a regular file, a path too long, and an unknown socket_group (the socket
    was bound: it is removed again)."""
    s = sim()
    st = Setup(s, "unix-refused")
    p = st.start()
    open_dir = os.path.join(st.dir, "open")
    os.mkdir(open_dir)
    os.chmod(open_dir, 0o777)
    mine = os.path.join(st.dir, "mine")
    os.mkdir(mine, 0o700)
    plain = write_file(os.path.join(mine, "plain"), "not a socket")
    try:
        cases = (
            ({"address": "unix:" + os.path.join(open_dir, "ocp.sock")},
             "[listen] address: unix:%s: the directory %s is writable by everyone without "
             "the sticky bit" % (os.path.join(open_dir, "ocp.sock"), open_dir)),
            ({"address": "unix:" + plain}, "[listen] address: %s exists and is not a socket"
             % plain),
            ({"address": "unix:" + os.path.join(mine, "x" * 120)},
             "[listen] address: unix socket path too long"),
            ({"address": "unix:" + os.path.join(mine, "ocp.sock"),
              "socket_group": "ocp-no-such-group"},
             "[listen] socket_group: no group ocp-no-such-group"),
        )
        for listen, want in cases:
            text = st.ini(listen=listen)
            write_file(p.conf, text)
            err = refused_for(p, want)
            errors = [l for l in err.splitlines() if p.conf + ":" in l]
            assert_eq(len(errors), 1, "one line names the file (%s)" % want)
            assert_contains(errors[0], want, "the cause")
            assert_not_contains(err, "listening on", "nothing new listens")
            ok(request(p.target, "/api-gateway/orders", b"{}"), "TCP serves on")
        assert_eq(os.listdir(open_dir), [], "nothing left in the open dir")
        assert_eq(sorted(os.listdir(mine)), ["plain"], "nothing left beside the file")
        assert_eq(read_bytes(plain), b"not a socket", "the file is untouched")
    finally:
        assert_eq(st.stop(), 0, "exit code")


# ------------------------------------------------------------------ 13 audit

@test
def audit_lines_are_complete():
    s = sim()
    st = Setup(s)
    p = st.start()
    try:
        body = b'{"a":1,"password":"pw-in-request-0123","deep":{"secret":[1,2]}}'
        add_secret("pw-in-request-0123")
        c = connect(p.target)
        resp = request(p.target, "/partner/api/create-user", body, conn=c)
        ok(resp, "create-user")
        rid = resp[1]["x-request-id"]
        pw = envelope(resp[2])["response"]["password"]
        add_secret(pw)
        sim_nonce = int(s.records()[-1]["nonce"])
        out = st.audit_for(rid)
        lines = st.audit_lines()
        idx = {l.get("phase"): i for i, l in enumerate(lines) if l.get("id") == rid}
        assert_eq(sorted(idx), ["outcome", "request"], "request and outcome lines")
        assert_true(idx["request"] < idx["outcome"], "request line before outcome line")
        req = lines[idx["request"]]
        for rec, what in ((req, "request line"), (out, "outcome line")):
            assert_true(RFC3339_MS.match(rec.get("time", "")), what + " time RFC 3339 ms Z")
            assert_true(re.fullmatch(r"127\.0\.0\.1:\d+", rec.get("caller", "")),
                        what + " caller")
            assert_eq(rec.get("method"), "POST", what + " method")
            assert_eq(rec.get("path"), "/partner/api/create-user", what + " path")
            assert_eq(rec.get("profile"), "partner", what + " profile")
            assert_eq(rec.get("nonce"), sim_nonce, what + " nonce")
        assert_eq(req.get("bytes_in"), len(body), "request bytes_in")
        r = req.get("request")
        assert_true(isinstance(r, dict), "redacted request body logged as JSON")
        assert_eq(r.get("password"), "[REDACTED]", "request password redacted")
        assert_eq(r.get("deep"), {"secret": "[REDACTED]"}, "nested secret redacted")
        assert_eq(r.get("a"), 1, "other members kept")
        assert_eq(out.get("status"), 200, "status")
        assert_eq(out.get("upstream_status"), 200, "upstream_status")
        assert_true(isinstance(out.get("duration_ms"), (int, float)) and
                    out["duration_ms"] >= 0, "duration_ms")
        assert_eq(out.get("bytes_in"), len(body), "outcome bytes_in")
        assert_eq(out.get("bytes_out"), len(resp[2]), "bytes_out")
        assert_true("error" in out and out["error"] is None, "error null")
        ro = out.get("response")
        assert_true(isinstance(ro, dict), "redacted response logged as JSON")
        assert_eq(ro["response"]["password"], "[REDACTED]", "response password redacted")
        # a refused request: one outcome line with the error name
        resp = request(p.target, "/nowhere", b"{}", conn=c)
        rid2 = resp[1]["x-request-id"]
        o2 = st.audit_for(rid2)
        assert_eq((o2.get("status"), o2.get("upstream_status"), o2.get("error")),
                  (404, None, "PROXY_NO_ROUTE"), "refused request outcome")
        assert_true(RFC3339_MS.match(o2.get("time", "")), "refused time")
        # non-JSON upstream answer: size and SHA-256 only
        s.fault("garbage", count=1)
        resp = request(p.target, "/api-gateway/orders", b"{}", conn=c)
        assert_status(resp, 200, "garbage relayed")
        assert_eq(resp[1].get("content-type", "").split(";")[0], "text/html",
                  "garbage content type relayed")
        garbage = resp[2]
        o3 = st.audit_for(resp[1]["x-request-id"])
        assert_eq(o3.get("response_bytes"), len(garbage), "response_bytes")
        assert_eq(o3.get("response_sha256"), hashlib.sha256(garbage).hexdigest(),
                  "response_sha256")
        assert_true("response" not in o3, "no verbatim non-JSON response")
        c.close()
        assert_eq(st.stop(), 0, "exit code")
        text = st.audit_text()
        assert_not_contains(text, garbage.decode(), "garbage body in the audit")
        assert_not_contains(text, "pw-in-request-0123", "request password in the audit")
        assert_not_contains(text, pw, "response password in the audit")
    finally:
        st.stop()
    # bodies = none: no request or response bodies at all
    s.reset()
    st = Setup(s, "nobodies")
    p = st.start(audit={"bodies": "none"})
    try:
        resp = request(p.target, "/api-gateway/orders", b'{"marker":"body-marker-1"}')
        ok(resp, "bodies=none request")
        rid = resp[1]["x-request-id"]
        out = st.audit_for(rid)
        req = st.audit_for(rid, "request")
        for k in ("request", "response", "response_bytes", "response_sha256"):
            assert_true(k not in req and k not in out, "bodies=none: no " + k)
        assert_eq(out.get("status"), 200, "bodies=none status")
        assert_not_contains(st.audit_text(), "body-marker-1", "bodies=none body text")
    finally:
        assert_eq(st.stop(), 0, "exit code")


@test
def audit_records_the_nonce_sent():
    """The audit's nonce is the one the API got: the inserted number, or the
    caller's own integer or string with "nonce_from":"caller"."""
    s = sim()
    st = Setup(s)
    p = st.start()
    try:
        resp = ok_with_id(request(p.target, "/api-gateway/orders", b"{}"))
        sent = int(s.records()[-1]["nonce"])
        mine = sent + 1000
        u = str(uuid.uuid4())
        cases = ((resp, sent, None),
                 (ok_with_id(request(p.target, "/api-gateway/orders",
                                     b'{"a":1,"nonce":%d}' % mine)), mine, "caller"),
                 (ok_with_id(request(p.target, "/api-gateway/orders",
                                     b'{"nonce":"%s\\u00e9\\""}' % u.encode())),
                  u + "\u00e9\"", "caller"))
        for rid, want, src in cases:
            for phase in ("request", "outcome"):
                rec = st.audit_for(rid, phase)
                assert_eq((rec.get("nonce"), rec.get("nonce_from")), (want, src),
                          "%s line of %r" % (phase, want))
                assert_true(src is not None or "nonce_from" not in rec,
                            "no nonce_from for an inserted nonce")
    finally:
        assert_eq(st.stop(), 0, "exit code")
    # with nonce in the redact list the caller's value is replaced there too
    s.reset()
    st = Setup(s, "rednonce")
    p = st.start(audit={"redact": "password, nonce"})
    try:
        mine = int(time.time() * 1000) + 5000
        rid = ok_with_id(request(p.target, "/api-gateway/orders", b'{"nonce":%d}' % mine))
        for phase in ("request", "outcome"):
            rec = st.audit_for(rid, phase)
            assert_eq((rec.get("nonce"), rec.get("nonce_from")), ("[REDACTED]", "caller"),
                      phase + " line, nonce redacted")
        assert_eq(st.stop(), 0, "exit code")
        assert_not_contains(st.audit_text(), str(mine), "a redacted caller nonce")
    finally:
        st.stop()


def ok_with_id(resp):
    ok(resp, "request")
    return resp[1]["x-request-id"]


@test
def shared_sim_exits_zero():
    if _sim is not None:
        no_secrets(_sim.stderr_text(), "sim stderr")
        assert_eq(_sim.stop(), 0, "shared simulator exit code")


if __name__ == "__main__":
    main()
