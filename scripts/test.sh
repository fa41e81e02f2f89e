#!/usr/bin/env bash
# Set up, then run the test suite (slow end-to-end tests are deselected by default;
# pass -m slow to run them). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev,unlearning
# Offline copies of the public datasets, when this checkout sits beside them.
if [ -z "${VFLGAN_DATA_ROOT:-}" ] && [ -d ../shared/data ]; then
  export VFLGAN_DATA_ROOT="$(cd ../shared/data && pwd)"
fi
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
# exit code 5 = no tests collected (e.g. a -m selection that matches nothing)
if [ "$rc" -eq 5 ]; then rc=0; fi
exit "$rc"
