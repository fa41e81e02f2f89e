#!/usr/bin/env bash
# Start the public TLS proxy in front of a TLS SuperLink (server machine). Runs nginx in
# the foreground; stop it with Ctrl-C or by PID. start_superlink.sh starts it for you
# when TLS=1, so run this by hand only if you start the SuperLink some other way.
#
# The SuperLink binds 127.0.0.1:PORT and serves Fleet, Control and Runtime APIs there.
# The proxy listens on PUBLIC_HOST:PUBLIC_PORT with the SuperLink's server certificate
# and forwards only the Fleet API (/v1/fleet/...) and /health; everything else gets 403
# (config: superlink-proxy.conf.template). The operator runs `flwr` on the SuperLink
# host against 127.0.0.1:PORT.
#
# Environment:
#   PUBLIC_HOST (0.0.0.0), PUBLIC_PORT (8443): what the parties dial,
#   PORT (8000): the SuperLink's port on 127.0.0.1,
#   CERTS_DIR (certs: ca.crt), SERVER_TLS_DIR (superlink-tls: server.pem, server.key),
#   PROXY_STATE_DIR (superlink-state/proxy: nginx.conf, pid, logs, temp files),
#   UPSTREAM_NAME (localhost: a DNS name in the server certificate, checked by nginx),
#   NGINX (nginx on PATH, else /usr/sbin/nginx; Debian/Ubuntu: apt-get install -y nginx-light).
set -euo pipefail
cd "$(dirname "$0")/../.."
PUBLIC_HOST="${PUBLIC_HOST:-0.0.0.0}"
PUBLIC_PORT="${PUBLIC_PORT:-8443}"
PORT="${PORT:-8000}"
CERTS="${CERTS_DIR:-certs}"
SERVER_TLS="${SERVER_TLS_DIR:-superlink-tls}"
STATE="${PROXY_STATE_DIR:-superlink-state/proxy}"
UPSTREAM_NAME="${UPSTREAM_NAME:-localhost}"
NGINX="${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}"
if [ ! -x "$NGINX" ]; then
  echo "start_proxy.sh: nginx not found (install it: apt-get install -y nginx-light," \
       "or set NGINX=/path/to/nginx)" >&2
  exit 1
fi
for f in "$CERTS/ca.crt" "$SERVER_TLS/server.pem" "$SERVER_TLS/server.key"; do
  [ -f "$f" ] || { echo "start_proxy.sh: missing $f (run gen_certs.sh)" >&2; exit 1; }
done
abspath() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
mkdir -p "$STATE/scratch"
STATE="$(cd "$STATE" && pwd)"
# an IPv6 literal needs brackets in nginx's listen directive
case "$PUBLIC_HOST" in *:*) LISTEN="[$PUBLIC_HOST]:$PUBLIC_PORT" ;; *) LISTEN="$PUBLIC_HOST:$PUBLIC_PORT" ;; esac
sed -e "s|@STATE@|$STATE|g" \
    -e "s|@SUPERLINK_PORT@|$PORT|g" \
    -e "s|@PUBLIC_LISTEN@|$LISTEN|g" \
    -e "s|@SERVER_CERT@|$(abspath "$SERVER_TLS/server.pem")|g" \
    -e "s|@SERVER_KEY@|$(abspath "$SERVER_TLS/server.key")|g" \
    -e "s|@CA_CERT@|$(abspath "$CERTS/ca.crt")|g" \
    -e "s|@UPSTREAM_NAME@|$UPSTREAM_NAME|g" \
    scripts/deploy/superlink-proxy.conf.template > "$STATE/nginx.conf"
# -e: nginx opens its compiled-in error log before it reads the config
"$NGINX" -q -t -p "$STATE/" -e stderr -c "$STATE/nginx.conf"
echo "proxy: https://$LISTEN -> https://127.0.0.1:$PORT (Fleet API and /health only)"
exec "$NGINX" -p "$STATE/" -e stderr -c "$STATE/nginx.conf" -g "daemon off;"
