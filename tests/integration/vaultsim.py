"""VaultSim: runs build/ocp-vault-sim (a HashiCorp Vault stand-in) for tests.

    from vaultsim import VaultSim, ROOT_TOKEN, ROLE_ID, SECRET_ID

    v = VaultSim(namespace="team", token_ttl_ms=4000)
    v.write("secret", "ocp/merchant", {"public_key": "pub", "secret": "s3cr3t..."})
    v.api("GET", "/v1/secret/data/ocp/merchant", token=ROOT_TOKEN)
    v.seal(); v.unseal(); v.down(2000); v.expire_tokens(); v.stats()

It listens on 127.0.0.1:<random port> with the run's test certificates
(harness.certs()), so `v.url` can be a proxy's [vault] address and
`v.ca` its ca_file.  The root token and the AppRole secret_id are registered
with harness.add_secret(), so tracebacks never print them.
"""

import http.client
import json
import os
import socket
import ssl
import time

from harness import (_read, _slow, _spawn, _stop_proc, _tail, _wrapper, add_secret,
                     binary, certs, client_context, subdir, write_file)

ROOT_TOKEN = "hvs.ocp-test-root-token-0123456789"
ROLE_ID = "ocp-proxy-role"
SECRET_ID = "fake-secret-id-0123456789abcdef"


class VaultSim:
    """ocp-vault-sim on 127.0.0.1:<random port>.

    namespace: required X-Vault-Namespace (None: none).
    token_ttl_ms: TTL of every token, the root token included (0: none).
    token_max_ttl_ms: cap of renewals.  no_renew: renew-self answers 403.
    approle: (role_id, secret_id) or None to disable AppRole.
    port: a fixed port (to restart a stopped server at the same address).
    """

    def __init__(self, namespace=None, token_ttl_ms=0, token_max_ttl_ms=0,
                 no_renew=False, root_token=ROOT_TOKEN, approle=(ROLE_ID, SECRET_ID),
                 port=0, wait=True, timeout=None, extra_args=()):
        c = certs()
        self.dir = subdir("vault")
        self.ca = c["ca"]
        self.root_token = root_token
        self.approle = approle
        self.namespace = namespace
        add_secret(root_token)
        if approle:
            add_secret(approle[1])
        self.port_file = os.path.join(self.dir, "port")
        self.stderr_path = os.path.join(self.dir, "stderr")
        self.port = None
        self._conn = None
        argv = _wrapper("OCP_SIM_WRAPPER") + [
            binary("ocp-vault-sim"), "--listen", "127.0.0.1:%d" % port,
            "--cert", c["server"], "--key", c["server_key"],
            "--port-file", self.port_file]
        if root_token:
            self.root_token_file = write_file(os.path.join(self.dir, "root-token"),
                                              root_token + "\n")
            argv += ["--root-token-file", self.root_token_file]
        if approle:
            argv += ["--approle", "%s:%s" % approle]
        if namespace:
            argv += ["--namespace", namespace]
        if token_ttl_ms:
            argv += ["--token-ttl-ms", str(int(token_ttl_ms))]
        if token_max_ttl_ms:
            argv += ["--token-max-ttl-ms", str(int(token_max_ttl_ms))]
        if no_renew:
            argv += ["--no-renew"]
        if timeout is not None:
            argv += ["--timeout", str(int(timeout))]
        argv += list(extra_args)
        self.argv = argv
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
                raise RuntimeError("ocp-vault-sim exited (%s):\n%s" % (
                    self.proc.returncode, _tail(self.stderr_text())))
            time.sleep(0.02)
        raise RuntimeError("ocp-vault-sim did not start:\n" + _tail(self.stderr_text()))

    @property
    def url(self):
        return "https://127.0.0.1:%d" % self.port

    def stderr_text(self):
        return _read(self.stderr_path)

    def context(self, cafile=None):
        return client_context(cafile or self.ca)

    def connection(self, timeout=10, cafile=None):
        """A new HTTPS connection to the server (caller closes it)."""
        return http.client.HTTPSConnection("127.0.0.1", self.port,
                                           context=self.context(cafile), timeout=timeout)

    # -- the Vault API
    def api(self, method, path, body=None, token=None, namespace=None, headers=None,
            conn=None, timeout=10):
        """One request to the Vault API: (status, parsed JSON or None, raw bytes).

        namespace: None sends the server's own namespace (if any); "" sends none;
        any other string is sent as X-Vault-Namespace."""
        h = {}
        if token is not None:
            h["X-Vault-Token"] = token
        ns = self.namespace if namespace is None else namespace
        if ns:
            h["X-Vault-Namespace"] = ns
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        own = conn is None
        c = conn or self.connection(timeout)
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            raw = r.read()
            try:
                doc = json.loads(raw) if raw else None
            except ValueError:
                doc = None
            return r.status, doc, raw
        finally:
            if own:
                c.close()

    def login(self, role_id=None, secret_id=None, namespace=None):
        """AppRole login: (status, doc); the token is doc["auth"]["client_token"]."""
        rid, sid = self.approle or (None, None)
        st, doc, _ = self.api("POST", "/v1/auth/approle/login",
                              {"role_id": role_id or rid, "secret_id": secret_id or sid},
                              namespace=namespace)
        if st == 200:
            add_secret(doc["auth"]["client_token"])
        return st, doc

    def read(self, mount, path, token=None, namespace=None):
        """KV v2 read: (status, doc)."""
        st, doc, _ = self.api("GET", "/v1/%s/data/%s" % (mount, path),
                              token=self.root_token if token is None else token,
                              namespace=namespace)
        return st, doc

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

    def write(self, mount, path, data):
        """Write a new version of mount/path; returns the version number."""
        for v in data.values():
            if isinstance(v, str) and len(v) >= 8:
                add_secret(v)
        return self._control("POST", "/__vault/kv",
                             {"mount": mount, "path": path, "data": data})["version"]

    def delete(self, mount, path):
        return self._control("POST", "/__vault/kv-delete",
                             {"mount": mount, "path": path})["deleted"]

    def seal(self):
        return self._control("POST", "/__vault/seal", {})

    def unseal(self):
        return self._control("POST", "/__vault/unseal", {})

    def down(self, ms, mode="close"):
        """Close (mode "close") or hold then close ("hang") every API request for ms."""
        return self._control("POST", "/__vault/down", {"ms": int(ms), "mode": mode})

    def up(self):
        return self._control("POST", "/__vault/up", {})

    def expire_tokens(self):
        return self._control("POST", "/__vault/expire-tokens", {})["expired"]

    def new_token(self, ttl_ms=None, renewable=True, token_id=None):
        """Issue a token through the control plane; returns its id."""
        body = {"renewable": renewable}
        if ttl_ms is not None:
            body["ttl_ms"] = int(ttl_ms)
        if token_id is not None:
            body["id"] = token_id
        t = self._control("POST", "/__vault/token", body)["token"]
        add_secret(t)
        return t

    def config(self, **kw):
        """token_ttl_ms=, token_max_ttl_ms=, no_renew=, role_id=, secret_id=."""
        if kw.get("secret_id"):
            add_secret(kw["secret_id"])
        return self._control("POST", "/__vault/config", kw)

    def deny(self, mount, path, deny=True):
        return self._control("POST", "/__vault/deny",
                             {"mount": mount, "path": path, "deny": deny})["denied"]

    def stats(self):
        return self._control("GET", "/__vault/stats")

    def reset_stats(self):
        return self._control("POST", "/__vault/reset-stats", {})

    def stop(self, timeout=10.0):
        """SIGTERM by PID, wait, SIGKILL if needed.  Returns the exit code."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        return _stop_proc(self.proc, timeout)

    def restart(self):
        """Stop, then start again on the same port (state is lost)."""
        port = self.port
        self.stop()
        self.__init__(namespace=self.namespace, root_token=self.root_token,
                      approle=self.approle, port=port,
                      extra_args=self._extra_from_argv())
        return self

    def _extra_from_argv(self):
        out, a = [], self.argv
        for flag in ("--token-ttl-ms", "--token-max-ttl-ms"):
            if flag in a:
                out += [flag, a[a.index(flag) + 1]]
        if "--no-renew" in a:
            out.append("--no-renew")
        return out
