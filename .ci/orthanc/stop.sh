#!/usr/bin/env bash
# Stop the Orthanc started by .ci/orthanc/start.sh (same ORTHANC_PORT / ORTHANC_STATE) and remove its state.
set -euo pipefail
PORT=${ORTHANC_PORT:-8042}
STATE=${ORTHANC_STATE:-/tmp/scorerecon-orthanc-$PORT}
if [ -f "$STATE/orthanc.pid" ]; then
    pid=$(cat "$STATE/orthanc.pid")
    if kill "$pid" 2>/dev/null; then
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$pid" 2>/dev/null || true
    fi
fi
rm -rf "$STATE"
