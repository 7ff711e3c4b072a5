#!/usr/bin/env bash
# Start a real Orthanc PACS with its DICOMweb plugin on 127.0.0.1 (for CI and tests/test_dicomweb.py).
#
# Installs Debian `orthanc orthanc-dicomweb` with apt when they are missing (as root only), writes
# a config (HTTP on 127.0.0.1:$ORTHANC_PORT, no remote access, no authentication, DICOM port off,
# storage under $ORTHANC_STATE), starts /usr/sbin/Orthanc in the background (pid in
# $ORTHANC_STATE/orthanc.pid, log in $ORTHANC_STATE/orthanc.log) and waits until
# /dicom-web/studies answers. Idempotent: if DICOMweb already answers on the port, exits at once.
# Tear down with .ci/orthanc/stop.sh (same environment).
set -euo pipefail

PORT=${ORTHANC_PORT:-8042}
STATE=${ORTHANC_STATE:-/tmp/scorerecon-orthanc-$PORT}
WAIT_S=${ORTHANC_START_WAIT_S:-60}
URL="http://127.0.0.1:$PORT/dicom-web/studies"

log() { echo "orthanc-ci: $*" >&2; }
answers() { python3 - "$URL" <<'PY' 2>/dev/null
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
PY
}

if answers; then
    log "DICOMweb already answers on $URL"
    exit 0
fi

# where Debian's orthanc-dicomweb puts the plugin (dpkg -L orthanc-dicomweb)
find_plugin() {
    for so in /usr/share/orthanc/plugins/libOrthancDicomWeb.so /usr/lib/orthanc/libOrthancDicomWeb.so*; do
        [ -e "$so" ] && { echo "$so"; return 0; }
    done
    return 1
}

if [ ! -x /usr/sbin/Orthanc ] || ! find_plugin >/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
        log "Orthanc or its DICOMweb plugin is missing and installing needs root (apt-get install orthanc orthanc-dicomweb)"
        exit 1
    fi
    log "installing orthanc orthanc-dicomweb"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends orthanc orthanc-dicomweb >/dev/null
fi
PLUGIN=$(find_plugin)

mkdir -p "$STATE/db"
cat >"$STATE/orthanc.json" <<CONF
{
  "Name": "scorerecon-ci",
  "StorageDirectory": "$STATE/db",
  "IndexDirectory": "$STATE/db",
  "HttpPort": $PORT,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "DicomServerEnabled": false,
  "HttpServerEnabled": true,
  "Plugins": ["$PLUGIN"],
  "DicomWeb": {"Enable": true, "Root": "/dicom-web/", "EnableWado": true, "Host": "127.0.0.1", "Ssl": false}
}
CONF

log "starting Orthanc on 127.0.0.1:$PORT (state $STATE)"
nohup /usr/sbin/Orthanc "$STATE/orthanc.json" >"$STATE/orthanc.log" 2>&1 &
echo $! >"$STATE/orthanc.pid"

deadline=$((SECONDS + WAIT_S))
until answers; do
    if ! kill -0 "$(cat "$STATE/orthanc.pid")" 2>/dev/null; then
        log "Orthanc exited during start-up:"
        tail -n 20 "$STATE/orthanc.log" >&2 || true
        exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
        log "DICOMweb did not answer within ${WAIT_S}s"
        tail -n 20 "$STATE/orthanc.log" >&2 || true
        exit 1
    fi
    sleep 0.3
done
log "DICOMweb up at http://127.0.0.1:$PORT/dicom-web/"
