#!/usr/bin/env bash
# A test CA for the command-post broker: the CA, a server certificate, and one client certificate per name.
#   configs/mosquitto/make-test-ca.sh OUT_DIR SERVER_NAME CLIENT...
# e.g. make-test-ca.sh /etc/mosquitto/certs broker.cp.local box-17 box-18 command-post
# Each client certificate's common name is the client's name: with `use_identity_as_username true` the
# broker takes it as the username, and the pattern ACL (acl.example) keeps each box under its own root.
# For a test bench: real deployments keep the CA key offline and sign each box's request there.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 OUT_DIR SERVER_NAME [CLIENT...]" >&2; exit 2; }
out="$1"; server="$2"; shift 2
mkdir -p "$out"
cd "$out"
days=825
if [ ! -f ca.key ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -sha256 \
    -subj "/CN=edge-agent test CA" 2>/dev/null
fi
sign() {  # name, extensions
  local name="$1" ext="$2"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "/CN=$name" 2>/dev/null
  printf '%s\n' "$ext" > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$name.crt" -days "$days" \
    -sha256 -extfile "$name.ext" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
  chmod 0600 "$name.key"
}
sign server "subjectAltName=DNS:$server,DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
for client in "$@"; do
  [[ "$client" =~ ^[A-Za-z0-9_-]{1,64}$ ]] || { echo "client name $client: use letters, digits, _ and -" >&2; exit 2; }
  sign "$client" "extendedKeyUsage=clientAuth"
done
echo "CA and certificates in $out: ca.crt, server.crt/.key, and ${*:-no clients}" >&2
