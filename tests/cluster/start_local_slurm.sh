#!/usr/bin/env bash
# Start a one-node SLURM cluster on localhost, for tests/test_slurm.py and for trying profiles/slurm.
#
# Debian 12, run as root, no systemd: installs munge + slurmctld + slurmd + slurm-client with apt-get
# when missing, writes a one-node slurm.conf for this host, starts munged, slurmctld and slurmd by hand,
# records their PIDs and waits until the node is idle. Idempotent: running daemons are kept unless the
# generated slurm.conf changed. Stop with tests/cluster/stop_local_slurm.sh (by PID, nothing else).
#
# Choices (measured on a 2-core CI VM, cold start ~5 s):
# - no cgroups: ProctrackType=proctrack/linuxproc + TaskPlugin=task/none work in containers;
# - RealMemory a little below `slurmd -C`, or the node drains with "Low RealMemory";
# - no slurmdbd: `sacct` then fails, so the snakemake slurm plugin must poll with
#   `slurm-status-command: squeue` (profiles/slurm does), and finished jobs must stay visible to
#   squeue long enough: MinJobAge=3600 s (>= 600 for the plugin; an hour so that the tests can still
#   check, after a 15-minute run, every job it submitted).
#
# Environment:
#   SLURM_PARTITION  partition name (default: debug)
#   SLURM_STATE_DIR  where PIDs and the generated config live (default: /run/sat2lod-slurm)
#   SLURM_WAIT_S     seconds to wait for the node to become idle (default: 60)
set -euo pipefail

PARTITION="${SLURM_PARTITION:-debug}"
STATE_DIR="${SLURM_STATE_DIR:-/run/sat2lod-slurm}"
WAIT_S="${SLURM_WAIT_S:-60}"
PID_FILE="$STATE_DIR/pids"
CONF=/etc/slurm/slurm.conf

say() { printf '[start_local_slurm %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts system daemons)"

# ------------------------------------------------------------------ packages (only when missing)
need=()
for p in munge slurmctld slurmd slurm-client; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
  say "apt-get install ${need[*]}"
  apt-get update -qq
  # daemons are started by hand below; policy-rc.d keeps the postinst scripts from starting them
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# ------------------------------------------------------------------ helpers
is_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
remember_pid() {  # <name> <daemon pid file>
  mkdir -p "$STATE_DIR"; touch "$PID_FILE"
  { grep -v "^$1 " "$PID_FILE" || true; echo "$1 $(cat "$2")"; } > "$PID_FILE.new"
  mv "$PID_FILE.new" "$PID_FILE"
}
wait_until() {  # <seconds> <what> <command...>
  local limit=$1 what=$2; shift 2
  local deadline=$(( $(date +%s) + limit ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || die "timeout (${limit}s) waiting for $what"
    sleep 0.5
  done
}
stop_daemon() {  # <daemon pid file>
  if is_alive "$1"; then
    local pid; pid=$(cat "$1"); kill "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
    die "daemon pid $pid (from $1) did not stop"
  fi
}

# ------------------------------------------------------------------ this node's hardware
HOST="$(hostname -s)"
getent hosts "$HOST" >/dev/null || { say "adding $HOST to /etc/hosts"; echo "127.0.0.1 $HOST" >> /etc/hosts; }
# e.g. "NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105"
HW="$(slurmd -C | head -1)"
field() { tr ' ' '\n' <<<"$HW" | sed -n "s/^$1=//p"; }
CPUS=$(field CPUs); SOCKETS=$(field SocketsPerBoard); CORES=$(field CoresPerSocket)
THREADS=$(field ThreadsPerCore); MEM=$(field RealMemory)
MEM=$(( MEM > 2048 ? MEM - 512 : MEM ))

# ------------------------------------------------------------------ directories + munge
install -d -o munge -g munge -m 0755 /run/munge
install -d -o slurm -g slurm -m 0755 /run/slurm /var/lib/slurm/slurmctld /var/log/slurm
install -d -m 0755 /var/lib/slurm/slurmd "$STATE_DIR"
if [ ! -s /etc/munge/munge.key ]; then
  say "creating /etc/munge/munge.key"
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
if ! is_alive /run/munge/munged.pid; then
  say "starting munged"
  rm -f /run/munge/munged.pid
  runuser -u munge -- /usr/sbin/munged
  wait_until 20 munged bash -c 'munge -n | unmunge'
fi
remember_pid munged /run/munge/munged.pid

# ------------------------------------------------------------------ slurm.conf (one node = localhost)
WANT="$(cat <<EOF
# one-node test cluster, written by sat2lod tests/cluster/start_local_slurm.sh
ClusterName=sat2lodci
SlurmctldHost=${HOST}(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
# no cgroups needed: processes tracked through /proc, no CPU binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
# no slurmdbd: sacct does not work, clients poll with squeue
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
# finished jobs stay visible to squeue for 1 h (the snakemake plugin polls them with squeue; the
# tests list every job of a run after it ends)
MinJobAge=3600
InactiveLimit=0
KillWait=30
Waittime=0
SlurmctldTimeout=120
SlurmdTimeout=300
NodeName=${HOST} NodeAddr=127.0.0.1 CPUs=${CPUS} SocketsPerBoard=${SOCKETS} CoresPerSocket=${CORES} ThreadsPerCore=${THREADS} RealMemory=${MEM} State=UNKNOWN
PartitionName=${PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
)"
mkdir -p /etc/slurm
CHANGED=0
if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$WANT" ]; then
  printf '%s\n' "$WANT" > "$CONF"; chmod 0644 "$CONF"; CHANGED=1
fi

# ------------------------------------------------------------------ slurmctld + slurmd
if [ "$CHANGED" = 1 ]; then   # a new node definition needs a restart, not `scontrol reconfigure`
  stop_daemon /run/slurm/slurmd.pid
  stop_daemon /run/slurm/slurmctld.pid
fi
if ! is_alive /run/slurm/slurmctld.pid; then
  say "starting slurmctld"
  rm -f /run/slurm/slurmctld.pid
  /usr/sbin/slurmctld              # daemonizes and writes its pid file
  wait_until 30 slurmctld scontrol ping
fi
remember_pid slurmctld /run/slurm/slurmctld.pid
if ! is_alive /run/slurm/slurmd.pid; then
  say "starting slurmd"
  rm -f /run/slurm/slurmd.pid
  /usr/sbin/slurmd
  wait_until 15 "slurmd pid file" test -s /run/slurm/slurmd.pid
fi
remember_pid slurmd /run/slurm/slurmd.pid

# ------------------------------------------------------------------ wait for the node to be idle
deadline=$(( $(date +%s) + WAIT_S ))
while :; do
  st="$(sinfo -h -N -n "$HOST" -o '%t' 2>/dev/null | head -1)"
  case "$st" in
    idle|mix|alloc) break ;;
    down*|drain*|drng*|fail*) scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true ;;
  esac
  if [ "$(date +%s)" -ge "$deadline" ]; then
    sinfo -R >&2 || true
    tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
    die "node $HOST not idle after ${WAIT_S}s (state '$st')"
  fi
  sleep 0.5
done
say "SLURM up: node $HOST, $CPUS CPUs, $MEM MB, partition $PARTITION, state $st; PIDs in $PID_FILE"
sinfo
