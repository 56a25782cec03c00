"""Shared tooling for the ocp-proxy integration tests (Python 3 stdlib only).

    from harness import Sim, Proxy, request, raw, test, main, ...

* Sim    -- runs build/ocp-sim (the OnChainPay simulator) on a random loopback
            port with throwaway TLS material and fake keys; control plane access.
* Proxy  -- runs build/ocp-proxy -c <ini> and waits for "listening on ADDR".
* request / raw / connect -- plain-HTTP clients for the proxy's listener
            (TCP port, "host:port", or "unix:/path").
* test / main -- a tiny runner printing "ok N - name" / "not ok N - name" and a
            final "N passed, N failed" line (tests/run-all.sh sums those).

The build directory comes from $OCP_BUILD (default "build"; a relative path is
tried against the current directory, then the repository top).  Set
$OCP_SIM_WRAPPER / $OCP_PROXY_WRAPPER (e.g. "valgrind -q --leak-check=full
--error-exitcode=99") to run a binary under a tool.

Secrets: every secret handed to Sim or registered with add_secret() is scrubbed
from anything this module prints (tracebacks, stderr excerpts).  Assertion
helpers report what was checked, never the bodies they looked at.
"""

import atexit
import hashlib
import hmac
import http.client
import itertools
import json
import os
import random as _random
import re
import select
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MERCHANT_PUBLIC = "pub-test-merchant"
MERCHANT_SECRET = "fake-secret-merchant-0123456789"
PARTNER_PUBLIC = "pub-test-partner"
PARTNER_SECRET = "fake-secret-partner-9876543210"

_lock = threading.RLock()
_tmp = None
_procs = {}          # pid -> subprocess.Popen still possibly running
_secrets = set()
_certs = None
_cleaned = False


# ---------------------------------------------------------------- basics

def build_dir():
    """Absolute path of the build directory ($OCP_BUILD, default "build")."""
    b = os.environ.get("OCP_BUILD", "build")
    if os.path.isabs(b):
        return b
    if os.path.isdir(b):
        return os.path.abspath(b)
    return os.path.join(TOP, b)


def binary(name):
    return os.path.join(build_dir(), name)


def tmpdir():
    """The per-run temporary directory (removed at exit)."""
    global _tmp
    with _lock:
        if _tmp is None:
            _tmp = tempfile.mkdtemp(prefix="ocp-it-")
            os.chmod(_tmp, 0o700)
        return _tmp


def subdir(prefix):
    return tempfile.mkdtemp(prefix=prefix + "-", dir=tmpdir())


def write_file(path, content, mode=0o600):
    """Write str/bytes to path with the given mode; returns path."""
    data = content.encode() if isinstance(content, str) else content
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    return path


def tmpfile(name, content, mode=0o600):
    """Write a file in a fresh sub-directory of the run's temp dir."""
    return write_file(os.path.join(subdir("f"), name), content, mode)


def add_secret(s):
    """Register a secret so that this module never prints it."""
    if s:
        _secrets.add(s if isinstance(s, str) else s.decode("latin-1"))


def scrub(text):
    """text with every registered secret replaced by [SECRET]."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    for s in sorted(_secrets, key=len, reverse=True):
        text = text.replace(s, "[SECRET]")
    return text


def sign(secret, body):
    """Lowercase hex HMAC-SHA256(secret text bytes, body bytes)."""
    if isinstance(secret, str):
        secret = secret.encode()
    if isinstance(body, str):
        body = body.encode()
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


_nonce_last = 0


def nonce():
    """A fresh, strictly increasing numeric nonce (ms clock based)."""
    global _nonce_last
    with _lock:
        _nonce_last = max(_nonce_last + 1, int(time.time() * 1000))
        return _nonce_last


def free_port():
    """A loopback TCP port that was free a moment ago, outside the kernel's
    ephemeral range.  Tests use it for a server that starts later; a port
    from the ephemeral range can meanwhile become the source port of some
    outgoing connection, or of the proxy's own connect to that port (which
    then connects to itself), and the server cannot bind it."""
    lo, hi = 32768, 60999
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        pass
    ports = [p for p in range(10000, 65536) if not lo <= p <= hi]
    for port in _random.sample(ports, min(200, len(ports))):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    s = socket.socket()         # no luck outside the range: any free port
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def certs():
    """Paths of the run's TLS material (tests/gen-certs.sh, made once)."""
    global _certs
    with _lock:
        if _certs is None:
            d = os.path.join(tmpdir(), "certs")
            r = subprocess.run([os.path.join(TOP, "tests", "gen-certs.sh"), d],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            if r.returncode != 0:
                raise RuntimeError("gen-certs.sh failed: " + scrub(r.stdout))
            _certs = {"dir": d,
                      "ca": os.path.join(d, "ca.pem"),
                      "server": os.path.join(d, "server.pem"),
                      "server_key": os.path.join(d, "server.key"),
                      "other_ca": os.path.join(d, "other-ca.pem")}
        return dict(_certs)


def client_context(cafile=None):
    """An ssl context that trusts only the test CA."""
    ctx = ssl.create_default_context(cafile=cafile or certs()["ca"])
    return ctx


# ---------------------------------------------------------------- processes

def _wrapper(var):
    w = os.environ.get(var, "").strip()
    return shlex.split(w) if w else []


def _spawn(argv, stderr_path, env=None, cwd=None):
    err = open(stderr_path, "wb")
    try:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                             stdout=err, stderr=err, env=env, cwd=cwd)
    finally:
        err.close()
    with _lock:
        _procs[p.pid] = p
    return p


def _stop_proc(p, timeout=10.0, sig=signal.SIGTERM):
    """Stop p by PID: sig, wait up to timeout, then SIGKILL. Returns rc."""
    if p.poll() is None:
        try:
            os.kill(p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
    with _lock:
        _procs.pop(p.pid, None)
    return p.returncode


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def _tail(text, n=20):
    return scrub("\n".join(text.splitlines()[-n:]))


def _slow():
    """Start-up time allowance: more when a wrapper (valgrind) is used."""
    return 60.0 if (_wrapper("OCP_SIM_WRAPPER") or
                    _wrapper("OCP_PROXY_WRAPPER")) else 10.0


# ---------------------------------------------------------------- simulator

class Sim:
    """The OnChainPay simulator on 127.0.0.1:<random port>.

    keys: {public_key: secret}; defaults to the merchant and partner fakes.
    timeout: the simulator's HTTP idle/read timeout in seconds (default 120);
    a small value makes it close idle keep-alive connections.
    """

    def __init__(self, keys=None, wait=True, timeout=None, nonce_window=None):
        if keys is None:
            keys = {MERCHANT_PUBLIC: MERCHANT_SECRET,
                    PARTNER_PUBLIC: PARTNER_SECRET}
        self.keys = dict(keys)
        for s in self.keys.values():
            add_secret(s)
        c = certs()
        self.dir = subdir("sim")
        self.keys_file = write_file(os.path.join(self.dir, "keys.txt"),
                                    "".join("%s %s\n" % kv for kv in self.keys.items()))
        self.port_file = os.path.join(self.dir, "port")
        self.record_file = os.path.join(self.dir, "records.jsonl")
        self.stderr_path = os.path.join(self.dir, "stderr")
        self.ca = c["ca"]
        self.port = None
        self._conn = None
        argv = _wrapper("OCP_SIM_WRAPPER") + [
            binary("ocp-sim"), "--listen", "127.0.0.1:0",
            "--cert", c["server"], "--key", c["server_key"],
            "--keys", self.keys_file, "--port-file", self.port_file,
            "--record", self.record_file]
        if timeout is not None:
            argv += ["--timeout", str(int(timeout))]
        if nonce_window is not None:
            argv += ["--nonce-window", str(int(nonce_window))]
        self.proc = _spawn(argv, self.stderr_path)
        self.pid = self.proc.pid
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout=None):
        deadline = time.monotonic() + (timeout or _slow())
        while time.monotonic() < deadline:
            txt = _read(self.port_file)
            if txt.endswith("\n"):
                self.port = int(txt)
                return self
            if self.proc.poll() is not None:
                raise RuntimeError("ocp-sim exited (%s):\n%s" % (
                    self.proc.returncode, _tail(self.stderr_text())))
            time.sleep(0.02)
        raise RuntimeError("ocp-sim did not start:\n" + _tail(self.stderr_text()))

    @property
    def url(self):
        return "https://127.0.0.1:%d" % self.port

    @property
    def hostport(self):
        return "127.0.0.1:%d" % self.port

    def context(self):
        return client_context(self.ca)

    def connection(self, timeout=10):
        """A new HTTPS connection to the simulator (caller closes it)."""
        return http.client.HTTPSConnection("127.0.0.1", self.port,
                                           context=self.context(), timeout=timeout)

    def stderr_text(self):
        return _read(self.stderr_path)

    def record_lines(self):
        """The --record file, parsed line by line."""
        return [json.loads(l) for l in _read(self.record_file).splitlines() if l]

    # -- control plane (one keep-alive connection, reopened when needed)
    def _control(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = self.connection()
            try:
                self._conn.request(method, path, body=data,
                                   headers={"Content-Type": "application/json"})
                r = self._conn.getresponse()
                payload = r.read()
                if r.status != 200:
                    raise RuntimeError("%s %s -> %d" % (method, path, r.status))
                return json.loads(payload)
            except (http.client.HTTPException, ConnectionError, ssl.SSLError,
                    socket.timeout, OSError):
                self._conn.close()
                self._conn = None
                if attempt == 2:
                    raise

    def fault(self, mode, **kw):
        """Set the fault: mode none|delay|close|close_mid|status500|garbage|huge|no_ctype|
        status204|status304 (no body, no Content-Type, no Content-Length),
        kw ms=, bytes=, count= (0/absent: until changed)."""
        d = {"mode": mode}
        d.update(kw)
        return self._control("POST", "/__sim/fault", d)

    def records(self):
        return self._control("GET", "/__sim/records")

    def reset(self):
        return self._control("POST", "/__sim/reset", {})

    def stats(self):
        return self._control("GET", "/__sim/stats")

    # -- signed API calls straight to the simulator
    def post(self, path, body, public=MERCHANT_PUBLIC, secret=None,
             signature=None, headers=None, conn=None, timeout=10):
        """POST body to the simulator signed with secret (default: the key's
        own).  signature overrides the computed one; public=None omits the
        key header.  Returns (status, headers, body bytes)."""
        if isinstance(body, str):
            body = body.encode()
        h = {"Content-Type": "application/json"}
        if public is not None:
            h["x-api-public-key"] = public
            if secret is None:
                secret = self.keys.get(public)
        if signature is None and secret is not None:
            signature = sign(secret, body)
        if signature is not None:
            h["x-api-signature"] = signature
        h.update(headers or {})
        own = conn is None
        c = conn or self.connection(timeout)
        try:
            c.request("POST", path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            return r.status, _lower_headers(r.getheaders()), data
        finally:
            if own:
                c.close()

    def stop(self, timeout=10.0):
        """SIGTERM by PID, wait, SIGKILL if needed.  Returns the exit code."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        return _stop_proc(self.proc, timeout)


# ---------------------------------------------------------------- proxy

_LISTEN_RE = re.compile(r"listening on (\S+)")


class Proxy:
    """build/ocp-proxy -c <ini_text written to a temp file>.

    wait=True blocks until stderr says "listening on ADDR" (up to 10 s).
    argv_prefix: a command that ends by exec'ing the rest of its arguments
    (e.g. ["unshare", "-m", "sh", "-c", 'mount ... && exec "$@"', "sh"]),
    put before $OCP_PROXY_WRAPPER and the binary; self.pid is then the
    proxy's only if every step execs.
    conf_dir: where to write the config file and stderr (default: a new
    sub-directory of the run's private temp dir; pass another directory when
    the proxy runs as a user that cannot enter that one).
    conf_owner: (uid, gid) to chown the config file to (with conf_dir, for a
    proxy started as another user through argv_prefix).
    """

    def __init__(self, ini_text, args=(), wait=True, env=None, timeout=None,
                 argv_prefix=(), conf_dir=None, conf_owner=None):
        self.dir = conf_dir or subdir("proxy")
        self.conf = write_file(os.path.join(self.dir, "ocp-proxy.ini"), ini_text)
        if conf_owner is not None:
            os.chown(self.conf, conf_owner[0], conf_owner[1])
        self.stderr_path = os.path.join(self.dir, "stderr")
        self.addr = self.host = self.port = self.unix = None
        argv = list(argv_prefix) + _wrapper("OCP_PROXY_WRAPPER") + [
            binary("ocp-proxy"), "-c", self.conf] + list(args)
        self.proc = _spawn(argv, self.stderr_path, env=env)
        self.pid = self.proc.pid
        if wait:
            self.wait_listening(timeout or _slow())

    def wait_listening(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = _LISTEN_RE.search(self.stderr_text())
            if m:
                self._set_addr(m.group(1))
                return self
            if self.proc.poll() is not None:
                raise RuntimeError("ocp-proxy exited (%s) before listening:\n%s"
                                   % (self.proc.returncode,
                                      _tail(self.stderr_text())))
            time.sleep(0.02)
        raise RuntimeError("ocp-proxy not listening after %.0f s:\n%s"
                           % (timeout, _tail(self.stderr_text())))

    def _set_addr(self, addr):
        self.addr = addr
        if addr.startswith("unix:"):
            self.unix = addr[5:]
        else:
            host, _, port = addr.rpartition(":")
            self.host = host.strip("[]")
            self.port = int(port)

    @property
    def target(self):
        """What request()/raw()/connect() accept for this proxy."""
        return self.addr

    def stderr_text(self):
        """stderr so far.  The proxy writes its log lines at the end of the
        event-loop pass, just after the answers of that pass went out, so
        wait until the file stops growing (30 ms, at most 1 s)."""
        text = _read(self.stderr_path)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            time.sleep(0.03)
            again = _read(self.stderr_path)
            if again == text:
                break
            text = again
        return text

    def signal(self, sig):
        os.kill(self.pid, sig)

    def running(self):
        return self.proc.poll() is None

    def wait_exit(self, timeout=10.0):
        """Exit code, or None if still running after timeout."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        finally:
            if self.proc.returncode is not None:
                with _lock:
                    _procs.pop(self.pid, None)

    def stop(self, timeout=10.0):
        """SIGTERM, wait up to timeout, SIGKILL only as a last resort.
        Returns the exit code (-9 if it had to be killed)."""
        return _stop_proc(self.proc, timeout)


def run_proxy(args, timeout=20, env=None):
    """Run ocp-proxy with args to completion: (exit code, stdout, stderr)."""
    r = subprocess.run(_wrapper("OCP_PROXY_WRAPPER") + [binary("ocp-proxy")] +
                       list(args), stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, env=env)
    return (r.returncode, r.stdout.decode("utf-8", "replace"),
            r.stderr.decode("utf-8", "replace"))


# ---------------------------------------------------------------- clients

def _lower_headers(pairs):
    out = {}
    for k, v in pairs:
        k = k.lower()
        out[k] = out[k] + ", " + v if k in out else v
    return out


def _split_target(target):
    """(family, address) for a port number, "host:port" or "unix:/path"."""
    if isinstance(target, int):
        return socket.AF_INET, ("127.0.0.1", target)
    t = str(target)
    if t.startswith("unix:"):
        return socket.AF_UNIX, t[5:]
    if t.isdigit():
        return socket.AF_INET, ("127.0.0.1", int(t))
    host, _, port = t.rpartition(":")
    return socket.AF_INET, (host.strip("[]") or "127.0.0.1", int(port))


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


def connect(target, timeout=10):
    """A keep-alive http.client connection to a proxy listener."""
    fam, addr = _split_target(target)
    if fam == socket.AF_UNIX:
        return _UnixHTTPConnection(addr, timeout)
    return http.client.HTTPConnection(addr[0], addr[1], timeout=timeout)


def request(port, path, body=b"", method="POST", headers=None, timeout=10,
            conn=None):
    """One HTTP request to the proxy: (status, {lowercased: value}, body).

    port: a port number, "host:port" or "unix:/path".  Pass conn (from
    connect()) to reuse a keep-alive connection.
    """
    if isinstance(body, str):
        body = body.encode()
    h = {}
    if method == "POST" and "content-type" not in {k.lower() for k in (headers or {})}:
        h["Content-Type"] = "application/json"
    h.update(headers or {})
    own = conn is None
    c = conn or connect(port, timeout)
    try:
        c.request(method, path, body=body if body or method == "POST" else None,
                  headers=h)
        r = c.getresponse()
        data = r.read()
        return r.status, _lower_headers(r.getheaders()), data
    finally:
        if own:
            c.close()


def raw(port, data, timeout=5.0, half_close=False):
    """Send data as-is; return every byte received until close or timeout."""
    fam, addr = _split_target(port)
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        s.connect(addr)
        if data:
            s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not b:
                break
            chunks.append(b)
    finally:
        s.close()
    return b"".join(chunks)


def envelope(body):
    """Parse a JSON response body (bytes) or raise AssertionError quietly."""
    try:
        return json.loads(body)
    except ValueError:
        raise AssertionError("response body is not JSON (%d bytes)" % len(body)) from None


def error_name(body):
    """error.name of an error envelope, or None."""
    try:
        e = json.loads(body).get("error")
        return e.get("name") if isinstance(e, dict) else None
    except (ValueError, AttributeError):
        return None


# ---------------------------------------------------------------- assertions

def assert_true(cond, what):
    if not cond:
        raise AssertionError(what)


def assert_eq(got, want, what):
    """Equality; echoes both values: use only for non-secret values."""
    if got != want:
        raise AssertionError("%s: expected %r, got %r" % (what, want, got))


def assert_status(resp, want, what=""):
    """resp = (status, headers, body); reports the status and error name."""
    status, _, body = resp
    if status != want:
        raise AssertionError("%s: expected HTTP %d, got %d (error name %r)"
                             % (what or "status", want, status, error_name(body)))


def _as_bytes(x):
    return x.encode() if isinstance(x, str) else bytes(x)


def assert_contains(haystack, needle, what):
    if _as_bytes(needle) not in _as_bytes(haystack):
        raise AssertionError("%s: expected text not found" % what)


def assert_not_contains(haystack, needle, what):
    """Fail if needle occurs in haystack; reports only `what`."""
    if needle and _as_bytes(needle) in _as_bytes(haystack):
        raise AssertionError("%s: forbidden text is present" % what)


def wait_for(pred, timeout=5.0, what="condition", interval=0.02):
    """Poll pred() until truthy; returns its value or raises."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(interval)


# ---------------------------------------------------------------- runner

class Skip(Exception):
    """Raise in a test to report it as skipped (counted as passed)."""


_tests = []


def test(fn):
    """Register fn as a test (run in definition order)."""
    _tests.append(fn)
    return fn


class Notify:
    """A unix datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self):
        self.path = os.path.join(subdir("notify"), "n.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.msgs = []          # (monotonic time, text)

    def env(self, **extra):
        e = dict(os.environ, NOTIFY_SOCKET=self.path)
        for k in ("WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID"):
            e.pop(k, None)
        e.update({k: str(v) for k, v in extra.items()})
        return e

    def collect(self, seconds):
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            r, _, _ = select.select([self.sock], [], [], left)
            if r:
                self.msgs.append((time.monotonic(), self.sock.recv(4096).decode()))

    def wait(self, text, timeout=5.0, after=0):
        """Index of the first message equal to text at or after index after."""
        end = time.monotonic() + timeout
        while True:
            for i in range(after, len(self.msgs)):
                if text in self.msgs[i][1].split("\n"):
                    return i
            if time.monotonic() >= end:
                raise AssertionError("no %s from the proxy (got %r)"
                                     % (text, [m for _, m in self.msgs][-8:]))
            self.collect(0.05)

    def close(self):
        self.sock.close()


def main(argv=None):
    """Run the registered tests (optionally only those whose name contains
    one of argv's words), print TAP-like lines and the summary, exit."""
    words = (sys.argv[1:] if argv is None else argv)
    chosen = [t for t in _tests
              if not words or any(w in t.__name__ for w in words)]
    passed = failed = 0
    try:
        for n, fn in enumerate(chosen, 1):
            name = fn.__name__
            try:
                fn()
            except Skip as e:
                passed += 1
                print("ok %d - %s # SKIP %s" % (n, name, scrub(str(e))), flush=True)
            except BaseException as e:
                if isinstance(e, (KeyboardInterrupt, SystemExit)):
                    raise
                failed += 1
                print("not ok %d - %s" % (n, name))
                tb = scrub(traceback.format_exc())
                print("\n".join("#  " + l for l in tb.rstrip().splitlines()),
                      flush=True)
            else:
                passed += 1
                print("ok %d - %s" % (n, name), flush=True)
    finally:
        cleanup()
    print("%d passed, %d failed" % (passed, failed), flush=True)
    sys.exit(1 if failed else 0)


def fail_alloc_env(fn, *funcs):
    """An environment that makes the proxy's first call of fn (evbuffer_new or
    calloc) from one of funcs fail (tests/integration/failalloc.c), or Skip."""
    if shutil.which("cc") is None or shutil.which("nm") is None:
        raise Skip("needs cc and nm to build the fault-injection library")
    if os.environ.get("OCP_PROXY_WRAPPER"):
        raise Skip("the wrapper (valgrind) replaces the allocator the fault needs")
    so = os.path.join(subdir("failalloc"), "failalloc.so")
    src = os.path.join(TOP, "tests", "integration", "failalloc.c")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", so, src, "-ldl"] +
                   (["-DFAIL_CALLOC"] if fn == "calloc" else []), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    syms = subprocess.run(["nm", "-S", binary("ocp-proxy")], stdout=subprocess.PIPE,
                          check=True, timeout=60).stdout.decode().split("\n")
    ranges = []
    for line in syms:
        f = line.split()
        if len(f) == 4 and f[3] in funcs:
            ranges.append("%s:%s" % (f[0], f[1]))
    if not ranges:
        raise Skip("no symbols for %s in the binary" % ", ".join(funcs))
    env = dict(os.environ, LD_PRELOAD=so, OCP_FAIL_FN=fn, OCP_FAIL_IN=",".join(ranges))
    env["ASAN_OPTIONS"] = (os.environ.get("ASAN_OPTIONS", "") +
                           ":verify_asan_link_order=0").lstrip(":")
    return env


def cleanup():
    """Stop every process we started (by PID) and remove the temp dir."""
    global _cleaned, _tmp
    with _lock:
        procs = list(_procs.values())
    for p in procs:
        try:
            _stop_proc(p, 5.0)
        except Exception:
            pass
    with _lock:
        if _tmp is not None and not os.environ.get("OCP_KEEP_TMP"):
            shutil.rmtree(_tmp, ignore_errors=True)
            _tmp = None
        _cleaned = True


def _on_signal(sig, frame):
    # leave through SystemExit so that atexit/finally handlers run
    raise SystemExit(128 + sig)


atexit.register(cleanup)
for _s in (signal.SIGTERM, signal.SIGHUP):
    try:
        signal.signal(_s, _on_signal)
    except (ValueError, OSError):
        pass
