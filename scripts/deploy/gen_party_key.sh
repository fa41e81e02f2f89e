#!/usr/bin/env bash
# Make this party's SuperNode authentication key pair. Run it on the party's own machine:
# the private key never leaves it.
#
#   bash scripts/deploy/gen_party_key.sh PARTY_ID
#   -> keys/party<ID>      private key (mode 600; start_supernode.sh reads it)
#      keys/party<ID>.pub  public key: send only this file to the SuperLink operator,
#                          who allow-lists it with `flwr supernode register`
#
# The keys are EC (SECP384R1) in OpenSSH format, as flwr expects. An existing pair is
# kept (a registered key cannot be re-registered after `flwr supernode unregister`, and
# overwriting it would lock this party out); FORCE=1 replaces it. Folder: KEYS_DIR (keys,
# git-ignored).
set -euo pipefail
PARTY="${1:?party id}"
KEYS="${KEYS_DIR:-keys}"
KEY="$KEYS/party$PARTY"
mkdir -p "$KEYS"
chmod 700 "$KEYS"
if [ -e "$KEY" ] && [ "${FORCE:-0}" != "1" ]; then
  echo "gen_party_key.sh: $KEY exists; keeping it (FORCE=1 replaces it)" >&2
else
  rm -f "$KEY" "$KEY.pub"
  ssh-keygen -q -t ecdsa -b 384 -N "" -C "vflgan-party$PARTY" -f "$KEY"
fi
chmod 600 "$KEY"
chmod 644 "$KEY.pub"
echo "party $PARTY: private key $KEY (keep it here), public key $KEY.pub (send it to the operator)"
