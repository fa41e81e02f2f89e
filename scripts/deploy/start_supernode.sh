#!/usr/bin/env bash
# Start one party's SuperNode (party machine). Runs in the foreground.
#
#   bash scripts/deploy/start_supernode.sh PARTY_ID DATA_CSV
#
# DATA_CSV holds only this party's columns plus the record-id column; it never leaves
# the machine. Environment:
#   SUPERLINK (127.0.0.1:8000), NUM_PARTIES (2), PORT (9094 + PARTY_ID: this SuperNode's
#   local API port; must differ per SuperNode on one host), CHECKPOINT_DIR
#   (party-<id>-checkpoints: this party's own resumable checkpoints),
#   CATEGORICAL (comma-separated categorical columns), BOUNDS ("low:high" for bounded
#   numeric columns, e.g. "0:16" for digit pixels), ID_COLUMN (record_id),
#   TLS=1 to use certs/ca.crt and this party's key keys/party<ID> (gen_certs.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
PARTY="${1:?party id}"
DATA="${2:?data csv}"
SUPERLINK="${SUPERLINK:-127.0.0.1:8000}"
NUM_PARTIES="${NUM_PARTIES:-2}"
PORT="${PORT:-$((9094 + PARTY))}"
CKPT="${CHECKPOINT_DIR:-party-$PARTY-checkpoints}"
CERTS="${CERTS_DIR:-certs}"
KEYS="${KEYS_DIR:-keys}"
DATA_ABS="$(cd "$(dirname "$DATA")" && pwd)/$(basename "$DATA")"
NODE_CONFIG="partition-id=$PARTY num-partitions=$NUM_PARTIES data-path=\"$DATA_ABS\" checkpoint-dir=\"$CKPT\" id-column=\"${ID_COLUMN:-record_id}\""
[ -n "${CATEGORICAL:-}" ] && NODE_CONFIG="$NODE_CONFIG categorical=\"$CATEGORICAL\""
[ -n "${BOUNDS:-}" ] && NODE_CONFIG="$NODE_CONFIG bounds=\"$BOUNDS\""
export FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1
if [ "${TLS:-0}" = "1" ]; then
  SEC=(--root-certificates "$CERTS/ca.crt" --auth-supernode-private-key "$KEYS/party$PARTY")
else
  SEC=(--insecure)
fi
exec "${FLWR_BIN:-.venv/bin}/flower-supernode" "${SEC[@]}" --superlink "$SUPERLINK" \
  --node-config "$NODE_CONFIG" --port "$PORT"
