#!/usr/bin/env bash
# A multi-host cluster on one Linux machine: one network namespace per host (10.77.0.0/24 on a
# bridge in its own namespace), a coordinator on 10.77.0.1 and N workers on 10.77.0.2.., all with
# CURVE. The last worker has no model file: it pulls its layers from the coordinator's model source
# (bound on 0.0.0.0, reached at the coordinator's host). Runs one job through it, prints the text,
# and removes everything (also on failure).
# Needs root (ip netns). Every wait is bounded.
#
# Usage: sudo Deploy/netns-cluster.sh [WORKERS=3] [PROMPT]
set -euo pipefail
cd "$(dirname "$0")/.."
WORKERS=${1:-3}
PROMPT=${2:-"The capital of France is"}
MODEL=${MODEL:-${CARAVAN_MODEL_DIR:-$HOME/.cache/caravan/models}/SmolLM2-135M-Instruct.Q4_1.gguf}
BIN=${BIN:-$(swift build --show-bin-path)}
WORK=$(mktemp -d)
[ -x "$BIN/caravan-coordinator" ] && [ -x "$BIN/caravanctl" ] || { echo "build first: swift build (or set BIN)" >&2; exit 1; }
[ -f "$MODEL" ] || { echo "no model at $MODEL (run Scripts/setup)" >&2; exit 1; }

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for i in $(seq 0 "$WORKERS"); do ip netns del "cv-h$i" 2>/dev/null || true; done
    ip netns del cv-hub 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

ip netns add cv-hub
ip -n cv-hub link add br0 type bridge
ip -n cv-hub link set br0 up
for i in $(seq 0 "$WORKERS"); do
    ip netns add "cv-h$i"
    ip link add "cv$i" type veth peer name "cv${i}p"
    ip link set "cv$i" netns "cv-h$i"
    ip link set "cv${i}p" netns cv-hub
    ip -n cv-hub link set "cv${i}p" master br0 up
    ip -n "cv-h$i" addr add "10.77.0.$((i + 1))/24" dev "cv$i"
    ip -n "cv-h$i" link set "cv$i" up
    ip -n "cv-h$i" link set lo up
done

ip netns exec cv-h0 "$BIN/caravan-coordinator" --key-file "$WORK/coordinator.key" --model "$MODEL" \
    --control tcp://10.77.0.1:7000 --clients tcp://10.77.0.1:7100 --results tcp://10.77.0.1:7200 \
    --model-source tcp://0.0.0.0:7300 \
    --workers "$WORKERS" > "$WORK/coordinator.log" 2>&1 &
PIDS+=($!)
KEY=""
for _ in $(seq 1 100); do
    KEY=$(grep -o 'public_key=[^ ]*' "$WORK/coordinator.log" | head -1 | cut -d= -f2- || true)
    [ -n "$KEY" ] && break
    sleep 0.1
done
[ -n "$KEY" ] || { cat "$WORK/coordinator.log" >&2; echo "the coordinator did not start" >&2; exit 1; }
for i in $(seq 1 "$WORKERS"); do
    SOURCE=(--model "$MODEL")
    [ "$i" = "$WORKERS" ] && SOURCE=(--cache-dir "$WORK/layers-$i")  # no model file: pull the layers
    ip netns exec "cv-h$i" "$BIN/caravan-worker" --coordinator tcp://10.77.0.1:7000 --coordinator-key "$KEY" \
        "${SOURCE[@]}" --threads 1 --id "host-$i" --data-endpoint "tcp://10.77.0.$((i + 1)):7001" \
        > "$WORK/worker-$i.log" 2>&1 &
    PIDS+=($!)
done
for _ in $(seq 1 300); do grep -q ' serving' "$WORK/coordinator.log" && break; sleep 0.1; done
grep ' serving' "$WORK/coordinator.log" || { cat "$WORK/coordinator.log" >&2; echo "no plan served" >&2; exit 1; }
grep 'layers pulled' "$WORK/worker-$WORKERS.log" || true
timeout 120 ip netns exec cv-h0 "$BIN/caravanctl" generate --clients tcp://10.77.0.1:7100 --coordinator-key "$KEY" \
    --prompt "$PROMPT" --temperature 0 --max-tokens 24
