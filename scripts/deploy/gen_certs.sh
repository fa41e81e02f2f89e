#!/usr/bin/env bash
# Generate a private CA and the SuperLink's server certificate, for the TLS +
# SuperNode-authentication variant. Run it once, on the SuperLink host (or offline).
#
#   bash scripts/deploy/gen_certs.sh [EXTRA_SAN ...]
#   e.g. bash scripts/deploy/gen_certs.sh DNS:superlink.example.org IP:10.0.0.5
#
# Three output folders, all git-ignored (never commit them):
#   certs/ca.crt               PUBLIC. The only file handed to the parties and to
#                              anyone who launches runs; it lets them check the server.
#   superlink-tls/server.pem   The SuperLink's certificate and
#   superlink-tls/server.key   private key (mode 600). Stay on the SuperLink host; the
#                              proxy (start_proxy.sh) and the SuperLink both use them.
#   ca-private/ca.key          The CA's private key (folder mode 700, file mode 600).
#                              Whoever holds it can mint a server certificate and
#                              impersonate the SuperLink. Keep it off the network; it is
#                              needed only to issue a new server certificate.
# Folders: CERTS_DIR, SERVER_TLS_DIR, CA_PRIVATE_DIR.
#
# The server certificate always covers localhost, 127.0.0.1 and ::1; add the name or IP
# address the parties dial (the proxy's public address) as EXTRA_SAN.
#
# SuperNode keys are NOT made here: each party runs gen_party_key.sh on its own machine
# and hands over only its public key. For the one-machine loopback demo only,
# DEMO_PARTY_KEYS=N also writes N demo key pairs into KEYS_DIR (keys/).
set -euo pipefail
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then
  echo "gen_certs.sh: arguments are SANs now (e.g. DNS:host); party keys come from" \
       "gen_party_key.sh on each party's machine (DEMO_PARTY_KEYS=$1 for the loopback demo)" >&2
  exit 2
fi
CERTS="${CERTS_DIR:-certs}"
SERVER_TLS="${SERVER_TLS_DIR:-superlink-tls}"
CA_PRIVATE="${CA_PRIVATE_DIR:-ca-private}"
mkdir -p "$CERTS" "$SERVER_TLS" "$CA_PRIVATE"
chmod 700 "$SERVER_TLS" "$CA_PRIVATE"
SAN="DNS:localhost,IP:127.0.0.1,IP:::1"
for extra in "$@"; do SAN="$SAN,$extra"; done

umask 077  # private keys are created mode 600
openssl genrsa -out "$CA_PRIVATE/ca.key" 4096 2>/dev/null
openssl req -x509 -new -nodes -key "$CA_PRIVATE/ca.key" -sha256 -days 365 \
  -subj "/CN=vflgan-ca" -out "$CERTS/ca.crt"
openssl genrsa -out "$SERVER_TLS/server.key" 4096 2>/dev/null
openssl req -new -key "$SERVER_TLS/server.key" -subj "/CN=vflgan-superlink" \
  -out "$SERVER_TLS/server.csr"
printf "subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n" \
  "$SAN" > "$SERVER_TLS/server.ext"
openssl x509 -req -in "$SERVER_TLS/server.csr" -CA "$CERTS/ca.crt" -CAkey "$CA_PRIVATE/ca.key" \
  -CAcreateserial -CAserial "$CA_PRIVATE/ca.srl" -out "$SERVER_TLS/server.pem" -days 365 \
  -sha256 -extfile "$SERVER_TLS/server.ext" 2>/dev/null
chmod 644 "$CERTS/ca.crt" "$SERVER_TLS/server.pem"
echo "public CA certificate (hand this to the parties): $CERTS/ca.crt"
echo "SuperLink certificate and key (stay on the SuperLink host): $SERVER_TLS/ (SAN $SAN)"
echo "CA private key (keep offline): $CA_PRIVATE/ca.key"

if [ "${DEMO_PARTY_KEYS:-0}" -gt 0 ]; then
  # Loopback demo only: in a real federation each party makes its own pair.
  for k in $(seq 0 $((DEMO_PARTY_KEYS - 1))); do
    FORCE=1 KEYS_DIR="${KEYS_DIR:-keys}" bash "$(dirname "$0")/gen_party_key.sh" "$k"
  done
fi
