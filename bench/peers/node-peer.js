'use strict';
// Peer B: the OnChainPay signing proxy as a user would write it in Node.js, with built-ins only
// (http server, https.request through a keep-alive Agent, crypto HMAC, an appending WriteStream).
// Same env contract and behaviour as peer-a (nginx + Lua): nonce inserted after the opening brace
// when absent, HMAC-SHA256 hex of the exact body in x-api-signature, x-api-public-key, verified
// keep-alive TLS to the upstream, and with AUDIT_LOG set one redacted JSON audit line per request
// (buffered by the stream, no fsync).
// Env: LISTEN_PORT UPSTREAM_URL UPSTREAM_CA OCP_PUBLIC_KEY OCP_KEY_FILE [AUDIT_LOG] [LISTEN_HOST]
const http = require('http');
const https = require('https');
const crypto = require('crypto');
const fs = require('fs');

const env = process.env;
for (const v of ['LISTEN_PORT', 'UPSTREAM_URL', 'UPSTREAM_CA', 'OCP_PUBLIC_KEY', 'OCP_KEY_FILE']) {
  if (!env[v]) { console.error(`node-peer: ${v} is not set`); process.exit(2); }
}
const up = new URL(env.UPSTREAM_URL);
const KEY = crypto.createSecretKey(Buffer.from(fs.readFileSync(env.OCP_KEY_FILE, 'utf8').replace(/\s+$/, '')));
const PUB = env.OCP_PUBLIC_KEY;
const agent = new https.Agent({
  keepAlive: true, maxSockets: 64, maxFreeSockets: 64, ca: fs.readFileSync(env.UPSTREAM_CA),
});
const audit = env.AUDIT_LOG ? fs.createWriteStream(env.AUDIT_LOG, { flags: 'a' }) : null;

// keys whose values are replaced by "[REDACTED]" in audit lines (case-insensitive, any depth)
const REDACT = new Set(['password', 'passwd', 'secret', 'token', 'api_key', 'apikey', 'private_key', 'privatekey']);
function redact(v) {
  if (v !== null && typeof v === 'object') {
    for (const k of Object.keys(v)) {
      if (REDACT.has(k.toLowerCase())) v[k] = '[REDACTED]';
      else redact(v[k]);
    }
  }
  return v;
}

// unique, strictly increasing (one process); ms-timestamp based, like peer-a
let lastNonce = 0;
function nextNonce() {
  let n = Date.now();
  if (n <= lastNonce) n = lastNonce + 1;
  lastNonce = n;
  return n;
}

function reply(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function handle(req, res, raw) {
  const t0 = Date.now();
  let body = raw.toString('utf8');
  let obj;
  try { obj = JSON.parse(body); } catch (e) { obj = null; }
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    return reply(res, 400, '{"success":false,"error":"body must be a JSON object"}');
  }
  if (obj.nonce === undefined) {
    const n = nextNonce();
    const b = body.indexOf('{');
    const rest = body.slice(b + 1);
    body = body.slice(0, b + 1) + '"nonce":' + n + (/^\s*}/.test(rest) ? '' : ',') + rest;
    obj.nonce = n;
  }
  const out = Buffer.from(body, 'utf8');
  const sig = crypto.createHmac('sha256', KEY).update(out).digest('hex');
  const ureq = https.request({
    agent, method: req.method, host: up.hostname, port: up.port || 443, path: req.url,
    headers: {
      host: up.host, 'content-type': 'application/json', 'content-length': out.length,
      'x-api-signature': sig, 'x-api-public-key': PUB,
    },
  }, (ures) => {
    const chunks = [];
    ures.on('data', (c) => chunks.push(c));
    ures.on('end', () => {
      const rbody = Buffer.concat(chunks);
      res.writeHead(ures.statusCode, {
        'content-type': ures.headers['content-type'] || 'application/json', 'content-length': rbody.length,
      });
      res.end(rbody);
      if (audit) {
        let resp;
        try { resp = redact(JSON.parse(rbody.toString('utf8'))); } catch (e) { resp = rbody.toString('utf8'); }
        const now = Date.now();
        audit.write(JSON.stringify({
          ts: now / 1000, method: req.method, path: req.url, status: ures.statusCode,
          ms: now - t0, req: redact(obj), resp,
        }) + '\n');
      }
    });
    ures.on('error', () => { if (!res.headersSent) reply(res, 502, '{"success":false,"error":"upstream"}'); });
  });
  ureq.on('error', () => { if (!res.headersSent) reply(res, 502, '{"success":false,"error":"upstream"}'); });
  ureq.end(out);
}

const server = http.createServer({ keepAliveTimeout: 120000 }, (req, res) => {
  const chunks = [];
  let size = 0;
  req.on('data', (c) => {
    size += c.length;
    if (size > 1048576) { reply(res, 413, '{"success":false,"error":"too large"}'); req.destroy(); return; }
    chunks.push(c);
  });
  req.on('end', () => { if (!res.headersSent) handle(req, res, Buffer.concat(chunks)); });
});
server.headersTimeout = 60000;
server.requestTimeout = 0;
server.listen(Number(env.LISTEN_PORT), env.LISTEN_HOST || '127.0.0.1', () => {
  console.error(`node-peer listening on ${env.LISTEN_HOST || '127.0.0.1'}:${env.LISTEN_PORT}`);
});
function stop() {
  server.close();
  agent.destroy();
  if (audit) audit.end(() => process.exit(0)); else process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
