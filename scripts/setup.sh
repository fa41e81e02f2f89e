#!/usr/bin/env bash
# Create (or reuse) the project's virtualenv in .venv and install the project into it.
# Idempotent: reinstalls only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PY="${PYTHON:-python3}"
stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  echo "installing the project into $VENV (first run takes a few minutes)..." >&2
  "$VENV/bin/pip" install --disable-pip-version-check -q -e ".[dev]"
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
