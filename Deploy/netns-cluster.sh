#!/usr/bin/env bash
# A multi-host cluster on one Linux machine, one job through it, then everything removed (also on
# failure): a thin wrapper over Deploy/testbed (one network namespace per host on a bridge, the
# coordinator on host 0, N workers, CURVE). The last worker has no model file: it pulls its layers
# from the coordinator's model source. For a bed that stays up (and fault injection), use
# Deploy/testbed directly. Needs root (ip netns). Every wait is bounded.
#
# Usage: sudo Deploy/netns-cluster.sh [WORKERS=3] [PROMPT]
set -euo pipefail
cd "$(dirname "$0")/.."
WORKERS=${1:-3}
PROMPT=${2:-"The capital of France is"}
export CARAVAN_TB_NAME=${CARAVAN_TB_NAME:-cvdemo} CARAVAN_TB_NET=${CARAVAN_TB_NET:-10.77.0}
[ "$(id -u)" = 0 ] || { echo "netns-cluster.sh needs root (ip netns); try Deploy/local-cluster.sh" >&2; exit 1; }
trap 'Deploy/testbed down > /dev/null 2>&1 || true' EXIT INT TERM
CARAVAN_TB_PULL="$WORKERS" Deploy/testbed up "$WORKERS" > /dev/null
eval "$(Deploy/testbed env)"
Deploy/testbed status
grep 'layers pulled' "$CARAVAN_TB_DIR/h$WORKERS.log" || true
timeout 120 "$BIN/caravanctl" generate --clients "$CARAVAN_CLIENTS" --coordinator-key="$CARAVAN_COORDINATOR_KEY" \
    --prompt "$PROMPT" --temperature 0 --max-tokens 24
