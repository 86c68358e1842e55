#!/usr/bin/env bash
# Stop the local cluster that start-local.sh recorded in STATE_DIR: terminate each node's process group (the
# `ray start --block` session and everything it spawned), escalate to SIGKILL after a grace period, then remove the
# cluster's files. Never `ray stop`: other Ray clusters on this machine are left alone. A group is signalled only
# while one of its processes names this cluster's temp dir (STATE_DIR/tmp): after a reboot, or when the nodes died on
# their own, a stale pids file may name another program's process group, which is skipped with a message.
#
#   cluster/stop-local.sh [STATE_DIR]          # default STATE_DIR: .veloz/cluster
#   cluster/stop-local.sh STATE_DIR worker     # stop only the worker node (the head and its GCS keep running):
#                                              # the cluster loses a node, as when a machine goes away
set -uo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
STATE="${1:-$ROOT/.veloz/cluster}"
ONLY="${2:-}"
if [[ -n "$ONLY" && "$ONLY" != "worker" ]]; then
  echo "error: the second argument may only be 'worker' (stopping the head stops the whole cluster: omit it)" >&2
  exit 2
fi
if [[ ! -f "$STATE/pids" ]]; then
  echo "no cluster recorded in $STATE (no pids file)" >&2
  exit 0
fi
STATE="$(cd "$STATE" && pwd)"

# Worker first, then the head.
if [[ -n "$ONLY" ]]; then
  mapfile -t PGIDS < <(awk -v role="$ONLY" '$1 == role {print $2}' "$STATE/pids")
else
  mapfile -t PGIDS < <(tac "$STATE/pids" | awk '{print $2}')
fi

alive() { kill -0 -- "-$1" 2>/dev/null; }
# Process group $1 is this cluster's: one of its processes (`ray start --temp-dir STATE/tmp`, its raylet...) names it.
ours() {
  ps -ww -eo pgid=,args= | awk -v g="$1" -v dir="$STATE/tmp" '$1 == g && index($0, dir) {found = 1} END {exit !found}'
}

OURS=()
for pgid in "${PGIDS[@]}"; do
  if ! alive "$pgid"; then
    continue
  elif ours "$pgid"; then
    OURS+=("$pgid")
  else
    echo "skipped process group $pgid: none of its processes belongs to the cluster in $STATE (a stale pids file)" >&2
  fi
done
PGIDS=("${OURS[@]}")
for pgid in "${PGIDS[@]}"; do
  kill -TERM -- "-$pgid" 2>/dev/null
done
deadline=$((SECONDS + 3))  # ray start --block does not always exit on TERM; SIGKILL is safe for a throwaway cluster
for pgid in "${PGIDS[@]}"; do
  while alive "$pgid" && (( SECONDS < deadline )); do sleep 0.2; done
  if alive "$pgid"; then kill -KILL -- "-$pgid" 2>/dev/null; fi
done

if [[ -n "$ONLY" ]]; then
  # the node's own processes are gone; its actors' workers (they left the process group) are killed by their raylet
  awk -v role="$ONLY" '$1 != role' "$STATE/pids" > "$STATE/pids.tmp" && mv "$STATE/pids.tmp" "$STATE/pids"
  echo "stopped the $ONLY node of the cluster in $STATE"
  exit 0
fi

# Anything of this cluster that left its process group (it runs with --temp-dir/--session-dir under STATE).
for proc in /proc/[0-9]*; do
  # (2>/dev/null first: a process that ended since the glob fails the redirection, which the shell would report)
  if tr '\0' ' ' 2>/dev/null < "$proc/cmdline" | grep -qF -- "$STATE/tmp"; then
    kill -KILL "${proc#/proc/}" 2>/dev/null
  fi
done

rm -rf "$STATE/tmp" "$STATE/pids" "$STATE/env.sh" "$STATE/auth_token"
echo "stopped the cluster in $STATE"
