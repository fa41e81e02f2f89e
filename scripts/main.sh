#!/usr/bin/env bash
# The main job: VFLGAN on Flower. `flwr run .` trains on the embedded sklearn digits
# (2 parties: top and bottom image halves) in the local simulation engine and writes the
# synthetic data, an image grid and report.json into runs/<run-name>/, which it prints.
#
# Extra arguments are run-config overrides, e.g.:
#   bash scripts/main.sh 'steps=500 flower.steps-per-round=1'
# Environment: MAIN_TIMEOUT (wall-clock limit in seconds, default 900).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
ROOT="$PWD"
export PATH="$ROOT/.venv/bin:$PATH"

# A job-local Flower home, no telemetry / update check / runtime dependency install, and
# free ports, so that no other (stale) local SuperLink captures this run.
FLWR_HOME="$(mktemp -d "${TMPDIR:-/tmp}/vflgan-flwr-home.XXXXXX")"
export FLWR_HOME
export FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1
export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1
free_port() { python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export FLWR_LOCAL_SUPERLINK_HTTP_API_PORT="$(free_port)"
export FLWR_LOCAL_CONTROL_API_PORT="$(free_port)"

# The main job's settings (later --run-config values override them): the joint objective
# with a shared generator trunk and shuffled-real negatives, in chunks of 16 steps, the
# setting that learns the cross-party dependence within the time budget (numbers and the
# comparison with the paper's objective: simulations/README.md, "The main job").
# `objective="paper" generator-trunk=0 shuffle-negatives=0.0 flower.steps-per-round=1`
# runs the paper's exact algorithm instead.
# (flwr merges several --run-config strings shallowly: the flower.* keys must all be in
# the last one, with the run name)
MAIN_JOB='objective="joint" generator-trunk=3 shuffle-negatives=0.5 steps=4000'
MAIN_K='flower.steps-per-round=16'
case "$*" in *flower.steps-per-round*) MAIN_K='' ;; esac
RUN_NAME="flower-digits-$(date +%Y%m%d-%H%M%S)"
OUT="$ROOT/runs"
LOG="$FLWR_HOME/flwr-run.log"

stop_local_superlink() {
  # the CLI starts a detached SuperLink that outlives `flwr run`: stop it by PID
  local pids
  pids="$(ps -ww -eo pid=,args= | awk -v h="$FLWR_HOME" 'index($0, h) && /flower-superlink/ {print $1}')"
  for pid in $pids; do kill "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 50); do  # up to 5 s for a clean exit, then SIGKILL
    local alive=""
    for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive=yes; done
    [ -z "$alive" ] && return 0
    sleep 0.1
  done
  for pid in $pids; do kill -9 "$pid" 2>/dev/null || true; done
}
trap stop_local_superlink EXIT

echo "flwr run . (FLWR_HOME=$FLWR_HOME, SuperLink port $FLWR_LOCAL_SUPERLINK_HTTP_API_PORT)"
set +e
timeout "${MAIN_TIMEOUT:-900}" flwr run . --stream \
  --federation-config "num-supernodes=2 client-resources-num-cpus=1" \
  --run-config "$MAIN_JOB" \
  --run-config "output-dir=\"$OUT\" flower.run-name=\"$RUN_NAME\" $MAIN_K $*" 2>&1 | tee "$LOG"
rc=${PIPESTATUS[0]}
set -e
RUN_ID="$(grep -oE 'Successfully started run [0-9]+' "$LOG" | awk '{print $4}' | head -1 || true)"
if [ -z "$RUN_ID" ]; then
  echo "ERROR: flwr run did not start a run (exit code $rc)" >&2
  exit 1
fi
# `flwr run` exits 0 even when the ServerApp fails: read the run's final status.
STATUS=""
for _ in $(seq 1 30); do
  STATUS="$(flwr ls --run-id "$RUN_ID" --format json 2>/dev/null \
    | python -c 'import json,sys; t=sys.stdin.read(); r=json.loads(t[t.index("{"):])["runs"]; print(r[0]["status"] if r else "")' \
    || true)"
  case "$STATUS" in finished:*) break ;; esac
  sleep 1
done
echo "run $RUN_ID: $STATUS"
if [ "$STATUS" != "finished:completed" ]; then
  echo "ERROR: the Flower run did not complete (status '$STATUS'); see $LOG" >&2
  exit 1
fi
echo "outputs: $OUT/$RUN_NAME"
ls "$OUT/$RUN_NAME"
