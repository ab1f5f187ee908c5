#!/usr/bin/env bash
# The image's entrypoint: run the whole pipeline with run_all.sh.
#   data:   /data when a non-empty folder is mounted there (read-only is fine), else the bundled sample;
#           an explicit TRASHNET_DATA wins.
#   output: $TRASHNET_OUT (/out in the image).
# Arguments go to run_all.sh (e.g. --profile cpu). A first argument that is a command on PATH (python,
# trashnet, bash, pytest...) runs that command instead, e.g. `docker run IMAGE trashnet predict ...`.
set -euo pipefail

if [[ $# -gt 0 && "$1" != -* ]] && command -v "$1" >/dev/null 2>&1; then
    exec "$@"
fi

if [[ -z "${TRASHNET_DATA:-}" && -d /data && -n "$(ls -A /data 2>/dev/null)" ]]; then
    export TRASHNET_DATA=/data
fi
echo "trashnet image: data ${TRASHNET_DATA:-<bundled sample>}, output ${TRASHNET_OUT:-<repository>}" >&2
exec /app/run_all.sh "$@"
