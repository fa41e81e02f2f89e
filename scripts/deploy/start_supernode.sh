#!/usr/bin/env bash
# Start one party's SuperNode (party machine). Runs in the foreground.
#
#   bash scripts/deploy/start_supernode.sh PARTY_ID DATA_CSV
#
# DATA_CSV holds only this party's columns plus the record-id column; it never leaves
# the machine. Environment:
#   SUPERLINK (127.0.0.1:8000; with TLS=1 the proxy's public address, default
#   127.0.0.1:8443: parties never dial the SuperLink's own port), NUM_PARTIES (2),
#   PORT (9094 + PARTY_ID: this SuperNode's local API port; must differ per SuperNode
#   on one host), CHECKPOINT_DIR
#   (party-<id>-checkpoints: this party's own resumable checkpoints), DELIVERY_DIR
#   (party-<id>-delivered: where the run's synthetic data arrives, flower.deliver-to),
#   CATEGORICAL (comma-separated categorical columns), BOUNDS ("low:high" for bounded
#   numeric columns, e.g. "0:16" for digit pixels), ID_COLUMN (record_id),
#   TLS=1 to use certs/ca.crt (the CA certificate the operator hands out) and this
#   party's own private key keys/party<ID> (made here by gen_party_key.sh; the operator
#   must have registered keys/party<ID>.pub first). CERTS_DIR, KEYS_DIR.
#   LAUNCHER=1 runs the party node launcher (party_node.py: the SuperNode plus a
#   long-running ClientApp executor, ~10x faster round trips; flwr 1.42.x only) instead
#   of the stock flower-supernode (a fresh ClientApp process per message).
set -euo pipefail
cd "$(dirname "$0")/../.."
PARTY="${1:?party id}"
DATA="${2:?data csv}"
if [ "${TLS:-0}" = "1" ]; then
  SUPERLINK="${SUPERLINK:-127.0.0.1:8443}"
else
  SUPERLINK="${SUPERLINK:-127.0.0.1:8000}"
fi
NUM_PARTIES="${NUM_PARTIES:-2}"
PORT="${PORT:-$((9094 + PARTY))}"
CKPT="${CHECKPOINT_DIR:-party-$PARTY-checkpoints}"
DELIVERED="${DELIVERY_DIR:-party-$PARTY-delivered}"
CERTS="${CERTS_DIR:-certs}"
KEYS="${KEYS_DIR:-keys}"
DATA_ABS="$(cd "$(dirname "$DATA")" && pwd)/$(basename "$DATA")"
NODE_CONFIG="partition-id=$PARTY num-partitions=$NUM_PARTIES data-path=\"$DATA_ABS\" checkpoint-dir=\"$CKPT\" delivery-dir=\"$DELIVERED\" id-column=\"${ID_COLUMN:-record_id}\""
[ -n "${CATEGORICAL:-}" ] && NODE_CONFIG="$NODE_CONFIG categorical=\"$CATEGORICAL\""
[ -n "${BOUNDS:-}" ] && NODE_CONFIG="$NODE_CONFIG bounds=\"$BOUNDS\""
export FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1
if [ "${TLS:-0}" = "1" ]; then
  for f in "$CERTS/ca.crt" "$KEYS/party$PARTY"; do
    [ -f "$f" ] || { echo "start_supernode.sh: missing $f" >&2; exit 1; }
  done
  SEC=(--root-certificates "$CERTS/ca.crt" --auth-supernode-private-key "$KEYS/party$PARTY")
else
  SEC=(--insecure)
fi
if [ "${LAUNCHER:-0}" = "1" ]; then
  NODE=("${FLWR_BIN:-.venv/bin}/python" scripts/deploy/party_node.py)
else
  NODE=("${FLWR_BIN:-.venv/bin}/flower-supernode")
fi
exec "${NODE[@]}" "${SEC[@]}" --superlink "$SUPERLINK" --node-config "$NODE_CONFIG" \
  --port "$PORT"
