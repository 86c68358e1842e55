#!/usr/bin/env bash
# Start a local two-node Ray cluster on loopback: a head node and one worker node, 1 CPU each (so work must spread),
# distinct free ports, token authentication ON (a fresh token in STATE_DIR/auth_token), every file under STATE_DIR.
#
#   cluster/start-local.sh [STATE_DIR]        # default STATE_DIR: .veloz/cluster
#   source STATE_DIR/env.sh                   # RAY_AUTH_MODE, RAY_AUTH_TOKEN_PATH, VELOZ_RAY_ADDRESS, VELOZ_DASHBOARD
#   veloz grid-search configs/search/sma_grid.yaml --address "$VELOZ_RAY_ADDRESS"
#   cluster/stop-local.sh [STATE_DIR]
#
# Each node runs `ray start --block` in its own session (setsid), so stop-local.sh ends exactly these process groups.
# It never runs `ray stop` (which would kill every Ray cluster on the machine).
# Environment: VELOZ_CLUSTER_AUTH=token|disabled (default token; tests use disabled), VELOZ_CLUSTER_DASHBOARD=1|0
# (default 1: the Jobs API for `veloz submit`), VELOZ_CLUSTER_CPUS (per node, default 1), RAY (the ray executable).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
STATE="$(mkdir -p "${1:-$ROOT/.veloz/cluster}" && cd "${1:-$ROOT/.veloz/cluster}" && pwd)"
AUTH="${VELOZ_CLUSTER_AUTH:-token}"
DASHBOARD="${VELOZ_CLUSTER_DASHBOARD:-1}"
CPUS="${VELOZ_CLUSTER_CPUS:-1}"
if [[ -z "${RAY:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/ray" ]]; then RAY="$ROOT/.venv/bin/ray"; else RAY="ray"; fi
fi
PYTHON="$(dirname "$(command -v "$RAY")")/python"
[[ -x "$PYTHON" ]] || PYTHON=python3

# Ray puts Unix sockets under --temp-dir (.../session_<date>_<pid>/sockets/plasma_store): at most 107 bytes.
if (( ${#STATE} + 66 > 107 )); then
  echo "error: STATE_DIR $STATE is too long for Ray's Unix socket paths (keep it under 41 characters)" >&2
  exit 1
fi
if [[ -f "$STATE/pids" ]]; then
  echo "error: $STATE already holds a cluster (pids file); run cluster/stop-local.sh $STATE first" >&2
  exit 1
fi
mkdir -p "$STATE/tmp" "$STATE/logs"

# One attempt: free loopback ports, the head, then the worker. The ports are chosen by the kernel (bind to port 0),
# so this cluster never collides with another; another process may still take one between that choice and Ray's
# bind, so a failed attempt is stopped and tried again with new ports (3 attempts).
start_cluster() {
read -r GCS_PORT DASH_PORT CLIENT_PORT HEAD_AGENT WORKER_AGENT HEAD_METRICS WORKER_METRICS HEAD_RTE WORKER_RTE HEAD_NM WORKER_NM HEAD_OM WORKER_OM < <(
  "$PYTHON" - <<'PY'
import socket
socks = [socket.socket() for _ in range(13)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
PY
)

if [[ "$AUTH" == "token" ]]; then
  (umask 077 && "$PYTHON" -c 'import secrets; print(secrets.token_hex(32), end="")' > "$STATE/auth_token")
  export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$STATE/auth_token"
  unset RAY_AUTH_TOKEN
else
  export RAY_AUTH_MODE=disabled
fi
export RAY_USAGE_STATS_ENABLED=0
# Ray starts its workers (every engine actor) at nice 15 by default: other work on the node would starve the engine
export RAY_worker_niceness="${RAY_worker_niceness:-0}"
# Jobs (`veloz submit`) run `python ...`: make it the python of this ray installation (the venv), not the system one.
export PATH="$(dirname "$(command -v "$RAY")"):$PATH"

common=(--block --node-ip-address 127.0.0.1 --temp-dir "$STATE/tmp" --num-cpus "$CPUS" --disable-usage-stats)
head_args=(--head --port "$GCS_PORT" --ray-client-server-port "$CLIENT_PORT" --dashboard-agent-listen-port "$HEAD_AGENT"
  --metrics-export-port "$HEAD_METRICS" --runtime-env-agent-port "$HEAD_RTE" --node-manager-port "$HEAD_NM"
  --object-manager-port "$HEAD_OM" --min-worker-port 0 --max-worker-port 0)
if [[ "$DASHBOARD" == "1" ]]; then
  head_args+=(--include-dashboard true --dashboard-host 127.0.0.1 --dashboard-port "$DASH_PORT")
else
  head_args+=(--include-dashboard false)
fi
worker_args=(--address "127.0.0.1:$GCS_PORT" --dashboard-agent-listen-port "$WORKER_AGENT"
  --metrics-export-port "$WORKER_METRICS" --runtime-env-agent-port "$WORKER_RTE" --node-manager-port "$WORKER_NM"
  --object-manager-port "$WORKER_OM" --min-worker-port 0 --max-worker-port 0)

setsid "$RAY" start "${common[@]}" "${head_args[@]}" > "$STATE/logs/head.log" 2>&1 < /dev/null &
HEAD_PID=$!
echo "head $HEAD_PID" > "$STATE/pids"

# Wait (bounded) until $1 nodes are alive in the GCS; fail with the node's log if it dies first.
wait_nodes() {
  "$PYTHON" - "$GCS_PORT" "$1" "$2" <<'PY'
import sys, time
from ray._private.state import GlobalState
from ray._raylet import GcsClientOptions
port, want, pid = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
deadline = time.monotonic() + 60
state = None
while time.monotonic() < deadline:
    try:
        import os
        os.kill(pid, 0)
    except OSError:
        sys.exit(f"ray start (pid {pid}) exited")
    try:
        if state is None:
            state = GlobalState()
            state._initialize_global_state(GcsClientOptions.create(
                f"127.0.0.1:{port}", None, allow_cluster_id_nil=True, fetch_cluster_id_if_nil=False))
        if len(state._live_node_ids()) >= want:
            sys.exit(0)
    except Exception:
        state = None
    time.sleep(0.2)
sys.exit(f"timed out waiting for {want} live node(s)")
PY
}

if ! wait_nodes 1 "$HEAD_PID"; then
  echo "error: the head node did not start; see $STATE/logs/head.log" >&2
  tail -n 20 "$STATE/logs/head.log" >&2 || true
  "$HERE/stop-local.sh" "$STATE" >/dev/null 2>&1 || true
  return 1
fi

setsid "$RAY" start "${common[@]}" "${worker_args[@]}" > "$STATE/logs/worker.log" 2>&1 < /dev/null &
WORKER_PID=$!
echo "worker $WORKER_PID" >> "$STATE/pids"
if ! wait_nodes 2 "$WORKER_PID"; then
  echo "error: the worker node did not join; see $STATE/logs/worker.log" >&2
  tail -n 20 "$STATE/logs/worker.log" >&2 || true
  "$HERE/stop-local.sh" "$STATE" >/dev/null 2>&1 || true
  return 1
fi

}

for attempt in 1 2 3; do
  if start_cluster; then
    break
  fi
  if (( attempt == 3 )); then
    exit 1
  fi
  echo "retrying with other ports (attempt $((attempt + 1)) of 3)" >&2
done

{
  echo "export RAY_AUTH_MODE=$RAY_AUTH_MODE"
  if [[ "$AUTH" == "token" ]]; then echo "export RAY_AUTH_TOKEN_PATH=$STATE/auth_token"; fi
  echo "export VELOZ_RAY_ADDRESS=127.0.0.1:$GCS_PORT"
  echo "export VELOZ_RAY_CLIENT=ray://127.0.0.1:$CLIENT_PORT"
  if [[ "$DASHBOARD" == "1" ]]; then echo "export VELOZ_DASHBOARD=http://127.0.0.1:$DASH_PORT"; fi
} > "$STATE/env.sh"

echo "two-node Ray cluster up (auth: $AUTH): GCS 127.0.0.1:$GCS_PORT, Ray Client ray://127.0.0.1:$CLIENT_PORT$(
  [[ "$DASHBOARD" == "1" ]] && echo ", dashboard/Jobs http://127.0.0.1:$DASH_PORT")"
echo "use it:  source $STATE/env.sh && veloz grid-search CONFIG --address \"\$VELOZ_RAY_ADDRESS\""
echo "stop it: $HERE/stop-local.sh $STATE"
