#!/usr/bin/env bash
# Generate a private CA, a SuperLink server certificate, and one SuperNode key pair per
# party, for the TLS + SuperNode-authentication variant. Outputs go to certs/ and keys/
# (both git-ignored: never commit them).
#
#   bash scripts/deploy/gen_certs.sh [NUM_PARTIES] [EXTRA_SAN ...]
#   e.g. bash scripts/deploy/gen_certs.sh 2 DNS:superlink.example.org IP:10.0.0.5
#
# The server certificate always covers localhost, 127.0.0.1 and ::1; add the name or IP
# address the parties dial as EXTRA_SAN.
set -euo pipefail
NUM_PARTIES="${1:-2}"
shift || true
CERTS="${CERTS_DIR:-certs}"
KEYS="${KEYS_DIR:-keys}"
mkdir -p "$CERTS" "$KEYS"
chmod 700 "$KEYS"
SAN="DNS:localhost,IP:127.0.0.1,IP:::1"
for extra in "$@"; do SAN="$SAN,$extra"; done

openssl genrsa -out "$CERTS/ca.key" 4096 2>/dev/null
openssl req -x509 -new -nodes -key "$CERTS/ca.key" -sha256 -days 365 \
  -subj "/CN=vflgan-ca" -out "$CERTS/ca.crt"
openssl genrsa -out "$CERTS/server.key" 4096 2>/dev/null
openssl req -new -key "$CERTS/server.key" -subj "/CN=vflgan-superlink" -out "$CERTS/server.csr"
printf "subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n" \
  "$SAN" > "$CERTS/server.ext"
openssl x509 -req -in "$CERTS/server.csr" -CA "$CERTS/ca.crt" -CAkey "$CERTS/ca.key" \
  -CAcreateserial -out "$CERTS/server.pem" -days 365 -sha256 -extfile "$CERTS/server.ext" 2>/dev/null
chmod 600 "$CERTS/ca.key" "$CERTS/server.key"

# SuperNode authentication keys: EC (SECP384R1) in OpenSSH format, one pair per party
for k in $(seq 0 $((NUM_PARTIES - 1))); do
  rm -f "$KEYS/party$k" "$KEYS/party$k.pub"
  ssh-keygen -q -t ecdsa -b 384 -N "" -C "vflgan-party$k" -f "$KEYS/party$k"
  chmod 600 "$KEYS/party$k"
done
echo "CA: $CERTS/ca.crt  server: $CERTS/server.pem (SAN $SAN)  party keys: $KEYS/party*"
