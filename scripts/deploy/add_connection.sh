#!/usr/bin/env bash
# Add a SuperLink connection to the Flower configuration ($FLWR_HOME/config.toml) of the
# machine that launches runs, so that `flwr run . NAME` reaches it.
#
#   bash scripts/deploy/add_connection.sh NAME HOST:PORT [CA_CERT]
# Without CA_CERT the connection is insecure (plain HTTP; loopback / trusted networks).
# Running it again for the same NAME replaces that table (one [superlink.NAME] stays).
set -euo pipefail
NAME="${1:?connection name}"
ADDR="${2:?host:port}"
CA="${3:-}"
HOME_DIR="${FLWR_HOME:-$HOME/.flwr}"
mkdir -p "$HOME_DIR"
CONF="$HOME_DIR/config.toml"
if [ ! -f "$CONF" ]; then
  printf '[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = ":local:"\n' > "$CONF"
fi
# drop an existing [superlink.NAME] table (its header up to the next header) and the
# blank lines it leaves at the end of the file
awk -v hdr="[superlink.$NAME]" '
  /^[[:space:]]*\[/ { h = $0; gsub(/[[:space:]]/, "", h); skip = (h == hdr) }
  skip { next }
  /^[[:space:]]*$/ { blank = blank $0 "\n"; next }
  { printf "%s", blank; blank = ""; print }
' "$CONF" > "$CONF.tmp"
mv "$CONF.tmp" "$CONF"
{
  printf '\n[superlink.%s]\naddress = "%s"\n' "$NAME" "$ADDR"
  if [ -n "$CA" ]; then
    printf 'root-certificates = "%s"\n' "$(cd "$(dirname "$CA")" && pwd)/$(basename "$CA")"
  else
    printf 'insecure = true\n'
  fi
} >> "$CONF"
echo "set [superlink.$NAME] -> $ADDR to $CONF"
