#!/usr/bin/env bash
# Run the image with podman the way CI does: no network, runc, the two ulimits runc needs here.
#
#   .ci/container/run.sh OUT_DIR [DATA_DIR] [-- ARGS...]
#   OUT_DIR is mounted at /out (created, and opened to the image's non-root user, uid 10001);
#   DATA_DIR, if given, at /data read-only (else the image runs the bundled sample).
#   ARGS go to the entrypoint: run_all.sh options, or a command such as `python -c ...`.
#   env: TRASHNET_IMAGE (default localhost/trashnet:ci), PODMAN_RUN_ARGS (extra `podman run` arguments).
set -euo pipefail

image="${TRASHNET_IMAGE:-localhost/trashnet:ci}"
[[ $# -ge 1 ]] || { sed -n '4,8p' "$0" >&2; exit 2; }
out="$1"; shift
mounts=()
if [[ $# -ge 1 && "$1" != "--" ]]; then
    mounts+=(-v "$(cd "$1" && pwd):/data:ro")
    shift
fi
[[ "${1:-}" == "--" ]] && shift

mkdir -p "$out"
chmod 0777 "$out"  # the container user (uid 10001) writes here; podman runs as root on the host
mounts+=(-v "$(cd "$out" && pwd):/out")

# shellcheck disable=SC2086  # PODMAN_RUN_ARGS is a list of words
exec podman run --rm --network none --runtime runc \
    --ulimit nofile=20000:20000 --ulimit nproc=32768:32768 \
    "${mounts[@]}" ${PODMAN_RUN_ARGS:-} "$image" "$@"
