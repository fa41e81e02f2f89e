#!/usr/bin/env bash
# Start the SuperLink (server machine). Runs in the foreground; stop it with Ctrl-C or
# by PID. Environment:
#   PORT (8000), STATE_DIR (superlink-state), DATABASE (default: in-memory state; a file
#   such as superlink-state/state.db survives SuperLink restarts, but on an overloaded
#   host we saw it fail runs with "sqlite3.OperationalError: database is locked"),
#   HOST (127.0.0.1; plain HTTP only: 0.0.0.0 accepts parties from other machines, and
#   also lets anyone who reaches the port use the Control API, so use it on a trusted
#   network only),
#   TLS=1 for HTTPS with SuperNode authentication (register each party's public key
#   with `flwr supernode register` over 127.0.0.1:PORT). Then the SuperLink binds
#   127.0.0.1 only, and the public door is an nginx proxy (start_proxy.sh) on
#   PUBLIC_HOST:PUBLIC_PORT (0.0.0.0:8443) that forwards only the Fleet API and /health.
#   Uses certs/ca.crt and superlink-tls/server.{pem,key} from gen_certs.sh
#   (CERTS_DIR, SERVER_TLS_DIR). PROXY=0 skips the proxy (when you run your own).
set -euo pipefail
cd "$(dirname "$0")/../.."
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"
STATE_DIR="${STATE_DIR:-superlink-state}"
CERTS="${CERTS_DIR:-certs}"
SERVER_TLS="${SERVER_TLS_DIR:-superlink-tls}"
mkdir -p "$STATE_DIR"
export FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1
DB=()
[ -n "${DATABASE:-}" ] && DB=(--database "$DATABASE")
SUPERLINK=("${FLWR_BIN:-.venv/bin}/flower-superlink" --port "$PORT" "${DB[@]}"
           --disable-runtime-dependency-installation --isolation subprocess)

if [ "${TLS:-0}" != "1" ]; then
  exec "${SUPERLINK[@]}" --insecure --host "$HOST"
fi

# TLS: the Control and Runtime APIs share the port with the Fleet API and have no account
# authentication in open-source flwr, so the SuperLink must not be reachable from outside.
case "$HOST" in
  127.0.0.1|localhost) ;;
  *) echo "start_superlink.sh: with TLS=1 the SuperLink binds 127.0.0.1 only; set" \
          "PUBLIC_HOST=$HOST for the proxy instead of HOST" >&2; exit 2 ;;
esac
SUPERLINK+=(--host 127.0.0.1 --ssl-ca-certfile "$CERTS/ca.crt"
            --ssl-certfile "$SERVER_TLS/server.pem" --ssl-keyfile "$SERVER_TLS/server.key"
            --enable-supernode-auth)
if [ "${PROXY:-1}" = "0" ]; then
  exec "${SUPERLINK[@]}"
fi
export PORT CERTS_DIR="$CERTS" SERVER_TLS_DIR="$SERVER_TLS" \
  PROXY_STATE_DIR="${PROXY_STATE_DIR:-$STATE_DIR/proxy}"
"${SUPERLINK[@]}" &
SUPERLINK_PID=$!
bash scripts/deploy/start_proxy.sh &
PROXY_PID=$!
stop() {
  kill -TERM "$SUPERLINK_PID" "$PROXY_PID" 2>/dev/null || true
  wait "$SUPERLINK_PID" "$PROXY_PID" 2>/dev/null || true
}
trap 'stop; exit 143' TERM INT
trap stop EXIT
# when either one exits, stop the other (EXIT trap) and pass on its status
set +e
wait -n
exit $?
