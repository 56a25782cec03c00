#!/bin/sh
# Throwaway TLS material for the tests: tests/gen-certs.sh DIR
#   DIR/ca.pem, ca.key              test CA
#   DIR/server.pem, server.key      server cert for IP:127.0.0.1, DNS:localhost
#                                   (signed by ca.pem; server.pem holds the leaf)
#   DIR/other-ca.pem, other-ca.key  an unrelated CA, for wrong-CA tests
# Quiet on success; on failure prints openssl's output and exits non-zero.
# Keys are mode 600.  Certificates are valid for 2 days.
set -eu
dir=${1:?usage: gen-certs.sh DIR}
mkdir -p "$dir"
cd "$dir"
umask 077
log=$(mktemp)
trap 'rm -f "$log" server.csr server.ext ca.srl' EXIT

run() {
	if ! "$@" >"$log" 2>&1; then
		echo "gen-certs: failed: $*" >&2
		cat "$log" >&2
		exit 1
	fi
}

ca() {	# ca NAME SUBJECT
	run openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
	    -nodes -keyout "$1.key" -out "$1.pem" -days 2 -subj "$2" \
	    -addext "basicConstraints=critical,CA:TRUE" \
	    -addext "keyUsage=critical,keyCertSign,cRLSign" \
	    -addext "subjectKeyIdentifier=hash"
}

ca ca "/CN=ocp-proxy test CA"
ca other-ca "/CN=unrelated test CA"

run openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout server.key -out server.csr -subj "/CN=localhost"
cat >server.ext <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid,issuer
EOF
run openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
    -days 2 -sha256 -extfile server.ext -out server.pem

chmod 600 ca.key other-ca.key server.key
chmod 644 ca.pem other-ca.pem server.pem
