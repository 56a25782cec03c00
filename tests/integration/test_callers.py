#!/usr/bin/env python3
"""Caller identity and per-caller policy (issue 6, docs/callers.md): the unix
socket listener (socket_mode, socket_group, world-writable modes refused),
callers identified by the kernel's peer uid/gid (children of this root test
switch uid), bearer-token callers on TCP (ocp-proxy hash-token), path tricks,
the API-catalogue rule, rate and concurrency limits, the caller in every audit
record, the open default, and rate buckets kept across a SIGHUP reload.

Everything runs on loopback or a unix socket against build/ocp-sim.  The
uid-switching tests need root (they are skipped otherwise).

Run: OCP_BUILD=build python3 tests/integration/test_callers.py [name-words]
"""

import atexit
import grp
import hashlib
import json
import os
import re
import secrets
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True     # keep tests/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (MERCHANT_PUBLIC, MERCHANT_SECRET, PARTNER_PUBLIC,  # noqa: E402
                     PARTNER_SECRET, Proxy, Sim, Skip, add_secret, assert_eq,
                     assert_not_contains, assert_true, binary, envelope,
                     error_name, main, raw, request, run_proxy, subdir, test,
                     wait_for, write_file)

# uids/gids the children switch to (need not exist in /etc/passwd)
UID_BILLING, UID_PAYOUTS, UID_UNKNOWN = 1001, 1002, 1003
UID_OPS, UID_AUDITOR = 1004, 1005
GID_OPS = 1500          # [caller.ops] gid = 1500; [caller.auditor] uid 1005 + gid 1500
GID_OTHER = 1600        # primary gid of the uid-identified children

_sim = None


def sim():
    """The shared simulator, reset to a clean state (records, nonces, stats)."""
    global _sim
    if _sim is None:
        _sim = Sim()
    _sim.fault("none")
    _sim.reset()
    return _sim


def sim_paths(s):
    return [r["path"] for r in s.records()]


def need_root():
    if os.geteuid() != 0:
        raise Skip("needs root (switches uid in a child)")


def socket_group():
    """(name, gid) of an existing group for socket_group (no group is created)."""
    for name in ("nogroup", "daemon"):
        try:
            return name, grp.getgrnam(name).gr_gid
        except KeyError:
            pass
    raise Skip("no 'nogroup' or 'daemon' group")


_public_dirs = []


def public_dir():
    """A root-owned 0755 directory outside the run's private (0700) temp dir,
    so that children running as other uids can reach a socket in it."""
    d = tempfile.mkdtemp(prefix="ocp-callers-", dir="/tmp")
    os.chmod(d, 0o755)
    _public_dirs.append(d)
    return d


def _rm_public_dirs():
    for d in _public_dirs:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_rm_public_dirs)


# ------------------------------------------------------------------ set-up

class Setup:
    """A private directory for one proxy (secrets 0600, state dir, audit) and
    an INI builder.  Sections are dicts; a value of None drops the key, a
    section of None drops the section.  callers: text appended verbatim."""

    def __init__(self, s, name="cl"):
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

    def ini(self, callers="", **over):
        out = []
        for name, values in self.sections(**over).items():
            out.append("[%s]" % name)
            out.extend("%s = %s" % kv for kv in values.items())
            out.append("")
        return "\n".join(out) + "\n" + callers

    def write_conf(self, callers="", **over):
        return write_file(os.path.join(self.dir, "check.ini"), self.ini(callers, **over))

    def check(self, callers="", **over):
        """ocp-proxy -t on this config: (rc, stdout, stderr)."""
        return run_proxy(["-c", self.write_conf(callers, **over), "-t"])

    def start(self, callers="", **over):
        self.proxy = Proxy(self.ini(callers, **over))
        return self.proxy

    def audit_text(self):
        try:
            with open(self.audit, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def audit_lines(self):
        return [json.loads(l) for l in self.audit_text().splitlines() if l.strip()]

    def audit_of(self, rid, timeout=5.0):
        """Every audit line of request rid, once its outcome line is written."""
        def find():
            recs = [r for r in self.audit_lines() if r.get("id") == rid]
            return recs if any(r.get("phase") == "outcome" for r in recs) else None
        return wait_for(find, timeout, "audit outcome line of %s" % rid)

    def stop(self):
        if self.proxy is not None and self.proxy.running():
            return self.proxy.stop()
        return self.proxy.proc.returncode if self.proxy else None


def hash_token(token, stdin=None):
    """ocp-proxy hash-token with token on stdin: (rc, stdout, stderr)."""
    data = stdin if stdin is not None else (token + "\n").encode()
    r = subprocess.run([binary("ocp-proxy"), "hash-token"], input=data,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


def new_token():
    """A fresh random token (registered as a secret) and its token_sha256 hex."""
    tok = secrets.token_urlsafe(32)
    add_secret(tok)
    rc, out, err = hash_token(tok)
    assert_eq(rc, 0, "hash-token exit code")
    m = re.fullmatch(r"token_sha256 = ([0-9a-f]{64})\n", out)
    assert_true(m, "hash-token prints exactly 'token_sha256 = <64 lowercase hex>'")
    assert_eq(m.group(1), hashlib.sha256(tok.encode()).hexdigest(), "hash-token value")
    return tok, m.group(1)


def bearer(tok):
    return {"Authorization": "Bearer " + tok}


def ok(resp, what):
    """A relayed upstream success: 200 with success true."""
    status, h, body = resp
    if status != 200:
        raise AssertionError("%s: expected HTTP 200, got %d (error name %r, message %r)"
                             % (what, status, error_name(body), _message(body)))
    assert_eq(envelope(body).get("success"), True, what + " success")
    return resp


def _message(body):
    try:
        return json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return None


def refused(resp, status, name, what, rule=None):
    """The proxy's own error envelope; rule: text the message must contain."""
    st, h, body = resp
    if st is None:
        raise AssertionError("%s: expected %d %s, got no answer (%s)" % (what, status, name, h))
    if st != status or error_name(body) != name:
        raise AssertionError("%s: expected %d %s, got %d %r (message %r)"
                             % (what, status, name, st, error_name(body), _message(body)))
    env = envelope(body)
    assert_eq(env.get("success"), False, what + " success")
    assert_eq(env["error"].get("code"), status, what + " error.code")
    assert_eq(h.get("x-request-id"), env.get("requestId"), what + " X-Request-Id")
    if rule is not None and rule not in env["error"]["message"]:
        raise AssertionError("%s: message %r does not name %r"
                             % (what, env["error"]["message"], rule))
    return env


def parse_http(data):
    """(status, {lowercased: value}, body) of one raw HTTP/1.1 response."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert_true(sep, "no complete response head (%d bytes received)" % len(data))
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    h = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        h[k.strip().lower()] = v.strip()
    n = int(h.get("content-length", len(rest)))
    return int(parts[1]), h, rest[:n]


def raw_post(target, path, body=b"{}", extra=b""):
    """A hand-built POST (path sent byte for byte); the parsed response."""
    req = (b"POST " + path + b" HTTP/1.1\r\nHost: localhost\r\n"
           b"Content-Type: application/json\r\n" + extra +
           b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
    return parse_http(raw(target, req))


def no_token_in(text, tok, what):
    assert_not_contains(text, tok, what)


# ------------------------------------------------------------------ children

def as_user(uid, gid, groups, fn, timeout=20.0):
    """Run fn() in a forked child with the given uid, primary gid and
    supplementary groups; returns its JSON-able result.  An exception in the
    child comes back as {"error": "..."}."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                     # child
        code = 0
        try:
            os.close(r)
            for s in (signal.SIGTERM, signal.SIGHUP):
                signal.signal(s, signal.SIG_DFL)     # never the harness cleanup
            signal.alarm(int(timeout) + 1)
            os.setgroups(list(groups))
            os.setgid(gid)
            os.setuid(uid)
            res = {"ok": fn()}
        except BaseException as e:                   # noqa: BLE001
            res = {"error": "%s: %s" % (type(e).__name__, e)}
        try:
            os.write(w, json.dumps(res).encode())
        except BaseException:                        # noqa: BLE001
            code = 1
        os._exit(code)
    os.close(w)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError("child uid %d did not finish in %.0f s" % (uid, timeout))
            rd, _, _ = select.select([r], [], [], left)
            if not rd:
                continue
            b = os.read(r, 65536)
            if not b:
                break
            chunks.append(b)
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    data = b"".join(chunks)
    assert_true(data, "child uid %d returned nothing" % uid)
    return json.loads(data)


def calls_fn(target, calls):
    """A function for as_user: each (path, body[, headers]) as one request on
    its own connection, head and body in one write (see
    refusal_answer_reaches_a_client_sending_the_body_late for why); a list of
    [status, headers, body text] or [None, error]."""
    def fn():
        out = []
        for c in calls:
            path, body = c[0], c[1].encode()
            extra = b"".join(b"%s: %s\r\n" % (k.encode(), v.encode())
                             for k, v in (c[2] if len(c) > 2 else {}).items())
            try:
                st, h, b = raw_post(target, path.encode(), body, extra)
                out.append([st, h, b.decode("latin-1")])
            except OSError as e:
                out.append([None, "%s: %s" % (type(e).__name__, e.strerror or e)])
            except AssertionError as e:        # no complete answer
                out.append([None, str(e)])
        return out
    return fn


def run_as(uid, gid, groups, target, calls):
    """[(status, headers, body bytes) or (None, error, None)] of calls made as uid."""
    res = as_user(uid, gid, groups, calls_fn(target, calls))
    if "error" in res:
        raise AssertionError("child uid %d failed: %s" % (uid, res["error"]))
    return [(r[0], r[1], r[2].encode("latin-1")) if r[0] is not None else (None, r[1], None)
            for r in res["ok"]]


# ------------------------------------------------------------------ 1 socket

@test
def unix_socket_has_socket_mode_and_group():
    need_root()
    s = sim()
    gname, gid = socket_group()
    st = Setup(s)
    d = public_dir()
    path = os.path.join(d, "ocp.sock")
    # a stale socket from an earlier run is replaced
    old = socket.socket(socket.AF_UNIX)
    old.bind(path)
    old.close()
    os.chmod(path, 0o600)   # so that every mode seen below is the proxy's or narrower
    seen = []
    stop = threading.Event()

    def watch():           # every mode/group the path shows while the proxy starts
        while not stop.is_set():
            try:
                sb = os.lstat(path)
                seen.append((stat.S_IMODE(sb.st_mode), sb.st_gid, sb.st_ino))
            except FileNotFoundError:
                pass
    th = threading.Thread(target=watch, daemon=True)
    th.start()
    try:
        p = st.start(listen={"address": "unix:" + path, "socket_mode": "0660",
                             "socket_group": gname})
    finally:
        stop.set()
        th.join(5)
    try:
        assert_eq(p.addr, "unix:" + path, "listening address")
        sb = os.lstat(path)
        assert_true(stat.S_ISSOCK(sb.st_mode), "the path is a socket")
        assert_eq(oct(stat.S_IMODE(sb.st_mode)), "0o660", "socket mode")
        assert_eq(sb.st_gid, gid, "socket group (%s)" % gname)
        for mode, g, ino in seen:
            if ino == sb.st_ino:
                assert_true(mode & ~0o660 == 0,
                            "socket never more open than 0660 (saw %o)" % mode)
        ok(request(p.target, "/api-gateway/test-signature", b"{}"), "root over the socket")
    finally:
        assert_eq(st.stop(), 0, "exit code")
    # a numeric socket_group and a narrower mode
    st2 = Setup(s)
    p = st2.start(listen={"address": "unix:" + path, "socket_mode": "0600",
                          "socket_group": str(gid)})
    try:
        sb = os.lstat(path)
        assert_eq(oct(stat.S_IMODE(sb.st_mode)), "0o600", "socket mode 0600")
        assert_eq(sb.st_gid, gid, "numeric socket_group")
    finally:
        assert_eq(st2.stop(), 0, "exit code")


@test
def world_writable_socket_mode_refused():
    s = sim()
    st = Setup(s)
    d = public_dir()
    path = os.path.join(d, "ocp.sock")
    for mode in ("0666", "0662", "0777"):
        rc, out, err = st.check(listen={"address": "unix:" + path, "socket_mode": mode})
        assert_true(rc != 0, "-t accepts socket_mode %s" % mode)
        assert_true("socket_mode" in err and "world-writable" in err,
                    "-t names the world-writable socket_mode (%s): %r" % (mode, err[-300:]))
    conf = st.write_conf(listen={"address": "unix:" + path, "socket_mode": "0666"})
    r = subprocess.run([binary("ocp-proxy"), "-c", conf], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=15)
    err = r.stderr.decode("utf-8", "replace")
    assert_true(r.returncode != 0, "the proxy starts with socket_mode 0666")
    assert_true("world-writable" in err, "start names the world-writable mode")
    assert_true("listening on" not in err, "nothing listened")
    assert_true(not os.path.exists(path), "no socket file was created")


@test
def socket_in_a_world_writable_directory_refused():
    # anyone could unlink the socket there and listen in its place
    s = sim()
    st = Setup(s)
    d = public_dir()
    os.chmod(d, 0o777)
    path = os.path.join(d, "ocp.sock")
    rc, out, err = st.check(listen={"address": "unix:" + path})
    assert_true(rc != 0, "-t accepts a socket in a 0777 directory")
    assert_true(re.search(r":\d+: \[listen\] address: .*writable by everyone", err),
                "-t names the directory at the address line: %r" % err[-300:])
    conf = st.write_conf(listen={"address": "unix:" + path})
    r = subprocess.run([binary("ocp-proxy"), "-c", conf], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=15)
    err = r.stderr.decode("utf-8", "replace")
    assert_true(r.returncode != 0, "the proxy starts with its socket in a 0777 directory")
    assert_true("writable by everyone" in err, "start names the directory")
    assert_true(not os.path.exists(path), "no socket file was created")
    # below such a directory: anyone may rename the subdirectory away and
    # put one of their own in its place
    sub = os.path.join(d, "sub")
    os.mkdir(sub, 0o755)
    rc, out, err = st.check(listen={"address": "unix:" + os.path.join(sub, "ocp.sock")})
    assert_true(rc != 0, "-t accepts a socket below a 0777 directory")
    assert_true("the directory %s is writable by everyone" % d in err,
                "-t names the ancestor: %r" % err[-300:])
    # reached through a symbolic link from a safe directory: the same
    e = public_dir()
    os.symlink(sub, os.path.join(e, "ln"))
    rc, out, err = st.check(listen={"address": "unix:" + os.path.join(e, "ln", "ocp.sock")})
    assert_true(rc != 0, "-t accepts a link into a directory below a 0777 one")
    assert_true("the directory %s is writable by everyone" % d in err,
                "-t names the resolved ancestor: %r" % err[-300:])
    # the sticky bit (as on /tmp) keeps others from removing it: accepted
    os.chmod(d, 0o1777)
    rc, out, err = st.check(listen={"address": "unix:" + path})
    assert_eq(rc, 0, "-t with a sticky 1777 directory: %s" % err[-300:])
    rc, out, err = st.check(listen={"address": "unix:" + os.path.join(e, "ln", "ocp.sock")})
    assert_eq(rc, 0, "-t below a sticky 1777 directory: %s" % err[-300:])


# ------------------------------------------------------------------ 2 unix uid

UNIX_CALLERS = """
[caller.billing]
uid = %(billing)d
profiles = merchant
allow = /api-gateway/make-invoice, /api-gateway/get-invoice, /api-gateway/orders*

[caller.payouts]
uid = %(payouts)d
allow = /api-gateway/make-withdrawal
field_max = /api-gateway/make-withdrawal:amount=1000.00
field_in = /api-gateway/make-withdrawal:currency=USDT|USDC

[caller.ops]
gid = %(gid_ops)d
allow = /api-gateway/get-invoices

[caller.auditor]
uid = %(auditor)d
gid = %(gid_ops)d
allow = /api-gateway/get-invoice

[caller.reports]
token_sha256 = %(token)s
""".strip() + "\n"


def unix_setup(s, token_hex, **over):
    gname, sgid = socket_group()
    d = public_dir()
    path = os.path.join(d, "ocp.sock")
    st = Setup(s)
    callers = UNIX_CALLERS % {"billing": UID_BILLING, "payouts": UID_PAYOUTS,
                              "gid_ops": GID_OPS, "auditor": UID_AUDITOR,
                              "token": token_hex}
    over.setdefault("listen", {})
    over["listen"].update({"address": "unix:" + path, "socket_mode": "0660",
                           "socket_group": gname})
    st.start(callers, **over)
    return st, sgid


@test
def unix_callers_by_uid_and_gid():
    need_root()
    s = sim()
    tok, tok_hex = new_token()
    st, sgid = unix_setup(s, tok_hex)
    p = st.proxy
    t = p.target
    try:
        err = p.stderr_text()
        for line in ("caller billing: uid=%d" % UID_BILLING,
                     "caller payouts: uid=%d" % UID_PAYOUTS,
                     "caller ops: gid=%d" % GID_OPS,
                     "caller auditor: uid=%d,gid=%d" % (UID_AUDITOR, GID_OPS),
                     "caller reports: token=%s" % tok_hex[:16]):
            assert_true(line in err, "start-up log lists %r" % line)
        assert_true("any local process" not in err, "no open-default warning with callers")

        wd = "/api-gateway/make-withdrawal"
        forwarded = []          # paths the sim must have seen, in order

        # -- billing (uid 1001)
        r = run_as(UID_BILLING, GID_OTHER, [sgid], t, [
            ("/api-gateway/make-invoice", '{"amount":"5","currency":"USDT"}'),
            ("/api-gateway/get-invoice", '{"id":"x"}'),
            ("/api-gateway/orders", "{}"),
            (wd, '{"amount":"1","currency":"USDT"}'),
            ("/api-gateway/get-invoices", "{}"),
            ("/partner/api/get-users", "{}"),
            ("/api-gateway/make-invoice", "{}", bearer(tok)),   # a token on unix: ignored
        ])
        for i, what in enumerate(("make-invoice", "get-invoice", "orders")):
            ok(r[i], "billing " + what)
        forwarded += ["/api-gateway/make-invoice", "/api-gateway/get-invoice",
                      "/api-gateway/orders"]
        refused(r[3], 403, "PROXY_FORBIDDEN", "billing make-withdrawal",
                "path not in allow list")
        refused(r[4], 403, "PROXY_FORBIDDEN", "billing get-invoices", "path not in allow list")
        refused(r[5], 403, "PROXY_FORBIDDEN", "billing partner", "profile not allowed")
        ok(r[6], "billing with a bearer header over unix (ignored)")
        forwarded.append("/api-gateway/make-invoice")
        assert_true("www-authenticate" not in r[3][1], "no WWW-Authenticate on a 403")

        # -- payouts (uid 1002)
        cases = [
            ('{"amount":"10.50","currency":"USDT"}', 200, None),
            ('{"amount":10.5,"currency":"USDC"}', 200, None),
            ('{"amount":"1000.00","currency":"USDT"}', 200, None),
            ('{"amount":"1000","currency":"USDT","memo":{"amount":"99999"}}', 200, None),
            ('{"amount":"1000.01","currency":"USDT"}', 403, "field above field_max"),
            ('{"amount":"1000.001","currency":"USDT"}', 403, "field above field_max"),
            ('{"amount":1000.0000000000001,"currency":"USDT"}', 403, "field above field_max"),
            ('{"amount":"1e3","currency":"USDT"}', 403, "field not a plain decimal"),
            ('{"amount":1e3,"currency":"USDT"}', 403, "field not a plain decimal"),
            ('{"amount":"0010","currency":"USDT"}', 403, "field not a plain decimal"),
            ('{"amount":true,"currency":"USDT"}', 403, "field not a plain decimal"),
            ('{"amount":"5","currency":"BTC"}', 403, "field not in field_in"),
            ('{"amount":"5","currency":"usdt"}', 403, "field not in field_in"),
            ('{"amount":"5"}', 403, "field missing"),
            ('{"currency":"USDT"}', 403, "field missing"),
            ('{"amount":"5","currency":"USDT","amount":"50000"}', 403, "duplicated member"),
            ('{"am\\u006funt":"5000","currency":"USDT"}', 403, "field above field_max"),
        ]
        calls = [(wd, b) for b, _, _ in cases] + [
            ("/api-gateway/make-withdrawal-async", '{"amount":"1","currency":"USDT"}'),
            ("/api-gateway/make-withdrawal/", '{"amount":"1","currency":"USDT"}'),
            ("/api-gateway/make-invoice", "{}"),
        ]
        r = run_as(UID_PAYOUTS, GID_OTHER, [sgid], t, calls)
        for (body, want, rule), resp in zip(cases, r):
            what = "payouts %s" % body
            if want == 200:
                ok(resp, what)
                forwarded.append(wd)
            else:
                env = refused(resp, 403, "PROXY_FORBIDDEN", what, rule)
                msg = env["error"]["message"]
                assert_true("out of memory" not in msg, what + ": the message names the rule")
                for leak in ("50000", "5000", "BTC", "1e3", "1000.01", "1000.001", "usdt",
                             "0010"):
                    if leak in body:
                        assert_true(leak not in msg,
                                    what + ": the message does not repeat the body")
        n = len(cases)
        refused(r[n], 403, "PROXY_FORBIDDEN", "payouts make-withdrawal-async",
                "path not in allow list")
        refused(r[n + 1], 403, "PROXY_FORBIDDEN", "payouts make-withdrawal/",
                "path not in allow list")
        refused(r[n + 2], 403, "PROXY_FORBIDDEN", "payouts make-invoice",
                "path not in allow list")

        # -- unknown uid 1003 (with and without a valid token: ignored on unix)
        r = run_as(UID_UNKNOWN, GID_OTHER, [sgid], t, [
            ("/api-gateway/make-invoice", "{}"),
            ("/api-gateway/get-invoices", "{}", bearer(tok)),
        ])
        for i in (0, 1):
            refused(r[i], 401, "PROXY_UNKNOWN_CALLER", "unknown uid (%d)" % i)
            assert_true("www-authenticate" not in r[i][1], "no WWW-Authenticate on unix")
        # root (uid 0) is not a caller either
        refused(raw_post(t, b"/api-gateway/get-invoices"), 401, "PROXY_UNKNOWN_CALLER",
                "root over unix")

        # -- gid-identified: uid 1004 with primary gid 1500 is [caller.ops]
        r = run_as(UID_OPS, GID_OPS, [sgid], t, [
            ("/api-gateway/get-invoices", "{}"),
            ("/api-gateway/get-invoice", "{}"),
        ])
        ok(r[0], "ops (gid) get-invoices")
        forwarded.append("/api-gateway/get-invoices")
        refused(r[1], 403, "PROXY_FORBIDDEN", "ops get-invoice", "path not in allow list")
        # gid 1500 only as a supplementary group: not visible, so unknown
        r = run_as(UID_OPS, GID_OTHER, [sgid, GID_OPS], t,
                   [("/api-gateway/get-invoices", "{}")])
        refused(r[0], 401, "PROXY_UNKNOWN_CALLER", "gid only supplementary")
        # uid 1005 + gid 1500: [caller.auditor] (uid+gid) beats [caller.ops] (gid)
        r = run_as(UID_AUDITOR, GID_OPS, [sgid], t, [
            ("/api-gateway/get-invoice", "{}"),
            ("/api-gateway/get-invoices", "{}"),
        ])
        ok(r[0], "auditor get-invoice")
        forwarded.append("/api-gateway/get-invoice")
        refused(r[1], 403, "PROXY_FORBIDDEN", "auditor get-invoices (not ops)",
                "path not in allow list")
        # uid 1005 with another gid: matches nobody
        r = run_as(UID_AUDITOR, GID_OTHER, [sgid], t, [("/api-gateway/get-invoice", "{}")])
        refused(r[0], 401, "PROXY_UNKNOWN_CALLER", "uid 1005 without gid 1500")

        # -- the socket's mode decides who may connect at all
        r = run_as(UID_BILLING, GID_OTHER, [], t, [("/api-gateway/make-invoice", "{}")])
        assert_true(r[0][0] is None and "PermissionError" in r[0][1],
                    "a process outside socket_group cannot connect (got %r)" % (r[0][:2],))

        # -- nothing refused reached the simulator
        assert_eq(sim_paths(s), forwarded, "paths the simulator received")
        for rec in s.records():
            assert_eq(rec["result"], "ok", "sim record result")
            assert_true("authorization" not in rec["headers"], "Authorization not forwarded")
        bodies = [rec["body"] for rec in s.records() if rec["path"] == wd]
        assert_true(any('"amount":10.5,' in b for b in bodies),
                    "the number 10.5 was forwarded as sent")

        # -- audit: every record carries the caller
        recs = st.audit_lines()
        assert_true(recs, "audit lines written")
        want_ids = {"billing": "uid=%d" % UID_BILLING, "payouts": "uid=%d" % UID_PAYOUTS,
                    "ops": "gid=%d,uid=%d" % (GID_OPS, UID_OPS),
                    "auditor": "uid=%d,gid=%d" % (UID_AUDITOR, GID_OPS)}
        named = set()
        for rec in recs:
            if rec.get("phase") not in ("request", "outcome"):
                continue                # the trail's own records (open, ...)
            if rec.get("status") == 401:
                assert_true("caller_name" not in rec, "a 401 record names no caller")
                assert_true(rec["caller"].startswith("unix:uid="), "401 records the peer")
                continue
            name = rec.get("caller_name")
            assert_true(name in want_ids, "record %s/%s has a caller_name (got %r)"
                        % (rec.get("phase"), rec.get("status"), name))
            assert_eq(rec.get("caller_id"), want_ids[name], "caller_id of " + name)
            named.add((name, rec.get("status")))
            assert_true(rec["caller"].startswith("unix:uid="), "caller is the unix peer")
        for want in (("billing", 200), ("billing", 403), ("payouts", 200),
                     ("payouts", 403), ("ops", 200), ("auditor", 403)):
            assert_true(want in named, "audit has a %s %d record" % want)
        no_token_in(st.audit_text(), tok, "audit")
        no_token_in(p.stderr_text(), tok, "stderr")
    finally:
        assert_eq(st.stop(), 0, "exit code")


@test
def refusal_answer_reaches_a_client_sending_the_body_late():
    """A caller refused on the head (401/403/429) must get the answer even if
    its HTTP client writes the body after the head (Python's http.client, and
    others, send them in two writes).  The proxy answers and closes at once,
    without reading the body, so on a unix socket the client's second write
    fails with EPIPE before it ever reads the response."""
    s = sim()
    d = public_dir()
    path = os.path.join(d, "ocp.sock")
    st = Setup(s)
    p = st.start("[caller.billing]\nuid = %d\n" % UID_BILLING,
                 listen={"address": "unix:" + path, "socket_mode": "0600"})
    lost = []
    try:
        for i in range(30):
            try:
                resp = request(p.target, "/api-gateway/get-invoices",
                               b'{"amount":"5","currency":"USDT"}')
                refused(resp, 401, "PROXY_UNKNOWN_CALLER", "root over unix (%d)" % i)
            except OSError as e:
                lost.append(type(e).__name__)
        assert_true(not lost, "%d of 30 refused requests got no answer, only %s: the proxy "
                    "closes without reading the body (client.c client_refuse/"
                    "client_respond close_after, no lingering close)"
                    % (len(lost), sorted(set(lost))))
    finally:
        assert_eq(st.stop(), 0, "exit code")


# ------------------------------------------------------------------ 3 tokens

@test
def hash_token_command():
    tok = "A-b.c_d~e+f/0123456789=="
    rc, out, err = hash_token(tok)
    assert_eq(rc, 0, "exit code")
    assert_eq(out, "token_sha256 = %s\n" % hashlib.sha256(tok.encode()).hexdigest(),
              "hash-token output")
    assert_eq(err, "", "nothing on stderr")
    rc, out2, _ = hash_token(None, stdin=tok.encode())      # no newline: the same
    assert_eq((rc, out2), (0, out), "hash-token without a trailing newline")
    rc, out2, _ = hash_token(None, stdin=(tok + "\r\n").encode())
    assert_eq((rc, out2), (0, out), "hash-token with CRLF")
    bad = ["has space", "", "tab\there", "=abc", "ab=c", "caf\u00e9", "a" * 1025,
           "quote\"x", "comma,x"]
    for b in bad:
        data = (b + "\n").encode()
        rc, out, err = hash_token(None, stdin=data)
        assert_true(rc != 0, "hash-token accepts %r" % b[:20])
        assert_eq(out, "", "nothing on stdout for %r" % b[:20])
        assert_true("token" in err, "an explanation on stderr")
        if len(b) > 3:
            assert_true(b not in err, "the refused token is not echoed")
    rc, out, _ = hash_token(None, stdin=b"a" * 1024)
    assert_eq(rc, 0, "1024 characters accepted")


def tcp_callers(tok_hex, tok2_hex=None, extra=""):
    out = ("[caller.reports]\ntoken_sha256 = %s\nprofiles = merchant\n"
           "allow = /api-gateway/get-invoices, /api-gateway/get-invoice\n\n"
           "[caller.root]\nuid = 0\n\n" % tok_hex)
    if tok2_hex:
        out += ("[caller.payouts]\ntoken_sha256 = %s\n"
                "allow = /api-gateway/make-withdrawal\n"
                "field_max = /api-gateway/make-withdrawal:amount=1000.00\n\n" % tok2_hex)
    return out + extra


@test
def tcp_bearer_tokens():
    s = sim()
    tok, tok_hex = new_token()
    st = Setup(s)
    p = st.start(tcp_callers(tok_hex))
    t = p.target
    gi = "/api-gateway/get-invoices"
    try:
        ok(request(t, gi, b"{}", headers=bearer(tok)), "good token")
        ok(request(t, gi, b"{}", headers={"Authorization": "bearer   " + tok}),
           "scheme in any case, several spaces")
        refused(request(t, "/api-gateway/make-invoice", b"{}", headers=bearer(tok)),
                403, "PROXY_FORBIDDEN", "good token, path not allowed", "path not in allow list")
        refused(request(t, "/partner/api/get-users", b"{}", headers=bearer(tok)),
                403, "PROXY_FORBIDDEN", "good token, partner", "profile not allowed")
        wrong = secrets.token_urlsafe(32)
        for hdrs, what in (({"Authorization": "Bearer " + wrong}, "wrong token"),
                           ({}, "missing token"),
                           ({"Authorization": "Bearer"}, "empty bearer"),
                           ({"Authorization": "Bearer " + tok + "x"}, "token + x"),
                           ({"Authorization": "Bearer " + tok[:-1]}, "token - 1"),
                           ({"Authorization": "Basic " + tok}, "Basic scheme"),
                           ({"Authorization": tok}, "no scheme"),
                           ({"Authorization": "Bearer " + tok + " x"}, "trailing junk"),
                           ({"X-Api-Token": tok}, "another header")):
            resp = request(t, gi, b"{}", headers=hdrs)
            refused(resp, 401, "PROXY_UNKNOWN_CALLER", what)
            assert_eq(resp[1].get("www-authenticate"), "Bearer", what + " WWW-Authenticate")
        # root is [caller.root] (uid = 0) but a uid caller never matches on TCP
        resp = request(t, gi, b"{}")
        refused(resp, 401, "PROXY_UNKNOWN_CALLER", "uid caller over TCP")
        # two Authorization headers: 400, even if both carry the good token
        data = raw_post(t, gi.encode(), extra=b"Authorization: Bearer " + tok.encode() +
                        b"\r\nAuthorization: Bearer " + tok.encode() + b"\r\n")
        assert_eq(data[0], 400, "two Authorization headers")
        assert_eq(error_name(data[2]), "PROXY_BAD_REQUEST", "two Authorization headers name")
        data = raw_post(t, gi.encode(), extra=b"Authorization: Bearer " + tok.encode() +
                        b"\r\nauthorization: Bearer " + wrong.encode() + b"\r\n")
        assert_eq(data[0], 400, "two Authorization headers (case differs)")
        # keep-alive: the token is checked on every request of a connection
        c = harness.connect(t)
        try:
            ok(request(t, gi, b"{}", headers=bearer(tok), conn=c), "keep-alive 1")
            refused(request(t, gi, b"{}", conn=c), 401, "PROXY_UNKNOWN_CALLER",
                    "keep-alive 2 without token")
        finally:
            c.close()
        # the Authorization header is never forwarded
        recs = s.records()
        assert_eq([r["path"] for r in recs], [gi] * 3, "only the good requests forwarded")
        for rec in recs:
            assert_true("authorization" not in rec["headers"], "Authorization not forwarded")
            assert_true(tok not in json.dumps(rec), "the token is nowhere in the upstream request")
        no_token_in(st.audit_text(), tok, "audit")
        no_token_in(p.stderr_text(), tok, "stderr")
        no_token_in(p.stderr_text(), wrong, "stderr (wrong token)")
        no_token_in(st.audit_text(), wrong, "audit (wrong token)")
        no_token_in(st.audit_text(), hashlib.sha256(wrong.encode()).hexdigest()[:16],
                    "audit (hash of the wrong token)")
    finally:
        assert_eq(st.stop(), 0, "exit code")


@test
def unknown_caller_is_refused_before_routing():
    # an unknown caller learns nothing of the routes: 401 for any path and method
    s = sim()
    tok, tok_hex = new_token()
    st = Setup(s)
    p = st.start(tcp_callers(tok_hex))
    t = p.target
    auth = b"Authorization: Bearer " + tok.encode() + b"\r\n"
    try:
        for path, what in ((b"/nowhere", "no route"), (b"/api-gateway//get-invoices",
                           "bad path"), (b"/api-gateway/get-invoices?x=1", "query")):
            st_, h, body = raw_post(t, path)
            assert_eq((st_, error_name(body)), (401, "PROXY_UNKNOWN_CALLER"), what)
            assert_eq(h.get("www-authenticate"), "Bearer", what + " WWW-Authenticate")
        st_, h, body = parse_http(raw(t, b"GET /api-gateway/get-invoices HTTP/1.1\r\n"
                                       b"Host: localhost\r\nConnection: close\r\n\r\n"))
        assert_eq((st_, error_name(body)), (401, "PROXY_UNKNOWN_CALLER"), "GET")
        # a known caller gets the routing answers as before
        st_, h, body = raw_post(t, b"/nowhere", extra=auth)
        assert_eq((st_, error_name(body)), (404, "PROXY_NO_ROUTE"), "known caller, no route")
        st_, h, body = raw_post(t, b"/api-gateway//get-invoices", extra=auth)
        assert_eq((st_, error_name(body)), (400, "PROXY_BAD_TARGET"), "known caller, bad path")
        assert_eq(sim_paths(s), [], "nothing was forwarded")
        recs = [r for r in st.audit_lines() if r.get("status") == 401]
        assert_eq(len(recs), 4, "every 401 audited")
        for r in recs:
            assert_true("caller_name" not in r, "401: no caller_name")
    finally:
        assert_eq(st.stop(), 0, "exit code")


# ------------------------------------------------------------------ 4 paths

@test
def path_tricks_refused_never_forwarded():
    s = sim()
    tok, tok_hex = new_token()
    st = Setup(s)
    callers = ("[caller.billing]\ntoken_sha256 = %s\n"
               "allow = /api-gateway/make-invoice, /api-gateway/orders*\n" % tok_hex)
    p = st.start(callers)
    t = p.target
    auth = b"Authorization: Bearer " + tok.encode() + b"\r\n"
    try:
        bad_target = [
            b"/api-gateway/make-invoice/../make-withdrawal",
            b"/api-gateway/orders/../make-withdrawal",
            b"/api-gateway/orders/../../api-gateway/make-withdrawal",
            b"//api-gateway/make-withdrawal",
            b"//api-gateway/make-invoice",
            b"/api-gateway//make-invoice",
            b"/api-gateway/./make-invoice",
            b"/api-gateway/make-invoice/.",
            b"/api-gateway/make-invoice/..",
            b"/api-gateway/%2e%2e/api-gateway/make-withdrawal",
            b"/api-gateway/make-invoice/%2e%2e/make-withdrawal",
            b"/api-gateway/orders/%2E%2E/make-withdrawal",
            b"/api-gateway/make-%69nvoice",
            b"/api-gateway/make-withdrawal%00",
            b"/api-gateway/make-invoice?path=/api-gateway/make-withdrawal",
            b"/api-gateway/make-invoice?",
            b"/api-gateway/make-withdrawal?x=/api-gateway/make-invoice",
            b"/api-gateway/make-invoice#frag",
            b"/api-gateway/orders\\..\\make-withdrawal",
            b"/api-gateway/make-invoice\\",
        ]
        for path in bad_target:
            st_, h, body = raw_post(t, path, extra=auth)
            assert_true(st_ in (400, 403), "%r: expected 400/403, got %d" % (path, st_))
            if st_ == 400:
                assert_eq(error_name(body), "PROXY_BAD_TARGET", "%r error name" % path)
            else:
                assert_eq(error_name(body), "PROXY_FORBIDDEN", "%r error name" % path)
        not_allowed = [
            b"/api-gateway/make-invoice/",
            b"/api-gateway/make-withdrawal",
            b"/api-gateway/make-withdrawal/",
            b"/api-gateway/Make-Invoice",
            b"/api-gateway/make-invoice;x",
            b"/api-gateway/make-invoice-x",
        ]
        for path in not_allowed:
            st_, h, body = raw_post(t, path, extra=auth)
            assert_eq((st_, error_name(body)), (403, "PROXY_FORBIDDEN"), "%r" % path)
        st_, h, body = raw_post(t, b"/API-GATEWAY/make-invoice", extra=auth)
        assert_true(st_ in (403, 404), "upper-case route: %d" % st_)
        # the catalogue rule also closes the prefix item to non-catalogue paths
        for path in (b"/api-gateway/orders/", b"/api-gateway/orders-list",
                     b"/api-gateway/orders/x"):
            st_, h, body = raw_post(t, path, extra=auth)
            assert_eq((st_, error_name(body)), (403, "PROXY_FORBIDDEN"), "%r" % path)
            assert_true("path not in the API catalogue" in _message(body),
                        "%r names the catalogue rule" % path)
        # absolute-form targets are not a way around either
        st_, h, body = raw_post(t, b"http://localhost/api-gateway/make-withdrawal", extra=auth)
        assert_eq(st_, 400, "absolute-form target")
        assert_eq(sim_paths(s), [], "nothing was forwarded")
        # the genuine path still works
        ok(raw_post(t, b"/api-gateway/make-invoice", extra=auth), "plain path")
        ok(raw_post(t, b"/api-gateway/orders", extra=auth), "prefix item")
        assert_eq(sim_paths(s), ["/api-gateway/make-invoice", "/api-gateway/orders"],
                  "only the plain paths forwarded")
    finally:
        assert_eq(st.stop(), 0, "exit code")


# ------------------------------------------------------------------ 5 catalogue

@test
def catalogue_rule_for_named_callers():
    s = sim()
    toks = {n: new_token() for n in ("wide", "exact", "beta", "none")}
    callers = (
        "[caller.wide]\ntoken_sha256 = %s\nallow = /api-gateway/*\n\n"
        "[caller.exact]\ntoken_sha256 = %s\n"
        "allow = /api-gateway/new-endpoint, /api-gateway/get-invoices\n\n"
        "[caller.beta]\ntoken_sha256 = %s\nallow = /api-gateway/beta/*\n\n"
        "[caller.none]\ntoken_sha256 = %s\n"
        % tuple(toks[n][1] for n in ("wide", "exact", "beta", "none")))
    st = Setup(s)
    p = st.start(callers)
    t = p.target

    def call(who, path):
        return request(t, path, b"{}", headers=bearer(toks[who][0]))
    try:
        new = "/api-gateway/new-endpoint"
        for who in ("wide", "none"):
            refused(call(who, new), 403, "PROXY_FORBIDDEN", who + " non-catalogue",
                    "path not in the API catalogue")
            refused(call(who, "/api-gateway/orders-list"), 403, "PROXY_FORBIDDEN",
                    who + " orders-list", "path not in the API catalogue")
            ok(call(who, "/api-gateway/get-invoices"), who + " catalogue path")
        refused(call("none", "/partner/api/new-thing"), 403, "PROXY_FORBIDDEN",
                "none partner non-catalogue", "path not in the API catalogue")
        ok(call("none", "/partner/api/get-users"), "none partner catalogue path")
        refused(call("beta", "/api-gateway/get-invoices"), 403, "PROXY_FORBIDDEN",
                "beta catalogue path", "path not in allow list")
        refused(call("exact", "/api-gateway/new-endpoint2"), 403, "PROXY_FORBIDDEN",
                "exact: another non-catalogue path", None)
        assert_eq(sim_paths(s), ["/api-gateway/get-invoices", "/api-gateway/get-invoices",
                                 "/partner/api/get-users"], "forwarded so far")
        s.reset()
        # named exactly, or under a prefix dedicated to non-catalogue paths: forwarded,
        # and the simulator's 404 NOT_FOUND envelope is relayed
        for who, path in (("exact", new), ("beta", "/api-gateway/beta/x")):
            st_, h, body = call(who, path)
            assert_eq(st_, 404, who + " relayed status")
            env = envelope(body)
            assert_eq(env.get("success"), False, who + " relayed success")
            assert_eq(error_name(body), "NOT_FOUND", who + " relayed error name")
        ok(call("exact", "/api-gateway/get-invoices"), "exact catalogue path")
        assert_eq(sim_paths(s), [new, "/api-gateway/beta/x", "/api-gateway/get-invoices"],
                  "forwarded")
    finally:
        assert_eq(st.stop(), 0, "exit code")


# ------------------------------------------------------------------ 6 limits

@test
def rate_limit_token_bucket():
    s = sim()
    tok, tok_hex = new_token()
    st = Setup(s)
    p = st.start(tcp_callers(tok_hex).replace(
        "/api-gateway/get-invoice\n",
        "/api-gateway/get-invoice\nrate_per_s = 2\nburst = 3\n", 1))
    t = p.target
    gi = "/api-gateway/get-invoices"
    try:
        t0 = time.monotonic()
        for i in range(3):
            ok(request(t, gi, b"{}", headers=bearer(tok)), "burst request %d" % (i + 1))
        resp = request(t, gi, b"{}", headers=bearer(tok))
        elapsed = time.monotonic() - t0
        if elapsed >= 0.45 and os.environ.get("OCP_PROXY_WRAPPER"):
            raise Skip("under %s the burst took %.2f s, longer than the bucket's refill: "
                       "the timing cannot be judged" % (os.environ["OCP_PROXY_WRAPPER"].split()[0],
                                                        elapsed))
        assert_true(elapsed < 0.45, "the burst took %.2f s: too slow to test" % elapsed)
        refused(resp, 429, "PROXY_RATE_LIMITED", "4th request", "rate_per_s")
        ra = resp[1].get("retry-after", "")
        assert_true(ra.isdigit() and int(ra) >= 1, "Retry-After >= 1 (got %r)" % ra)
        # refusals before the bucket take no token; a 401 neither
        refused(request(t, gi, b"{}"), 401, "PROXY_UNKNOWN_CALLER", "no token while limited")
        assert_eq(len(s.records()), 3, "the 429 was not forwarded")
        time.sleep(int(ra))
        ok(request(t, gi, b"{}", headers=bearer(tok)), "after Retry-After")
        rid = None
        # the audit record of the 429 names the caller
        for rec in st.audit_lines():
            if rec.get("status") == 429:
                rid = rec["id"]
                assert_eq(rec.get("caller_name"), "reports", "429 caller_name")
                assert_eq(rec.get("caller_id"), "token=" + tok_hex[:16], "429 caller_id")
                assert_eq(rec.get("error"), "PROXY_RATE_LIMITED", "429 error")
        assert_true(rid, "a 429 audit record")
    finally:
        assert_eq(st.stop(), 0, "exit code")


@test
def refused_requests_take_no_rate_token():
    """docs/callers.md: 'A request refused at any step sends nothing upstream,
    uses no nonce and takes no rate token' -- including step 3, field limits."""
    s = sim()
    tok, tok_hex = new_token()
    tok2, tok2_hex = new_token()
    st = Setup(s)
    p = st.start(tcp_callers(tok_hex, tok2_hex).replace(
        "amount=1000.00\n", "amount=1000.00\nrate_per_s = 0.01\nburst = 2\n", 1))
    t = p.target
    wd = "/api-gateway/make-withdrawal"
    h = bearer(tok2)
    try:
        # step 2 (path) refusals: no token taken
        for i in range(3):
            refused(request(t, "/api-gateway/make-invoice", b"{}", headers=h), 403,
                    "PROXY_FORBIDDEN", "path refusal %d" % i, "path not in allow list")
        # step 3 (field limits) refusals: must take no token either
        for i in range(2):
            refused(request(t, wd, b'{"amount":"5000"}', headers=h), 403,
                    "PROXY_FORBIDDEN", "field refusal %d" % i, "field above field_max")
        assert_eq(sim_paths(s), [], "nothing forwarded")
        # the bucket (burst 2) must still be full
        for i in range(2):
            resp = request(t, wd, b'{"amount":"5"}', headers=h)
            if resp[0] == 429:
                raise AssertionError(
                    "valid request %d after 2 field-limit refusals got 429 %s: the "
                    "refused requests took rate tokens (client_check_limits runs on the "
                    "head, before request_check_fields)" % (i + 1, error_name(resp[2])))
            ok(resp, "valid request %d" % (i + 1))
        refused(request(t, wd, b'{"amount":"5"}', headers=h), 429, "PROXY_RATE_LIMITED",
                "third valid request")
    finally:
        assert_eq(st.stop(), 0, "exit code")


@test
def concurrency_limit():
    s = sim()
    tok, tok_hex = new_token()
    st = Setup(s)
    # rate: 3 tokens, hardly any refill -- a concurrency refusal must not take one
    p = st.start(tcp_callers(tok_hex).replace(
        "/api-gateway/get-invoice\n",
        "/api-gateway/get-invoice\nmax_concurrent = 2\nrate_per_s = 0.01\nburst = 3\n", 1))
    t = p.target
    gi = "/api-gateway/get-invoices"
    results = [None, None]

    def slow(i):
        try:
            results[i] = request(t, gi, b"{}", headers=bearer(tok), timeout=15)
        except Exception as e:          # noqa: BLE001
            results[i] = e
    try:
        s.fault("delay", ms=1500)
        ths = [threading.Thread(target=slow, args=(i,)) for i in range(2)]
        for th in ths:
            th.start()
        wait_for(lambda: len(s.records()) == 2, 5.0, "two requests at the simulator")
        resp = request(t, gi, b"{}", headers=bearer(tok))
        refused(resp, 429, "PROXY_TOO_MANY_CONCURRENT", "third concurrent", "max_concurrent")
        assert_eq(resp[1].get("retry-after"), "1", "Retry-After")
        for th in ths:
            th.join(15)
        for i in (0, 1):
            assert_true(isinstance(results[i], tuple), "slow request %d: %r" % (i, results[i]))
            ok(results[i], "slow request %d" % i)
        s.fault("none")
        ok(request(t, gi, b"{}", headers=bearer(tok)),
           "after they finished (and the 429 took no rate token)")
        refused(request(t, gi, b"{}", headers=bearer(tok)), 429, "PROXY_RATE_LIMITED",
                "bucket now empty")
        assert_eq(len(s.records()), 3, "forwarded: the two slow ones and one more")
    finally:
        s.fault("none")
        assert_eq(st.stop(), 0, "exit code")


# ------------------------------------------------------------------ 7 audit

@test
def audit_names_caller_on_every_record():
    s = sim()
    tok, tok_hex = new_token()
    tok2, tok2_hex = new_token()
    st = Setup(s)
    p = st.start(tcp_callers(tok_hex, tok2_hex).replace(
        "amount=1000.00\n", "amount=1000.00\nrate_per_s = 0.01\nburst = 2\n", 1))
    t = p.target
    wd = "/api-gateway/make-withdrawal"
    try:
        got = {}
        got["ok"] = ok(request(t, wd, b'{"amount":"5"}', headers=bearer(tok2)), "200")
        got["path"] = request(t, "/api-gateway/get-invoices", b"{}", headers=bearer(tok2))
        got["field"] = request(t, wd, b'{"amount":"5000"}', headers=bearer(tok2))
        got["ok2"] = request(t, wd, b'{"amount":"6"}', headers=bearer(tok2))
        got["rate"] = request(t, wd, b'{"amount":"7"}', headers=bearer(tok2))
        got["bad"] = request(t, wd, b"{}", headers=bearer(secrets.token_hex(16)))
        got["none"] = request(t, wd, b"{}")
        got["reports"] = request(t, "/api-gateway/get-invoices", b"{}", headers=bearer(tok))
        statuses = {k: v[0] for k, v in got.items()}
        assert_eq(statuses["path"], 403, "path refusal")
        assert_eq(statuses["field"], 403, "field refusal")
        assert_eq(statuses["bad"], 401, "bad token")
        assert_eq(statuses["none"], 401, "no token")
        assert_eq(statuses["reports"], 200, "reports")
        assert_true(429 in (statuses["ok2"], statuses["rate"]), "a 429 among %r" % statuses)
        fp2 = "token=" + tok2_hex[:16]
        for k, (status, h, body) in got.items():
            recs = st.audit_of(h["x-request-id"])
            for rec in recs:
                what = "%s %s record" % (k, rec.get("phase"))
                assert_eq(rec.get("status", status), status, what + " status")
                if status == 401:
                    assert_true("caller_name" not in rec, what + ": no caller_name")
                    assert_true(re.match(r"^127\.0\.0\.1:\d+$", rec["caller"]),
                                what + ": peer address")
                else:
                    want = ("reports", "token=" + tok_hex[:16]) if k == "reports" \
                        else ("payouts", fp2)
                    assert_eq((rec.get("caller_name"), rec.get("caller_id")), want,
                              what + " caller")
            if status == 200:
                assert_eq(sorted(r["phase"] for r in recs), ["outcome", "request"],
                          k + " has request and outcome records")
        text = st.audit_text() + p.stderr_text()
        no_token_in(text, tok, "audit + stderr")
        no_token_in(text, tok2, "audit + stderr")
        assert_true(("caller payouts: " + fp2) in p.stderr_text(), "start-up log line")
    finally:
        assert_eq(st.stop(), 0, "exit code")


@test
def audit_401_records_token_identity():
    """docs/callers.md, 'The audit record names the caller': an unknown token
    is recorded as token=unknown, a missing one as token=none."""
    s = sim()
    tok, tok_hex = new_token()
    st = Setup(s)
    p = st.start(tcp_callers(tok_hex))
    try:
        for hdrs, want in (({}, "token=none"),
                           (bearer(secrets.token_hex(16)), "token=unknown")):
            status, h, body = request(p.target, "/api-gateway/get-invoices", b"{}",
                                      headers=hdrs)
            assert_eq(status, 401, want + " status")
            rec = st.audit_of(h["x-request-id"])[-1]
            assert_true("caller_name" not in rec, "no caller_name on a 401")
            assert_eq(rec.get("caller_id"), want, "caller_id of a 401 (docs/callers.md)")
    finally:
        assert_eq(st.stop(), 0, "exit code")


# ------------------------------------------------------------------ 8 default

@test
def open_default_without_callers():
    s = sim()
    d = public_dir()
    path = os.path.join(d, "ocp.sock")
    st = Setup(s)
    lst = {"address": "unix:" + path, "socket_mode": "0600"}
    rc, out, err = st.check(listen=lst)
    assert_eq(rc, 0, "-t exit code")
    # one wording in -t and the log (docs/callers.md quotes it)
    want = "no [caller.*] section: any local process that can reach unix:%s may call " \
        "every profile" % path
    assert_true(want in out, "-t says any local process may call: %r" % out[-300:])
    p = st.start(listen=lst)
    try:
        assert_true(want in p.stderr_text(), "start-up warning")
        ok(raw_post(p.target, b"/api-gateway/get-invoices",
                    extra=b"Authorization: Bearer abc\r\n"), "anyone may call")
        # the catalogue check applies only to named callers
        st_, h, body = request(p.target, "/api-gateway/new-endpoint", b"{}")
        assert_eq((st_, error_name(body)), (404, "NOT_FOUND"), "non-catalogue forwarded")
        assert_eq(sim_paths(s), ["/api-gateway/get-invoices", "/api-gateway/new-endpoint"],
                  "forwarded")
        assert_true("authorization" not in s.records()[0]["headers"],
                    "Authorization not forwarded without callers either")
        for rec in st.audit_lines():
            assert_true("caller_name" not in rec, "no caller_name without callers")
        # the warning is repeated at a reload
        p.signal(signal.SIGHUP)
        wait_for(lambda: "reloaded" in p.stderr_text(), 5.0, "reload")
        assert_eq(p.stderr_text().count("any local process"), 2, "warning at reload too")
    finally:
        assert_eq(st.stop(), 0, "exit code")
    # TCP: with callers the -t summary counts them
    tok, tok_hex = new_token()
    rc, out, err = st.check(tcp_callers(tok_hex))
    assert_eq(rc, 0, "-t with callers: %r" % err[-300:])
    assert_true("2 named caller(s)" in out, "-t caller summary: %r" % out)
    assert_true("any local process" not in out, "no warning with callers")
    # a non-loopback address without callers is refused even with allow_non_loopback
    wide = {"address": "0.0.0.0:0", "allow_non_loopback": "yes"}
    rc, out, err = st.check(listen=wide)
    assert_true(rc != 0, "-t accepts 0.0.0.0 without callers")
    assert_true("[caller.*]" in err and "0.0.0.0" not in out, "-t explains: %r" % err[-300:])
    # ... without allow_non_loopback it is refused anyway
    rc, out, err = st.check("[caller.reports]\ntoken_sha256 = %s\n" % tok_hex,
                            listen={"address": "0.0.0.0:0"})
    assert_true(rc != 0 and "allow_non_loopback" in err, "-t needs allow_non_loopback")
    # ... and with a token caller and allow_non_loopback it is accepted (not bound here)
    rc, out, err = st.check("[caller.reports]\ntoken_sha256 = %s\n" % tok_hex, listen=wide)
    assert_eq(rc, 0, "-t 0.0.0.0 with a token caller: %r" % err[-300:])
    assert_true("1 named caller(s)" in out, "-t caller summary")
    # an empty [caller.x] section is an error, not the open default
    rc, out, err = st.check("[caller.empty]\n")
    assert_true(rc != 0, "-t accepts an empty caller section")
    assert_true("any local process" not in out, "no open default from an empty section")


# ------------------------------------------------------------------ 9 reload

@test
def reload_keeps_rate_buckets():
    s = sim()
    tok, tok_hex = new_token()
    st = Setup(s)
    callers = tcp_callers(tok_hex).replace(
        "/api-gateway/get-invoice\n", "/api-gateway/get-invoice\nrate_per_s = 0.01\nburst = 2\n", 1)
    p = st.start(callers)
    t = p.target
    gi = "/api-gateway/get-invoices"
    try:
        for i in range(2):
            ok(request(t, gi, b"{}", headers=bearer(tok)), "burst %d" % i)
        refused(request(t, gi, b"{}", headers=bearer(tok)), 429, "PROXY_RATE_LIMITED",
                "drained")
        n = 0
        for new_callers, what in ((callers, "same config"),
                                  (callers.replace("burst = 2", "burst = 5"), "larger burst"),
                                  (callers + "\n[caller.extra]\ntoken_sha256 = %s\n"
                                   % ("0" * 64),
                                   "another caller added")):
            write_file(p.conf, st.ini(new_callers))
            p.signal(signal.SIGHUP)
            n += 1
            wait_for(lambda: p.stderr_text().count("reloaded ") >= n, 5.0, "reload %d" % n)
            refused(request(t, gi, b"{}", headers=bearer(tok)), 429, "PROXY_RATE_LIMITED",
                    "still drained after a reload (%s)" % what)
        # a refused reload keeps the running policy (and the bucket)
        write_file(p.conf, st.ini(callers + "\n[caller.bad]\nuid = x\n"))
        p.signal(signal.SIGHUP)
        wait_for(lambda: "reload refused" in p.stderr_text(), 5.0, "refused reload")
        refused(request(t, gi, b"{}", headers=bearer(tok)), 429, "PROXY_RATE_LIMITED",
                "still drained after a refused reload")
        # a renamed caller starts with a fresh bucket
        write_file(p.conf, st.ini(callers.replace("[caller.reports]", "[caller.reports2]")))
        p.signal(signal.SIGHUP)
        n += 1
        wait_for(lambda: p.stderr_text().count("reloaded ") >= n, 5.0, "reload %d" % n)
        ok(request(t, gi, b"{}", headers=bearer(tok)), "renamed caller: fresh bucket")
        assert_eq(len(s.records()), 3, "forwarded")
        assert_true(p.running(), "still running")
    finally:
        assert_eq(st.stop(), 0, "exit code")


if __name__ == "__main__":
    main()
