#!/usr/bin/env bash
# Stop the daemons started by tests/cluster/start_local_slurm.sh, by the PIDs it recorded
# (no pkill/killall: other SLURM or munge processes on the machine are left alone).
set -uo pipefail
STATE_DIR="${SLURM_STATE_DIR:-/run/sat2lod-slurm}"
PID_FILE="$STATE_DIR/pids"
[ -f "$PID_FILE" ] || { echo "[stop_local_slurm] no $PID_FILE: nothing to stop"; exit 0; }
for name in slurmd slurmctld munged; do       # reverse start order
  pid=$(awk -v n="$name" '$1 == n {print $2}' "$PID_FILE")
  [ -n "$pid" ] || continue
  kill -0 "$pid" 2>/dev/null || continue
  echo "[stop_local_slurm] stopping $name (pid $pid)"
  kill -TERM "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "[stop_local_slurm] $name did not stop in 30 s: SIGKILL"; kill -KILL "$pid"
  fi
done
rm -f "$PID_FILE"
