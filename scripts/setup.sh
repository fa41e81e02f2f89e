#!/usr/bin/env bash
# Create (or reuse) the project's virtualenv in .venv and install the project into it.
#
#   bash scripts/setup.sh                  # the VFLGAN app (the main job, a party's node)
#   bash scripts/setup.sh dev,unlearning   # plus the unlearning package and the test tools
#
# Idempotent: installs only when pyproject.toml changed or an extra is not there yet (the
# stamp file lists what was installed). pip's own byte-compilation is serial; the
# packages are compiled afterwards on every core instead (the same .pyc files), which
# matters where PYTHONDONTWRITEBYTECODE is set and imports never write them.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PY="${PYTHON:-python3}"
want="${1:-}"
case "$want" in *[!a-z,]*) echo "setup.sh: extras '$want'; expected a comma list such as dev,unlearning" >&2; exit 2 ;; esac
stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
have="$(cat "$stamp" 2>/dev/null || echo MISSING)"
missing=""
if [ "$have" = MISSING ]; then
  missing=yes
else
  for e in ${want//,/ }; do
    case ",$have," in *",$e,"*) ;; *) missing=yes ;; esac
  done
fi
if [ -n "$missing" ]; then
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  [ "$have" = MISSING ] && have=""
  extras="$(echo "$have,$want" | tr ',' '\n' | { grep -v '^$' || true; } | sort -u | paste -sd, -)"
  echo "installing the project${extras:+ [$extras]} into $VENV (first run takes a few minutes)..." >&2
  "$VENV/bin/pip" install --disable-pip-version-check -q --no-compile -e ".${extras:+[$extras]}"
  site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  # test suites and packages no job imports are left to compile on first use
  "$VENV/bin/python" -m compileall -qq -j 0 -x '/(tests?|sympy|triton|pip|setuptools)/' \
    "$site" >/dev/null 2>&1 || true
  rm -f "$VENV"/.installed-*
  echo "$extras" > "$stamp"
fi
