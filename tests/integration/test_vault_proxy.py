#!/usr/bin/env python3
"""ocp-proxy against the Vault stand-in (build/ocp-vault-sim) and the
OnChainPay simulator: keys from Vault KV v2 (secret and public key from one
version), rotation mid-traffic without a failed request, Vault outages within
and beyond [vault] max_stale_ms, start-up without Vault, token renewal and
AppRole re-login, a wrong CA, namespaces, SIGHUP re-reads of file secrets,
secrets kept out of stderr and the audit trail, and the process's memory
hygiene (no core, not dumpable, env: wiped, locked no-dump pages).

Every test is bounded (refresh_ms = 1000, max_stale_ms = 2500, Vault
timeout_ms = 1000); the whole file runs in about a minute.

    OCP_BUILD=build python3 tests/integration/test_vault_proxy.py [NAME...]
"""

import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True     # keep tests/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (MERCHANT_PUBLIC, MERCHANT_SECRET, PARTNER_PUBLIC,  # noqa: E402
                     PARTNER_SECRET, Notify, Proxy, Sim, Skip, add_secret,
                     assert_contains, assert_eq, assert_not_contains, assert_status, assert_true,
                     certs, envelope, error_name, free_port, main, request, run_proxy,
                     subdir, test, wait_for, write_file)
from vaultsim import ROLE_ID, ROOT_TOKEN, SECRET_ID, VaultSim  # noqa: E402

REFRESH_MS = 1000
MAX_STALE_MS = 2500

# Key pairs the OnChainPay simulator knows (public key -> secret).  The
# Vault merchant key rotates VM1 -> VM2 -> VM3; the partner file key P1 -> P2.
VM1 = ("pub-vault-merchant-1", "vault-merchant-secret-1-0123456789abcdef")
VM2 = ("pub-vault-merchant-2", "vault-merchant-secret-2-fedcba9876543210")
VM3 = ("pub-vault-merchant-3", "vault-merchant-secret-3-00112233445566778")
P2 = ("pub-test-partner-2", "fake-secret-partner-2-5555555555aaaa")
PAIRS = {MERCHANT_PUBLIC: MERCHANT_SECRET, PARTNER_PUBLIC: PARTNER_SECRET,
         VM1[0]: VM1[1], VM2[0]: VM2[1], VM3[0]: VM3[1], P2[0]: P2[1]}
API_SECRETS = (MERCHANT_SECRET, PARTNER_SECRET, VM1[1], VM2[1], VM3[1], P2[1])
for _s in API_SECRETS:
    add_secret(_s)

KV_PATH = "ocp/merchant"
SRC_SECRET = "vault:secret/ocp/merchant#secret"
SRC_PUBLIC = "vault:secret/ocp/merchant#public_key"

# Every secret any test handed out (tokens, secret_ids), and every proxy run,
# for the final scan of stderr and audit files.
_issued = set([ROOT_TOKEN, SECRET_ID])
_setups = []

_sim = None


def sim():
    """The shared OnChainPay simulator (every pair above), reset."""
    global _sim
    if _sim is None:
        _sim = Sim(keys=PAIRS, nonce_window=256)
    _sim.fault("none")
    _sim.reset()
    return _sim


def issued(tok):
    add_secret(tok)
    _issued.add(tok)
    return tok


def fp(public_key):
    """The proxy's key fingerprint: 16 hex digits of SHA-256(public key)."""
    return hashlib.sha256(public_key.encode()).hexdigest()[:16]


def put_pair(v, pair, path=KV_PATH):
    """Write pair (public, secret) as a new version of secret/<path>."""
    return v.write("secret", path, {"public_key": pair[0], "secret": pair[1],
                                    "note": "ocp-proxy test"})


# ------------------------------------------------------------------ set-up

class Setup:
    """A private directory for one proxy: the partner secret file, a Vault
    token file, state dir, audit path and an INI builder (sections are dicts;
    None drops a key, a section of None drops the section).  The merchant
    profile reads secret and public_key from secret/ocp/merchant."""

    def __init__(self, s, v=None, name="vx", vault_port=None, token=None):
        self.sim = s
        self.vault = v
        self.dir = subdir(name)
        self.state = os.path.join(self.dir, "state")
        os.mkdir(self.state, 0o700)
        self.audit = os.path.join(self.dir, "audit.jsonl")
        self.partner_secret = write_file(os.path.join(self.dir, "partner.secret"),
                                         PARTNER_SECRET + "\n")
        self.partner_public = write_file(os.path.join(self.dir, "partner.pub"),
                                         PARTNER_PUBLIC + "\n")
        self.token_file = os.path.join(self.dir, "vault.token")
        self.set_token(token or ROOT_TOKEN)
        self.secret_id_file = write_file(os.path.join(self.dir, "secret-id"),
                                         SECRET_ID + "\n")
        self.vault_url = v.url if v is not None else "https://127.0.0.1:%d" % vault_port
        self.proxy = None
        _setups.append(self)

    def set_token(self, tok):
        """Replace the token file atomically (rename)."""
        issued(tok)
        tmp = self.token_file + ".new"
        write_file(tmp, tok + "\n")
        os.rename(tmp, self.token_file)

    def sections(self, **over):
        sec = {
            "listen": {"address": "127.0.0.1:0", "shutdown_timeout_ms": "5000"},
            "upstream": {"url": self.sim.url, "ca_file": self.sim.ca,
                         "connect_timeout_ms": "2000", "timeout_ms": "5000"},
            "state": {"dir": self.state},
            "audit": {"path": self.audit, "bodies": "redacted"},
            "log": {"level": "info"},
            "vault": {"address": self.vault_url, "ca_file": certs()["ca"],
                      "token_file": self.token_file,
                      "refresh_ms": str(REFRESH_MS), "max_stale_ms": str(MAX_STALE_MS),
                      "timeout_ms": "1000"},
            "profile.merchant": {"public_key": SRC_PUBLIC, "secret": SRC_SECRET,
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
            for k, val in values.items():
                if val is None:
                    d.pop(k, None)
                else:
                    d[k] = str(val)
        return sec

    def approle(self):
        """Overrides for [vault] AppRole authentication."""
        return {"token_file": None, "role_id": ROLE_ID,
                "secret_id_file": self.secret_id_file}

    def ini(self, **over):
        out = []
        for name, values in self.sections(**over).items():
            out.append("[%s]" % name)
            out.extend("%s = %s" % kv for kv in values.items())
            out.append("")
        return "\n".join(out)

    def start(self, env=None, argv_prefix=(), conf_dir=None, conf_owner=None, **over):
        self.proxy = Proxy(self.ini(**over), env=env, argv_prefix=argv_prefix,
                           conf_dir=conf_dir, conf_owner=conf_owner)
        return self.proxy

    def audit_text(self):
        try:
            with open(self.audit, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stop(self):
        if self.proxy is not None and self.proxy.running():
            return self.proxy.stop()
        return self.proxy.proc.returncode if self.proxy else None


# ------------------------------------------------------------------ helpers

MERCHANT_PATH = "/api-gateway/test-signature"
PARTNER_PATH = "/partner/api/get-users"


def call(p, profile, body=None, timeout=10):
    """One request through the proxy for profile: (status, headers, body)."""
    if profile == "merchant":
        return request(p.target, MERCHANT_PATH, body or b'{"x":1}', timeout=timeout)
    return request(p.target, PARTNER_PATH, body or b'{"limit":10}', timeout=timeout)


def signed_ok(s, p, profile, public, what):
    """A request for profile is relayed, and the simulator accepted it signed
    with the pair of `public`."""
    marker = "%s-%d" % (profile, time.monotonic_ns())
    body = json.dumps({"m": marker}).encode()
    resp = call(p, profile, body)
    assert_status(resp, 200, what)
    env = envelope(resp[2])
    assert_eq(env.get("success"), True, what + " success")
    rec = [r for r in s.records() if marker in r.get("body", "")]
    assert_eq(len(rec), 1, what + ": one simulator record")
    assert_eq(rec[0]["result"], "ok", what + ": simulator check")
    assert_eq(rec[0]["public_key"], public, what + ": public key sent")
    if profile == "merchant":
        r = env["response"]
        assert_true(r["signature"] == _hmac(PAIRS[public], rec[0]["body"]),
                    what + ": signature made with the secret of that pair")
    return rec[0]


def _hmac(secret, body):
    import hmac
    return hmac.new(secret.encode(), body.encode("utf-8"), hashlib.sha256).hexdigest()


def unavailable(resp, what):
    """503 PROXY_KEY_UNAVAILABLE envelope."""
    assert_status(resp, 503, what)
    assert_eq(error_name(resp[2]), "PROXY_KEY_UNAVAILABLE", what + " error name")


def wait_status(p, profile, status, timeout, what):
    """Poll until a request for profile gets status; returns elapsed seconds."""
    t0 = time.monotonic()

    def probe():
        return call(p, profile, timeout=5)[0] == status
    wait_for(probe, timeout, "%s: HTTP %d" % (what, status), interval=0.1)
    return time.monotonic() - t0


class Log:
    """A cursor on a proxy's stderr: wait for text after the last mark."""

    def __init__(self, p):
        self.p = p
        self.pos = 0

    def mark(self):
        self.pos = len(self.p.stderr_text())
        return self

    def since(self):
        return self.p.stderr_text()[self.pos:]

    def wait(self, pattern, timeout, what=None):
        rx = re.compile(pattern)

        def found():
            return rx.search(self.since())
        return wait_for(found, timeout, what or ("log /%s/" % pattern), interval=0.05)


def no_secrets(text, what):
    for sec in API_SECRETS + tuple(_issued):
        assert_not_contains(text, sec, what)
    assert_not_contains(text, "hvs.", what + " (a Vault token prefix)")


def new_vault(**kw):
    v = VaultSim(**kw)
    put_pair(v, VM1)
    return v


# ------------------------------------------------------------------ a

@test
def first_load_pair_from_one_vault_secret():
    """Merchant secret and public_key from one KV v2 secret, partner from a
    file: both sign; the log names the Vault version and the fingerprint."""
    s = sim()
    v = new_vault()
    st = Setup(s, v)
    try:
        p = st.start()
        log = Log(p)
        took = wait_status(p, "merchant", 200, 5, "first Vault read")
        assert_true(took < 3, "first key served %.1f s after listening" % took)
        log.wait(r"profile merchant: key %s loaded \(Vault version 1\)" % fp(VM1[0]), 2)
        signed_ok(s, p, "merchant", VM1[0], "merchant from Vault")
        signed_ok(s, p, "partner", PARTNER_PUBLIC, "partner from a file")
        log.wait("every profile has a servable key", 3)
        reads = v.stats()["reads_by_path"].get("secret/" + KV_PATH, 0)
        assert_true(reads >= 1, "the proxy read the secret")
        no_secrets(p.stderr_text(), "stderr")
    finally:
        st.stop()
        v.stop()


# ------------------------------------------------------------------ b

def _traffic(p, stop, results, tid):
    i = 0
    while not stop.is_set():
        i += 1
        body = json.dumps({"t": tid, "i": i}).encode()
        try:
            st, _, b = call(p, "merchant", body, timeout=10)
            results.append((tid, i, st, error_name(b) if st != 200 else None))
        except Exception as e:      # noqa: BLE001
            results.append((tid, i, -1, type(e).__name__))
        time.sleep(0.01)


@test
def rotation_mid_traffic_without_a_failed_request():
    """A new KV version with a new pair is picked up within ~refresh_ms while
    two threads send requests: none fails, each thread's requests switch from
    the old public key to the new one exactly once."""
    s = sim()
    v = new_vault()
    st = Setup(s, v)
    stop = threading.Event()
    results = []
    threads = []
    try:
        p = st.start()
        wait_status(p, "merchant", 200, 5, "first Vault read")
        s.reset()
        log = Log(p).mark()
        for tid in (1, 2):
            t = threading.Thread(target=_traffic, args=(p, stop, results, tid), daemon=True)
            t.start()
            threads.append(t)
        time.sleep(0.8)
        t_write = time.monotonic()
        ver = put_pair(v, VM2)
        log.wait(r"profile merchant: key changed %s -> %s \(Vault version %d\)"
                 % (fp(VM1[0]), fp(VM2[0]), ver), REFRESH_MS / 1000.0 + 2.5)
        took = time.monotonic() - t_write
        time.sleep(0.8)
        stop.set()
        for t in threads:
            t.join(15)
        assert_true(all(not t.is_alive() for t in threads), "traffic threads stopped")
        assert_true(took <= REFRESH_MS / 1000.0 + 1.5,
                    "key changed %.2f s after the write (refresh_ms %d)" % (took, REFRESH_MS))
        bad = [r for r in results if r[2] != 200]
        assert_true(len(results) >= 40, "enough traffic (%d requests)" % len(results))
        assert_eq(bad[:5], [], "failed requests during the rotation (of %d)" % len(results))
        recs = s.records()
        seen = {}
        for r in recs:
            if r["path"] != MERCHANT_PATH:
                continue
            assert_eq(r["result"], "ok", "simulator check of request %d" % r["seq"])
            b = json.loads(r["body"])
            seen.setdefault(b["t"], []).append((b["i"], r["public_key"]))
        assert_eq(sum(len(x) for x in seen.values()), len(results),
                  "every request reached the simulator once")
        for tid, lst in seen.items():
            keys = [k for _, k in sorted(lst)]
            assert_true(keys[0] == VM1[0] and keys[-1] == VM2[0],
                        "thread %d: starts with the old key, ends with the new" % tid)
            switch = keys.index(VM2[0])
            assert_true(all(k == VM2[0] for k in keys[switch:]),
                        "thread %d: never back to the old key after the switch" % tid)
        signed_ok(s, p, "merchant", VM2[0], "after the rotation")
        no_secrets(p.stderr_text(), "stderr")
    finally:
        stop.set()
        st.stop()
        v.stop()


# ------------------------------------------------------------------ c

@test
def vault_down_within_and_beyond_max_stale():
    """Vault closing every connection: the last good key serves within
    max_stale_ms; beyond it the Vault profile gets 503 PROXY_KEY_UNAVAILABLE
    while the file profile works; Vault back -> served again, same process.
    Then the same with Vault hanging (held connections) and Vault stopped."""
    s = sim()
    v = new_vault()
    st = Setup(s, v)
    try:
        p = st.start()
        pid = p.pid
        wait_status(p, "merchant", 200, 5, "first Vault read")
        log = Log(p).mark()

        # -- within max_stale_ms: a short outage is invisible
        v.down(1500)
        t0 = time.monotonic()
        n = 0
        while time.monotonic() - t0 < 1.4:
            assert_status(call(p, "merchant"), 200, "merchant during a short outage")
            n += 1
            time.sleep(0.05)
        log.wait(r"vault: reading secret/ocp/merchant failed", 3, "the failed read is logged")
        log.wait(r"vault: reading secret/ocp/merchant works again", 4, "reads work again")
        signed_ok(s, p, "merchant", VM1[0], "after the short outage")
        assert_true("not ready" not in log.since(), "no 'not ready' for a short outage")

        # -- beyond max_stale_ms (connections closed)
        log.mark()
        v.down(30000)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.2:           # key <= ~1.1 s old at t0
            assert_status(call(p, "merchant"), 200, "merchant early in the outage")
            time.sleep(0.05)
        wait_status(p, "merchant", 503, MAX_STALE_MS / 1000.0 + 3, "stale key")
        stale_after = time.monotonic() - t0
        assert_true(stale_after <= MAX_STALE_MS / 1000.0 + 1.5,
                    "503 %.1f s into the outage (max_stale_ms %d)" % (stale_after, MAX_STALE_MS))
        unavailable(call(p, "merchant"), "merchant beyond max_stale_ms")
        signed_ok(s, p, "partner", PARTNER_PUBLIC, "file profile during the outage")
        log.wait("not ready: a profile has no servable key", 3)
        v.up()
        took = wait_status(p, "merchant", 200, 5, "Vault back")
        assert_true(took <= 3, "served again %.1f s after Vault came back" % took)
        signed_ok(s, p, "merchant", VM1[0], "after the outage")
        log.wait("every profile has a servable key", 3)

        # -- beyond max_stale_ms with Vault holding connections (timeouts)
        log.mark()
        v.down(30000, mode="hang")
        wait_status(p, "merchant", 503, MAX_STALE_MS / 1000.0 + 3, "stale key (hang)")
        signed_ok(s, p, "partner", PARTNER_PUBLIC, "file profile while Vault hangs")
        v.up()
        wait_status(p, "merchant", 200, 5, "Vault back after hanging")

        # -- Vault process stopped, then started again on the same port
        port = v.port
        v.stop()
        wait_status(p, "merchant", 503, MAX_STALE_MS / 1000.0 + 3, "stale key (stopped)")
        v = VaultSim(port=port)
        put_pair(v, VM1)
        wait_status(p, "merchant", 200, 5, "restarted Vault")
        signed_ok(s, p, "merchant", VM1[0], "after the Vault restart")
        assert_eq(p.pid, pid, "same proxy process")
        assert_true(p.running(), "proxy still running")
        no_secrets(p.stderr_text(), "stderr")
    finally:
        st.stop()
        v.stop()


@test
def same_version_number_new_content_is_picked_up():
    """A Vault whose KV store was re-created (restore, failover, a destroyed
    and re-written secret) can answer version 1 again with another pair:
    the proxy must serve what Vault holds now, not the older pair."""
    s = sim()
    v = new_vault()                                   # VM1 as version 1
    st = Setup(s, v)
    try:
        p = st.start()
        wait_status(p, "merchant", 200, 5, "first Vault read")
        log = Log(p).mark()
        port = v.port
        v.stop()
        v = VaultSim(port=port)
        ver = put_pair(v, VM2)                         # VM2 as version 1
        assert_eq(ver, 1, "version after the re-creation")
        log.wait(r"vault: secret/ocp/merchant version 1", 5,
                 "the proxy read the re-created secret")
        time.sleep(1.5)
        assert_true(re.search(r"profile merchant: key changed %s -> %s"
                              % (fp(VM1[0]), fp(VM2[0])), p.stderr_text()),
                    "key changed to the pair Vault now holds (same version number 1)")
        signed_ok(s, p, "merchant", VM2[0], "signed with the current Vault pair")
    finally:
        st.stop()
        v.stop()


@test
def unusable_new_version_keeps_the_old_key():
    """A version without the secret field, or with a public key that is not
    one line, is refused (logged, no value) and the last good pair keeps
    serving; the next good version is taken."""
    s = sim()
    v = new_vault()
    st = Setup(s, v)
    try:
        p = st.start()
        wait_status(p, "merchant", 200, 5, "first Vault read")
        log = Log(p).mark()
        v.write("secret", KV_PATH, {"public_key": VM2[0]})
        log.wait(r"profile merchant: Vault secret version 2 lacks field secret", 4)
        signed_ok(s, p, "merchant", VM1[0], "old pair after a version without secret")
        v.write("secret", KV_PATH, {"public_key": "two\nlines", "secret": VM2[1]})
        log.wait(r"profile merchant: Vault secret version 3: public key must be one", 4)
        signed_ok(s, p, "merchant", VM1[0], "old pair after a bad public key")
        assert_true("not ready" not in log.since(), "still ready")
        ver = put_pair(v, VM2)
        log.wait(r"key changed %s -> %s \(Vault version %d\)" % (fp(VM1[0]), fp(VM2[0]), ver), 4)
        signed_ok(s, p, "merchant", VM2[0], "the next good version")
        no_secrets(p.stderr_text(), "stderr")
    finally:
        st.stop()
        v.stop()


@test
def version_with_another_profiles_public_key_is_refused():
    """A Vault version whose public key is another profile's (a rotation gone
    wrong) would make two profiles share one pair, each counting nonces of
    its own (the API refuses reused nonces): it is refused, logged naming
    both profiles (no key value), the last good pair keeps serving, and the
    next good version is taken."""
    s = sim()
    v = new_vault()
    st = Setup(s, v)
    try:
        p = st.start()
        wait_status(p, "merchant", 200, 5, "first Vault read")
        log = Log(p).mark()
        ver = put_pair(v, (PARTNER_PUBLIC, VM2[1]))
        log.wait(r"error: profile merchant: Vault secret version %d has the same public key as "
                 r"profile partner: one section serves one API key pair; keeping key %s$"
                 % (ver, fp(VM1[0])), 4)
        signed_ok(s, p, "merchant", VM1[0], "old pair after a version with the partner's key")
        signed_ok(s, p, "partner", PARTNER_PUBLIC, "partner unaffected")
        assert_not_contains(log.since(), PARTNER_PUBLIC, "the public key is not logged")
        ver = put_pair(v, VM2)
        log.wait(r"key changed %s -> %s \(Vault version %d\)" % (fp(VM1[0]), fp(VM2[0]), ver), 4)
        signed_ok(s, p, "merchant", VM2[0], "the next good version")
        no_secrets(p.stderr_text(), "stderr")
    finally:
        st.stop()
        v.stop()


@test
def max_stale_below_refresh_never_503_while_vault_answers():
    """max_stale_ms < refresh_ms with Vault healthy: every read succeeds, so
    the key must not be reported stale between two reads (or the combination
    must be refused as a configuration error)."""
    s = sim()
    v = new_vault()
    st = Setup(s, v)
    try:
        ini = st.ini(vault={"refresh_ms": 3000, "max_stale_ms": 1000})
        try:
            p = Proxy(ini)
        except RuntimeError as e:
            if "max_stale_ms" in str(e):
                return                                 # refused: acceptable
            raise
        st.proxy = p
        wait_status(p, "merchant", 200, 5, "first Vault read")
        codes = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < 4.0:
            codes.append(call(p, "merchant")[0])
            time.sleep(0.1)
        bad = sum(1 for c in codes if c != 200)
        assert_eq(bad, 0, "503s of %d requests with Vault answering every read"
                  % len(codes))
    finally:
        st.stop()
        v.stop()


# ------------------------------------------------------------------ d

@test
def start_without_vault_then_vault_comes_up():
    """Vault unreachable at start: the proxy starts (no crash loop), logs not
    ready, 503 for the Vault profile and 200 for the file profile; once
    Vault is up the key loads without a restart."""
    s = sim()
    port = free_port()
    st = Setup(s, None, vault_port=port)
    n = Notify()
    v = None
    try:
        p = st.start(env=n.env())
        log = Log(p)
        log.wait("not ready: a profile has no servable key", 3)
        n.wait("STATUS=starting: waiting for a profile's key (503 for it until then)", 3)
        unavailable(call(p, "merchant"), "merchant before Vault is up")
        signed_ok(s, p, "partner", PARTNER_PUBLIC, "partner without Vault")
        p.signal(signal.SIGHUP)     # a reload meanwhile: still not ready
        log.wait("reloaded", 3)
        time.sleep(1.5)
        assert_true(p.running(), "still running while Vault is unreachable")
        unavailable(call(p, "merchant"), "merchant still 503")
        n.collect(0.1)
        sent = [m for _, m in n.msgs]
        assert_true(not any(x in m.split("\n") for m in sent
                            for x in ("READY=1", "RELOADING=1")),
                    "no READY=1 (nor RELOADING=1) while a key is missing: %r" % sent)
        v = VaultSim(port=port)
        put_pair(v, VM1)
        took = wait_status(p, "merchant", 200, 6, "Vault came up")
        assert_true(took <= 4, "key loaded %.1f s after Vault came up" % took)
        n.wait("READY=1", 3)
        signed_ok(s, p, "merchant", VM1[0], "merchant after Vault came up")
        log.wait("every profile has a servable key", 3)
        no_secrets(p.stderr_text(), "stderr")
    finally:
        st.stop()
        n.close()
        if v is not None:
            v.stop()


@test
def ready_only_once_the_vault_keys_are_read():
    """READY=1 (systemd) comes once listeners and keys are up: after the
    Vault key has been read, not at the moment the listener is bound."""
    s = sim()
    v = new_vault()
    put_pair(v, VM1)
    v.down(1000)                # the first reads fail: the key comes about 1-2 s in
    st = Setup(s, v)
    n = Notify()
    try:
        p = st.start(env=n.env())
        log = Log(p)
        unavailable(call(p, "merchant"), "merchant while Vault refuses")
        n.collect(0.3)
        assert_true(not any("READY=1" in m.split("\n") for _, m in n.msgs),
                    "no READY=1 while the Vault key is missing: %r" % [m for _, m in n.msgs])
        n.wait("READY=1", 6)
        signed_ok(s, p, "merchant", VM1[0], "merchant as soon as READY=1 is sent")
        log.wait("every profile has a servable key", 3)
    finally:
        st.stop()
        n.close()
        v.stop()


# ------------------------------------------------------------------ e

def _steady(p, seconds, what):
    """Requests for both profiles every 150 ms for `seconds`: all 200."""
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < seconds:
        assert_status(call(p, "merchant"), 200, "%s (merchant, %.1f s)"
                      % (what, time.monotonic() - t0))
        n += 1
        time.sleep(0.15)
    assert_status(call(p, "partner"), 200, what + " (partner)")
    return n


def _rotates(s, v, p, pair, what):
    """A new version with pair is loaded (proves reads still work)."""
    log = Log(p).mark()
    put_pair(v, pair)
    log.wait(r"profile merchant: key changed .* -> %s" % fp(pair[0]), 4, what)
    signed_ok(s, p, "merchant", pair[0], what)


@test
def token_file_renewed_past_several_ttls():
    """token_file with a 2 s renewable token: renewed ahead of expiry, reads
    keep working well past several TTLs; then a refused token is replaced
    from the token file."""
    s = sim()
    v = new_vault()
    tok = issued(v.new_token(ttl_ms=2000, renewable=True))
    st = Setup(s, v, token=tok)
    try:
        p = st.start()
        wait_status(p, "merchant", 200, 5, "first Vault read")
        v.reset_stats()
        _steady(p, 6.5, "past 3 token TTLs")
        stats = v.stats()
        assert_true(stats["renewals"] >= 3, "renewals: %d" % stats["renewals"])
        _rotates(s, v, p, VM2, "new version read with the renewed token")
        # the token is revoked; the operator (or an agent) writes a new one
        log = Log(p).mark()
        v.expire_tokens()
        st.set_token(v.new_token(ttl_ms=2000, renewable=True))
        _rotates(s, v, p, VM3, "new version read with the token re-read from token_file")
        assert_true(p.running(), "still running")
        no_secrets(p.stderr_text(), "stderr")
    finally:
        st.stop()
        v.stop()


@test
def approle_relogin_when_renewal_refused():
    """AppRole with 2 s tokens that cannot be renewed (--no-renew): the proxy
    logs in again each time; requests keep working; new versions are read."""
    s = sim()
    v = new_vault(token_ttl_ms=2000, no_renew=True)
    st = Setup(s, v)
    try:
        p = st.start(vault=st.approle())
        wait_status(p, "merchant", 200, 5, "first Vault read (AppRole)")
        before = v.stats()
        _steady(p, 6.0, "AppRole tokens replaced")
        after = v.stats()
        assert_true(after["logins"] - before["logins"] >= 2,
                    "logins during 6 s of 2 s tokens: %d" % (after["logins"] - before["logins"]))
        assert_true(after["renew_refused"] > before["renew_refused"], "renewals were refused")
        _rotates(s, v, p, VM2, "new version read after re-logins")
        no_secrets(p.stderr_text(), "stderr")
    finally:
        st.stop()
        v.stop()


@test
def approle_relogin_after_tokens_expire():
    """AppRole, tokens without TTL, all tokens revoked (expire-tokens): the
    next read is refused, the proxy logs in again, reads go on."""
    s = sim()
    v = new_vault()
    st = Setup(s, v)
    try:
        p = st.start(vault=st.approle())
        wait_status(p, "merchant", 200, 5, "first Vault read (AppRole)")
        logins = v.stats()["logins"]
        v.expire_tokens()
        _steady(p, 2.0, "after the tokens were revoked")
        wait_for(lambda: v.stats()["logins"] > logins, 3, "a new AppRole login")
        _rotates(s, v, p, VM2, "new version read with the new login")
        no_secrets(p.stderr_text(), "stderr")
    finally:
        st.stop()
        v.stop()


# ------------------------------------------------------------------ f

@test
def wrong_ca_never_loads():
    """[vault] ca_file of another CA: the handshake is refused, stderr says
    it is Vault's certificate, the key never loads (503), the file profile works."""
    s = sim()
    v = new_vault()
    st = Setup(s, v)
    try:
        p = st.start(vault={"ca_file": certs()["other_ca"]})
        log = Log(p)
        log.wait(r"vault 127\.0\.0\.1: certificate verification failed", 4,
                 "a certificate error on stderr that names Vault, not the API")
        log.wait("not ready: a profile has no servable key", 3)
        time.sleep(1.5)
        unavailable(call(p, "merchant"), "merchant with the wrong CA")
        signed_ok(s, p, "partner", PARTNER_PUBLIC, "partner with the wrong Vault CA")
        assert_eq(v.stats()["reads"], 0, "reads that reached Vault")
        assert_true("key %s loaded" % fp(VM1[0]) not in p.stderr_text(), "never loaded")
        no_secrets(p.stderr_text(), "stderr")
    finally:
        st.stop()
        v.stop()


# ------------------------------------------------------------------ g

@test
def namespace_right_and_wrong():
    """ocp-vault-sim --namespace team-a: [vault] namespace = team-a loads (token
    and AppRole); another namespace never loads."""
    s = sim()
    v = VaultSim(namespace="team-a")
    put_pair(v, VM1)
    good = Setup(s, v, name="ns-good")
    good_ar = Setup(s, v, name="ns-good-ar")
    bad = Setup(s, v, name="ns-bad")
    bad_ar = Setup(s, v, name="ns-bad-ar")
    try:
        pg = good.start(vault={"namespace": "team-a"})
        pga = good_ar.start(vault=dict(good_ar.approle(), namespace="team-a"))
        pb = bad.start(vault={"namespace": "team-b"})
        pba = bad_ar.start(vault=dict(bad_ar.approle(), namespace="team-b"))
        wait_status(pg, "merchant", 200, 5, "right namespace (token)")
        wait_status(pga, "merchant", 200, 5, "right namespace (AppRole)")
        signed_ok(s, pg, "merchant", VM1[0], "right namespace")
        time.sleep(1.5)
        for p, what in ((pb, "token"), (pba, "AppRole")):
            unavailable(call(p, "merchant"), "wrong namespace (%s)" % what)
            assert_status(call(p, "partner"), 200, "partner, wrong namespace (%s)" % what)
            assert_true("loaded (Vault" not in p.stderr_text(),
                        "wrong namespace never loads (%s)" % what)
        assert_true(v.stats()["namespace_rejects"] >= 2, "the server saw the wrong namespace")
    finally:
        for x in (good, good_ar, bad, bad_ar):
            x.stop()
        v.stop()


# ------------------------------------------------------------------ h

@test
def sighup_rereads_file_secret_and_keeps_old_on_failure():
    """Partner pair from files: replace both, SIGHUP -> 'key changed' by
    fingerprint and new signatures; SIGHUP with the secret file missing ->
    the old key is kept (logged) and served."""
    s = sim()
    v = new_vault()
    st = Setup(s, v)
    try:
        p = st.start(profile_partner={"public_key": "file:" + st.partner_public})
        wait_status(p, "merchant", 200, 5, "first Vault read")
        signed_ok(s, p, "partner", PARTNER_PUBLIC, "partner before SIGHUP")
        log = Log(p).mark()
        write_file(st.partner_secret, P2[1] + "\n")
        write_file(st.partner_public, P2[0] + "\n")
        p.signal(signal.SIGHUP)
        log.wait(r"profile partner: key changed %s -> %s" % (fp(PARTNER_PUBLIC), fp(P2[0])),
                 3, "partner key change logged by fingerprint")
        log.wait("reloaded", 3)
        signed_ok(s, p, "partner", P2[0], "partner after SIGHUP")
        signed_ok(s, p, "merchant", VM1[0], "merchant (Vault) unaffected by SIGHUP")
        # the secret file is missing
        log.mark()
        os.unlink(st.partner_secret)
        p.signal(signal.SIGHUP)
        log.wait(r"profile partner: .*keeping key %s" % fp(P2[0]), 3,
                 "the old key is kept and logged")
        time.sleep(0.3)
        signed_ok(s, p, "partner", P2[0], "partner after a failed re-read")
        signed_ok(s, p, "merchant", VM1[0], "merchant after a failed re-read")
        assert_true(p.running(), "still running")
        no_secrets(p.stderr_text(), "stderr")
    finally:
        st.stop()
        v.stop()


@test
def sighup_adding_vault_says_it_needs_a_restart():
    """Started without [vault], a reload that adds [vault] and a vault: source
    is refused, and the reason says a restart is needed (not that the address
    is missing: it is set)."""
    s = sim()
    v = new_vault()
    st = Setup(s, v)
    try:
        ms = write_file(os.path.join(st.dir, "merchant.secret"), MERCHANT_SECRET + "\n")
        p = st.start(vault=None, profile_merchant={"public_key": MERCHANT_PUBLIC,
                                                   "secret": "file:" + ms})
        signed_ok(s, p, "merchant", MERCHANT_PUBLIC, "merchant from a file")
        log = Log(p).mark()
        write_file(p.conf, st.ini())
        p.signal(signal.SIGHUP)
        log.wait("reload refused", 3)
        err = log.since()
        assert_contains(err, "[vault] was not set at start, and adding it needs a restart",
                        "the refusal says why")
        assert_true("needs [vault] address" not in err, "no claim that the address is missing")
        signed_ok(s, p, "merchant", MERCHANT_PUBLIC, "the running key still serves")
    finally:
        st.stop()
        v.stop()


@test
def sighup_refused_leaves_the_vault_watch_alone():
    """A reload that re-points a profile at another Vault secret but is
    refused (another profile names a new secret file it cannot read) changes
    nothing: the old watch stays, the other secret is never served.  The same
    change in an accepted reload takes effect."""
    s = sim()
    v = new_vault()
    put_pair(v, VM2, path="ocp/merchant-next")
    st = Setup(s, v)
    try:
        p = st.start()
        wait_status(p, "merchant", 200, 5, "first Vault read")
        signed_ok(s, p, "merchant", VM1[0], "merchant before SIGHUP")
        bad = write_file(os.path.join(st.dir, "partner-open.secret"), PARTNER_SECRET + "\n")
        os.chmod(bad, 0o644)
        moved = {"public_key": "vault:secret/ocp/merchant-next#public_key",
                 "secret": "vault:secret/ocp/merchant-next#secret"}
        log = Log(p).mark()
        write_file(p.conf, st.ini(profile_merchant=moved,
                                  profile_partner={"secret": "file:" + bad}))
        p.signal(signal.SIGHUP)
        log.wait("reload refused", 3, "the reload is refused")
        time.sleep(3 * REFRESH_MS / 1000.0)    # a re-pointed watch would have read by now
        signed_ok(s, p, "merchant", VM1[0], "merchant after the refused reload")
        assert_true("key changed" not in log.since(), "no key changed: %s" % log.since())
        # accepted: the watch moves
        log.mark()
        write_file(p.conf, st.ini(profile_merchant=moved))
        p.signal(signal.SIGHUP)
        log.wait(r"profile merchant: key changed %s -> %s" % (fp(VM1[0]), fp(VM2[0])), 5,
                 "the accepted reload moves the watch")
        signed_ok(s, p, "merchant", VM2[0], "merchant after the accepted reload")
        no_secrets(p.stderr_text(), "stderr")
    finally:
        st.stop()
        v.stop()


@test
def check_mode_refuses_what_start_refuses():
    """ocp-proxy -t must refuse a [vault] section that the real start refuses
    (a missing token_file, a namespace with a space)."""
    s = sim()
    st = Setup(s, None, vault_port=free_port(), name="chk")
    cases = (("token_file missing", {"token_file": os.path.join(st.dir, "no-such-token")},
              "token_file"),
             ("namespace with a space", {"namespace": "bad ns"}, "namespace"))
    for what, over, word in cases:
        conf = write_file(os.path.join(st.dir, "chk.ini"), st.ini(vault=over))
        rc, out, err = run_proxy(["-c", conf], timeout=10)
        assert_eq(rc, 1, "start with %s: exit code" % what)
        assert_true(word in err, "start with %s: reason on stderr" % what)
        rc, out, err = run_proxy(["-t", "-c", conf], timeout=10)
        assert_true(rc != 0, "-t with %s: exit code %d (the start refuses it)" % (what, rc))
        assert_true(word in err, "-t with %s: reason on stderr" % what)


# ------------------------------------------------------------------ -t fetches

def _key_line(ini, section, key):
    """The line number of `key = ...` in [section] of an INI text."""
    cur = None
    for n, line in enumerate(ini.splitlines(), 1):
        if line.startswith("["):
            cur = line.strip("[]")
        elif cur == section and line.split("=")[0].strip() == key:
            return n
    raise AssertionError("no %s in [%s]" % (key, section))


def _check(st, name="chk.ini", timeout=30, **over):
    """ocp-proxy -t on st's config with overrides: (rc, stdout, stderr,
    seconds, conf path, ini text).  Nothing secret may be in the output."""
    ini = st.ini(**over)
    conf = write_file(os.path.join(st.dir, name), ini)
    t0 = time.monotonic()
    rc, out, err = run_proxy(["-t", "-c", conf], timeout=timeout)
    took = time.monotonic() - t0
    no_secrets(out + err, "-t output")
    return rc, out, err, took, conf, ini


def _check_fails(st, key, cause, what, section="profile.merchant", timeout=30, **over):
    """-t exits 1 with one line FILE:LINE: [section] key: ... cause (a regex),
    and no summary line (exit 1 says the check failed); returns (stderr, seconds)."""
    rc, out, err, took, conf, ini = _check(st, timeout=timeout, **over)
    assert_eq(rc, 1, what + ": exit code")
    line = _key_line(ini, section, key)
    rx = r"^%s:%d: \[%s\] %s: cannot load key: .*%s" % (
        re.escape(conf), line, re.escape(section), key, cause)
    assert_true(re.search(rx, err, re.M) is not None,
                "%s: a line naming file, line %d, [%s] %s and the cause /%s/; stderr: %s"
                % (what, line, section, key, cause, err))
    assert_true("configuration check failed" not in err, what + ": no summary line")
    assert_true("configuration OK" not in out, what + ": not OK")
    return err, took


@test
def check_mode_fetches_vault_keys():
    """-t with Vault reachable (token_file): the pair is read from Vault with
    the daemon's code, the line says every key is loaded, exit 0, and no
    secret or token is printed; Vault saw the token lookup and the read."""
    s = sim()
    v = new_vault()
    st = Setup(s, v, name="chk-ok")
    try:
        rc, out, err, took, _, _ = _check(st)
        reads = v.stats()["reads_by_path"].get("secret/" + KV_PATH, 0)
    finally:
        v.stop()
    assert_eq(rc, 0, "-t exit code (stderr: %s)" % err)
    assert_true(re.search(r"configuration OK, 2 profile\(s\), 2 key\(s\) loaded, 1 of them "
                          r"from Vault", out) is not None, "the loaded line: %s" % out)
    assert_eq(err, "", "nothing on stderr")
    assert_true(reads >= 1, "Vault saw the read")
    assert_true(not os.path.exists(st.audit), "-t wrote no audit file")
    assert_eq(os.listdir(st.state), [], "-t wrote nothing in the state dir")


@test
def check_mode_vault_public_key_of_another_profile():
    """-t: a public key fetched from Vault equal to another profile's is
    refused (two profiles, one pair, two nonce counters), at the later
    profile's public_key line, without printing the key."""
    s = sim()
    v = VaultSim()
    put_pair(v, (PARTNER_PUBLIC, VM1[1]))
    st = Setup(s, v, name="chk-same")
    try:
        rc, out, err, took, conf, ini = _check(st)
    finally:
        v.stop()
    assert_eq(rc, 1, "-t exit code (stdout: %s)" % out)
    assert_eq(err.splitlines(), ["%s:%d: [profile.partner] public_key: the same public key as "
                                 "[profile.merchant]: one section serves one API key pair "
                                 "(list several routes prefixes in one profile instead)"
                                 % (conf, _key_line(ini, "profile.partner", "public_key"))],
              "one line at the partner's public_key")


@test
def check_mode_approle_login():
    """-t with AppRole: logs in with role_id + secret_id, reads the pair,
    exit 0; a secret_id Vault refuses is a problem line on [vault]'s key."""
    s = sim()
    v = new_vault()
    st = Setup(s, v, name="chk-ar")
    try:
        logins = v.stats()["logins"]
        rc, out, err, _, _, _ = _check(st, vault=st.approle())
        assert_eq(rc, 0, "-t with AppRole: exit code (stderr: %s)" % err)
        assert_true("2 key(s) loaded" in out, "-t with AppRole: loaded line: %s" % out)
        assert_true(v.stats()["logins"] > logins, "-t logged in")
        v.config(secret_id="rotated-secret-id-88888888")
        issued("rotated-secret-id-88888888")
        _check_fails(st, "secret", r"vault refused the AppRole login.*HTTP (400|403)",
                     "-t with a refused secret_id", vault=st.approle())
    finally:
        v.stop()


@test
def check_mode_vault_unreachable_is_a_problem():
    """-t with nothing listening at [vault] address: exit 1 at once with the
    merchant secret's line and 'cannot connect' (connection refused); with a
    Vault that accepts but never answers, exit 1 bounded by timeout_ms."""
    s = sim()
    st = Setup(s, None, vault_port=free_port(), name="chk-down")
    err, took = _check_fails(st, "secret", r"vault:secret/ocp/merchant: cannot connect to "
                             r"vault \(connect: Connection refused\)", "-t with Vault down")
    assert_true(took < 5, "-t with Vault down took %.1f s" % took)
    assert_eq(len([x for x in err.splitlines() if "cannot load key" in x]), 1,
              "one problem line for the one Vault key")
    v = new_vault()
    st = Setup(s, v, name="chk-hang")
    try:
        v.down(30000, mode="hang")
        err, took = _check_fails(st, "secret", r"vault did not answer in time",
                                 "-t with Vault hanging")
        assert_true(took < 4 * 1 + 1 + 3, "-t with Vault hanging took %.1f s (timeout_ms 1000)"
                    % took)
    finally:
        v.stop()


@test
def check_mode_vault_answers_refused():
    """-t against a Vault that answers but refuses: 404 (no such secret),
    403 on the token (token_file holds a token Vault does not know), 403 on
    the read (policy), 503 (sealed): each an exit 1 and a clear line."""
    s = sim()
    v = new_vault()
    st = Setup(s, v, name="chk-refused")
    try:
        _check_fails(st, "secret", r"vault:secret/ocp/nosuch: secret not found \(HTTP 404\)",
                     "-t with a missing secret",
                     profile_merchant={"secret": "vault:secret/ocp/nosuch#secret",
                                       "public_key": "vault:secret/ocp/nosuch#public_key"})
        st.set_token("hvs.ocp-test-unknown-token-55555")
        _check_fails(st, "secret", r"vault refused the token from token_file \(HTTP 403\)",
                     "-t with a bad token")
        st.set_token(ROOT_TOKEN)
        v.deny("secret", KV_PATH)
        _check_fails(st, "secret", r"permission denied by vault \(HTTP 403\)",
                     "-t with the read denied")
        v.deny("secret", KV_PATH, deny=False)
        v.seal()
        _check_fails(st, "secret", r"vault sealed or unavailable \(HTTP 503\)",
                     "-t with Vault sealed")
        v.unseal()
        rc, out, err, _, _, _ = _check(st)
        assert_eq(rc, 0, "-t once Vault is fine again (stderr: %s)" % err)
    finally:
        v.stop()


@test
def check_mode_vault_version_unusable():
    """-t applies the daemon's checks to what it read: a version without the
    secret field (line of secret), without the public_key field (line of
    public_key), with an empty secret, with a two-line public key."""
    s = sim()
    v = new_vault()
    st = Setup(s, v, name="chk-fields")
    try:
        v.write("secret", KV_PATH, {"public_key": VM2[0]})
        _check_fails(st, "secret", r"vault:secret/ocp/merchant: Vault secret version 2 lacks "
                     r"field secret$", "-t with no secret field")
        v.write("secret", KV_PATH, {"secret": VM2[1]})
        _check_fails(st, "public_key", r"vault:secret/ocp/merchant: Vault secret version 3 "
                     r"lacks field public_key$", "-t with no public_key field")
        v.write("secret", KV_PATH, {"public_key": VM2[0], "secret": ""})
        _check_fails(st, "secret", r"Vault secret version 4: field secret is empty",
                     "-t with an empty secret")
        v.write("secret", KV_PATH, {"public_key": "two\nlines", "secret": VM2[1]})
        _check_fails(st, "public_key", r"Vault secret version 5: public key must be one",
                     "-t with a two-line public key")
    finally:
        v.stop()


@test
def check_mode_wrong_vault_ca():
    """-t with [vault] ca_file of another CA: exit 1, the line says the
    certificate did not verify; Vault saw no read."""
    s = sim()
    v = new_vault()
    st = Setup(s, v, name="chk-ca")
    try:
        _check_fails(st, "secret", r"TLS handshake with vault failed \(certificate "
                     r"verification failed: ", "-t with the wrong CA",
                     vault={"ca_file": certs()["other_ca"]})
        assert_eq(v.stats()["reads"], 0, "reads that reached Vault")
    finally:
        v.stop()


class StallVault:
    """A Vault stand-in on 127.0.0.1 (port 0) for -t's time cap.  "silent":
    accepts TCP connections and never sends a byte (not even the TLS
    handshake).  "slow": TLS with the test certificate, each answer after
    delay seconds: a token lookup succeeds (no expiry), every KV read is
    refused (403), so the client takes every step it may take: lookup, read,
    re-authentication, re-read."""

    def __init__(self, mode, delay=0.0):
        self.mode, self.delay = mode, delay
        self.lookups = self.reads = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conns = []
        self._ls = socket.socket()
        self._ls.bind(("127.0.0.1", 0))
        self._ls.listen(16)
        self.url = "https://127.0.0.1:%d" % self._ls.getsockname()[1]
        self._ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ctx.load_cert_chain(certs()["server"], certs()["server_key"])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                c, _ = self._ls.accept()
            except OSError:
                return
            with self._lock:
                self._conns.append(c)
            if self.mode == "slow":
                threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            t = self._ctx.wrap_socket(c, server_side=True)
            with self._lock:
                self._conns.append(t)
            buf = b""
            while not self._stop.is_set():
                while b"\r\n\r\n" not in buf:
                    b = t.recv(4096)
                    if not b:
                        return
                    buf += b
                head, _, buf = buf.partition(b"\r\n\r\n")
                target = head.split(b" ")[1]
                if self._stop.wait(self.delay):
                    return
                if target == b"/v1/auth/token/lookup-self":
                    with self._lock:
                        self.lookups += 1
                    status, body = "200 OK", b'{"data":{"ttl":0,"renewable":false}}'
                else:
                    with self._lock:
                        self.reads += 1
                    status, body = "403 Forbidden", b'{"errors":["permission denied"]}'
                t.sendall(("HTTP/1.1 %s\r\nContent-Type: application/json\r\n"
                           "Content-Length: %d\r\n\r\n" % (status, len(body))).encode()
                          + body)
        except (OSError, ValueError, IndexError):
            return

    def stop(self):
        self._stop.set()
        self._ls.close()
        with self._lock:
            for c in self._conns:
                try:
                    c.close()
                except OSError:
                    pass


def _check_capped(st, timeout_ms, cause, what):
    """-t with [vault] timeout_ms: exit 1 within its cap (4 x timeout_ms + 1 s,
    plus a margin for start-up) with exactly one line, at the merchant
    secret's, naming the source and the cause; returns the seconds taken."""
    cap = (4 * timeout_ms + 1000) / 1000.0
    err, took = _check_fails(st, "secret", r"vault:secret/ocp/merchant: " + cause, what,
                             timeout=cap + 20, vault={"timeout_ms": str(timeout_ms)})
    assert_eq(len(err.splitlines()), 1, what + ": lines on stderr")
    assert_true(took < cap + 1.5, "%s: -t took %.1f s, its cap is %.1f s" % (what, took, cap))
    return took


@test
def check_mode_vault_wait_is_capped():
    """-t waits for Vault at most 4 x [vault] timeout_ms + 1 s in all (the cap
    over every step the client may take: lookup or login, read, and one
    re-authentication and re-read after a 403).  A Vault that accepts the
    connection but never sends a byte: exit 1 within the cap, one line naming
    profile, key and source, nothing secret.  A Vault that answers every step
    slowly but inside timeout_ms, refusing each read: the longest chain runs
    to its end inside the cap, so the line gives Vault's refusal, not 'no
    answer'."""
    s = sim()
    v = StallVault("silent")
    st = Setup(s, v, name="chk-silent")
    try:
        # the step's own timeout, or the cap should a step ever go unbounded
        _check_capped(st, 500, r"(vault did not answer in time|no answer from vault within "
                      r"3000 ms)$", "-t with a Vault that never answers")
    finally:
        v.stop()
    # 4 x 1.1 s: more than a cap of 2 x timeout_ms + 1 s or 3 x timeout_ms would allow
    v = StallVault("slow", delay=1.1)
    st = Setup(s, v, name="chk-slow")
    try:
        took = _check_capped(st, 1500, r"permission denied by vault \(HTTP 403\)$",
                             "-t with a slow Vault refusing the reads")
        assert_eq((v.lookups, v.reads), (2, 2), "lookups and reads: the whole chain")
        assert_true(took >= 4 * 1.1, "-t took %.1f s: the four steps, one after the other"
                    % took)
    finally:
        v.stop()


@test
def unit_does_not_run_the_check_before_start():
    """-t fails while Vault is unreachable, so the shipped unit must not run
    it as ExecStartPre= (a Vault outage would become a failed start, issue 7)."""
    unit = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), "systemd", "ocp-proxy.service")
    with open(unit) as f:
        lines = [l.strip() for l in f if not l.lstrip().startswith("#")]
    assert_true(any(l.startswith("ExecStart=") for l in lines), "the unit has ExecStart=")
    pre = [l for l in lines if l.startswith("ExecStartPre=") and " -t" in l]
    assert_eq(pre, [], "ExecStartPre= lines that run ocp-proxy -t")


# ------------------------------------------------------------------ i

@test
def secrets_never_in_stderr_or_audit():
    """At log level debug, with AppRole, short renewable tokens, a rotation,
    an outage and a SIGHUP: no token, secret_id or API secret in stderr or
    the audit trail (and none in any earlier proxy's either)."""
    s = sim()
    v = new_vault(token_ttl_ms=2000)
    st = Setup(s, v)
    try:
        p = st.start(vault=st.approle(), log={"level": "debug"})
        wait_status(p, "merchant", 200, 5, "first Vault read")
        signed_ok(s, p, "partner", PARTNER_PUBLIC, "partner")
        _rotates(s, v, p, VM2, "rotation at debug level")
        v.down(1200)
        time.sleep(1.5)
        p.signal(signal.SIGHUP)
        Log(p).wait("reloaded", 3)
        _steady(p, 2.5, "renewals at debug level")
        assert_true(v.stats()["renewals"] >= 1, "a renewal happened")
        # a login refused (rotated secret_id) is logged without the value
        log = Log(p).mark()
        v.config(secret_id="rotated-secret-id-77777777")
        issued("rotated-secret-id-77777777")
        v.expire_tokens()
        log.wait("AppRole login", 4, "the refused login is logged")
    finally:
        st.stop()
        v.stop()
    for x in _setups:
        if x.proxy is None:
            continue
        no_secrets(x.proxy.stderr_text(), "stderr of %s" % os.path.basename(x.dir))
        no_secrets(x.audit_text(), "audit of %s" % os.path.basename(x.dir))
    assert_true(st.audit_text().count('"phase"') >= 4, "the audit trail has records")


# ------------------------------------------------------------------ j

def _proc(pid, name):
    with open("/proc/%d/%s" % (pid, name), "rb") as f:
        return f.read()


@test
def memory_hygiene_no_core_not_dumpable_env_wiped():
    """RLIMIT_CORE 0, not dumpable (/proc/PID/* owned by root while the process
    runs as another user), secret pages locked and excluded from dumps
    (smaps VmFlags lo + dd), and the env: value gone from /proc/PID/environ."""
    if os.environ.get("OCP_PROXY_WRAPPER"):
        raise Skip("checks /proc of the proxy itself, not of a wrapper")
    s = sim()
    v = new_vault()
    env_secret = P2[1]
    env = dict(os.environ, OCP_IT_PARTNER_SECRET=env_secret)
    prefix = ()
    user = None
    work = None
    if os.geteuid() == 0 and shutil.which("setpriv"):
        try:
            user = pwd.getpwnam("nobody")
        except KeyError:
            user = None
    st = Setup(s, v, name="hyg")
    over = {"profile_partner": {"public_key": P2[0], "secret": "env:OCP_IT_PARTNER_SECRET"}}
    if user is not None:
        # the proxy runs as nobody: a private world-traversable copy of what it reads
        work = tempfile.mkdtemp(prefix="ocp-it-hyg-")
        os.chmod(work, 0o711)
        for sub in ("state",):
            os.mkdir(os.path.join(work, sub), 0o700)
        ca = shutil.copy(certs()["ca"], os.path.join(work, "ca.pem"))
        os.chmod(ca, 0o644)
        tokf = write_file(os.path.join(work, "token"), ROOT_TOKEN + "\n")
        for path in (os.path.join(work, "state"), tokf):
            os.chown(path, user.pw_uid, user.pw_gid)
        over["upstream"] = {"ca_file": ca}
        over["vault"] = {"ca_file": ca, "token_file": tokf}
        over["state"] = {"dir": os.path.join(work, "state")}
        over["audit"] = {"path": os.path.join(work, "state", "audit.jsonl")}
        prefix = ("setpriv", "--reuid=%d" % user.pw_uid, "--regid=%d" % user.pw_gid,
                  "--clear-groups", "--")
    try:
        owner = (user.pw_uid, user.pw_gid) if user is not None else None
        p = st.start(env=env, argv_prefix=prefix, conf_dir=work, conf_owner=owner, **over)
        wait_status(p, "merchant", 200, 5, "first Vault read")
        signed_ok(s, p, "partner", P2[0], "env: partner")
        pid = p.pid
        limits = _proc(pid, "limits").decode()
        m = re.search(r"^Max core file size\s+(\S+)\s+(\S+)", limits, re.M)
        assert_true(m is not None, "core limit line in /proc/PID/limits")
        assert_eq((m.group(1), m.group(2)), ("0", "0"), "RLIMIT_CORE soft, hard")
        status = _proc(pid, "status").decode()
        if user is not None:
            uid = int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))
            assert_eq(uid, user.pw_uid, "the proxy runs as nobody")
            for name in ("status", "environ", "mem"):
                assert_eq(os.stat("/proc/%d/%s" % (pid, name)).st_uid, 0,
                          "/proc/PID/%s owner (root: PR_SET_DUMPABLE 0)" % name)
        environ = _proc(pid, "environ")
        assert_not_contains(environ, env_secret, "/proc/PID/environ")
        assert_true(b"OCP_IT_PARTNER_SECRET=" + env_secret.encode() not in environ,
                    "env: variable wiped")
        # AddressSanitizer intercepts mlock() and makes it a no-op, so the
        # locking itself can only be observed in a build without it
        if not os.environ.get("ASAN_OPTIONS"):
            vmlck = int(re.search(r"^VmLck:\s+(\d+)", status, re.M).group(1))
            assert_true(vmlck > 0, "VmLck %d kB: secret pages are locked" % vmlck)
        smaps = _proc(pid, "smaps").decode("latin-1")
        flags = re.findall(r"^VmFlags:(.*)$", smaps, re.M)
        both = [f for f in flags if (" lo" in f or os.environ.get("ASAN_OPTIONS")) and " dd" in f]
        assert_true(len(both) >= 2, "%d mappings both locked (lo) and no-dump (dd)" % len(both))
        no_secrets(p.stderr_text(), "stderr")
    finally:
        st.stop()
        v.stop()
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
