#!/usr/bin/env bash
# Start the SuperLink (server machine). Runs in the foreground; stop it with Ctrl-C or
# by PID. Environment:
#   HOST (127.0.0.1; use 0.0.0.0 to accept parties from other machines), PORT (8000),
#   STATE_DIR (superlink-state), DATABASE (default: in-memory state; a file such as
#   superlink-state/state.db survives SuperLink restarts, but on an overloaded host we saw
#   it fail runs with "sqlite3.OperationalError: database is locked"),
#   TLS=1 to serve HTTPS with certs/ from gen_certs.sh and require SuperNode
#   authentication (register each party's public key with `flwr supernode register`).
set -euo pipefail
cd "$(dirname "$0")/../.."
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"
STATE_DIR="${STATE_DIR:-superlink-state}"
CERTS="${CERTS_DIR:-certs}"
mkdir -p "$STATE_DIR"
export FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1
if [ "${TLS:-0}" = "1" ]; then
  SEC=(--ssl-ca-certfile "$CERTS/ca.crt" --ssl-certfile "$CERTS/server.pem"
       --ssl-keyfile "$CERTS/server.key" --enable-supernode-auth)
else
  SEC=(--insecure)
fi
DB=()
[ -n "${DATABASE:-}" ] && DB=(--database "$DATABASE")
exec "${FLWR_BIN:-.venv/bin}/flower-superlink" "${SEC[@]}" --host "$HOST" --port "$PORT" \
  "${DB[@]}" --disable-runtime-dependency-installation --isolation subprocess
