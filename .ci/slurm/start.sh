#!/usr/bin/env bash
# Start a real single-node SLURM cluster on this machine (for CI and tests/test_slurm.py).
#
# As root: installs slurmctld/slurmd/slurm-client/munge with apt if missing, writes
# /etc/slurm/slurm.conf + gres.conf (one node "localhost" with all CPUs, ~80% of RAM and a fake
# GPU gres so `--gpus=1` requests schedule; no accounting, so status comes from squeue), starts
# munged, slurmctld and slurmd by hand (no systemd) and waits until the node answers as idle.
# Idempotent: if the cluster already answers with the node up, it exits at once.
# Facts behind each setting: shared/docs/DESIGN.md section 6. Tear down with .ci/slurm/stop.sh.
set -euo pipefail

SLURM_ETC=/etc/slurm
STATE=/var/spool/slurm-ci
LOGDIR=/var/log/slurm-ci
WAIT_S=${SLURM_START_WAIT_S:-60}

log() { echo "slurm-ci: $*" >&2; }

node_state() { timeout 5 sinfo -h -n localhost -o %T 2>/dev/null | head -n1 || true; }

# "does it answer", not pgrep: avoids racing a daemon that is still exiting. A stopped
# controller makes scontrol retry for ~10 s, hence the short timeout.
ctld_up() { timeout 5 scontrol ping 2>/dev/null | grep -q 'is UP'; }

node_ready() {
    ctld_up || return 1
    case "$(node_state)" in idle|mixed|allocated|completing) return 0 ;; *) return 1 ;; esac
}

# the local slurmd answers itself (the controller notices a dead slurmd only after minutes)
slurmd_alive() { timeout 5 scontrol show slurmd >/dev/null 2>&1; }

if command -v scontrol >/dev/null 2>&1 && node_ready && slurmd_alive; then
    log "cluster already up (node localhost: $(node_state))"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    log "must run as root (installs packages and starts daemons)"
    exit 1
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
        || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    log "installing slurmctld slurmd slurm-client munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
fi

# --- munge: key (Debian's postinst makes one; make it if absent) and daemon ---
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    log "creating munge key"
    if command -v mungekey >/dev/null; then
        runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
    else
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    fi
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged --force
fi
for _ in $(seq 1 50); do
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
    sleep 0.2
done
munge -n | unmunge >/dev/null

# --- configuration: one node with this machine's CPUs and ~80% of its memory ---
CPUS=$(nproc)
MEM_MB=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.8}' /proc/meminfo)
install -d -m 0755 "$SLURM_ETC" "$STATE" "$STATE/ctld" "$STATE/d" "$LOGDIR"
cat >"$SLURM_ETC/slurm.conf" <<CONF
# Written by .ci/slurm/start.sh: a single-node test cluster (see shared/docs/DESIGN.md section 6).
ClusterName=scorerecon-ci
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# no slurmdbd: sacct does not work, Snakemake must poll squeue (profile: slurm-status-command)
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# squeue must still list finished jobs when Snakemake polls (>= 3x its first status delay)
MinJobAge=600
ReturnToService=2
SchedulerType=sched/backfill
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:fake:1 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
cat >"$SLURM_ETC/gres.conf" <<CONF
# A fake GPU: lets --gpus=1 requests schedule on a CPU machine (without File= the node drains).
NodeName=localhost Name=gpu Type=fake File=/dev/null
CONF

# --- daemons ---
if ! ctld_up; then
    log "starting slurmctld"
    # -c: clear saved state (a fresh cluster each start; old jobs are not resumed)
    /usr/sbin/slurmctld -c
fi
if ! slurmd_alive; then
    log "starting slurmd"
    /usr/sbin/slurmd -N localhost
fi

deadline=$((SECONDS + WAIT_S))
resumed=0
until node_ready; do
    # a node left down/drained by an earlier run (e.g. killed slurmd) is put back once
    if [ $resumed -eq 0 ] && [[ "$(node_state)" =~ ^(down|drain) ]]; then
        log "node is $(node_state); resuming it"
        scontrol update NodeName=localhost State=RESUME 2>/dev/null || true
        resumed=1
    fi
    if [ $SECONDS -ge $deadline ]; then
        log "cluster did not come up within ${WAIT_S}s; node state: '$(node_state)'"
        scontrol show node localhost >&2 || true
        tail -n 20 "$LOGDIR/slurmctld.log" "$LOGDIR/slurmd.log" >&2 || true
        exit 1
    fi
    sleep 0.5
done
log "cluster up: $(sinfo -h -o '%P %D %T %G' | head -n1)"
