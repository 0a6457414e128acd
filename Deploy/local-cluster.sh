#!/usr/bin/env bash
# Starts a coordinator and N workers on 127.0.0.1 and keeps them running until Ctrl-C (every
# process is stopped on exit). For trying the cluster on one machine; plain TCP (--insecure) on
# loopback.
#
# Usage: Deploy/local-cluster.sh [WORKERS=3] [MODEL=~/.cache/caravan/models/SmolLM2-135M-Instruct.Q4_1.gguf]
#        BIN=.build/release Deploy/local-cluster.sh 3
set -euo pipefail
cd "$(dirname "$0")/.."
WORKERS=${1:-3}
MODEL=${2:-${CARAVAN_MODEL_DIR:-$HOME/.cache/caravan/models}/SmolLM2-135M-Instruct.Q4_1.gguf}
BIN=${BIN:-$(swift build --show-bin-path)}
CONTROL=${CONTROL:-tcp://127.0.0.1:7000}
CLIENTS=${CLIENTS:-tcp://127.0.0.1:7100}
LOGS=$(mktemp -d)
[ -x "$BIN/caravan-coordinator" ] || { echo "build first: swift build (or set BIN)" >&2; exit 1; }
[ -f "$MODEL" ] || { echo "no model at $MODEL (run Scripts/setup)" >&2; exit 1; }

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

"$BIN/caravan-coordinator" --insecure --model "$MODEL" --control "$CONTROL" --clients "$CLIENTS" \
    --workers "$WORKERS" --state-dir "$LOGS/state" > "$LOGS/coordinator.log" 2>&1 &
PIDS+=($!)
for i in $(seq 1 "$WORKERS"); do
    "$BIN/caravan-worker" --insecure --coordinator "$CONTROL" --model "$MODEL" --threads 1 --id "worker-$i" \
        > "$LOGS/worker-$i.log" 2>&1 &
    PIDS+=($!)
done
echo "coordinator: control $CONTROL, clients $CLIENTS; logs in $LOGS (Ctrl-C stops everything)"
tail -F "$LOGS/coordinator.log"
