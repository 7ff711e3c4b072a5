#!/usr/bin/env bash
# Tear down the cluster started by .ci/slurm/start.sh: cancel jobs, stop slurmctld/slurmd/munged
# (by their pid files, never by name) and wait until they have exited. Packages and config stay.
set -uo pipefail

log() { echo "slurm-ci: $*" >&2; }

stop_pidfile() {  # stop_pidfile NAME PIDFILE: SIGTERM, wait up to 10 s, then SIGKILL
    local name=$1 pidfile=$2 pid
    [ -s "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        log "stopping $name (pid $pid)"
        kill "$pid" 2>/dev/null
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
    fi
    rm -f "$pidfile"
}

if command -v scancel >/dev/null && timeout 5 scontrol ping 2>/dev/null | grep -q 'is UP'; then
    scancel --user="$(id -un)" 2>/dev/null || true
fi
stop_pidfile slurmd /run/slurmd.pid
stop_pidfile slurmctld /run/slurmctld.pid
stop_pidfile munged /run/munge/munged.pid
log "stopped"
