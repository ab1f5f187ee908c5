#!/usr/bin/env bash
# Build the Docker image with podman (no Docker engine needed), on the local debootstrap base.
#
#   .ci/container/build-image.sh [IMAGE]     (default localhost/trashnet:ci)
#   env: TRASHNET_BASE_IMAGE (default localhost/trashnet-base:bookworm, built by build-base.sh),
#        BUILD_ARGS (extra `podman build` arguments, e.g. "--build-arg WITH_IMAGENET_WEIGHTS=1").
#
# HTTPS is intercepted on these machines, so pip in the build needs the host's CA bundle and pip index.
# Both are mounted for the build only (podman build -v): a folder at /run/pip-build with a generated pip.conf
# (named by the PIP_CONFIG_FILE build argument) and the CA. Neither is in a layer of the image (an empty
# /run/pip-build mount point is all that is left). The build uses the host network to reach the index.
set -euo pipefail
cd "$(dirname "$0")/../.."

image="${1:-${TRASHNET_IMAGE:-localhost/trashnet:ci}}"
base="${TRASHNET_BASE_IMAGE:-localhost/trashnet-base:bookworm}"

ca="${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}"
[[ -f "$ca" ]] || { echo "no CA bundle at $ca (set PIP_CERT)" >&2; exit 1; }

# The host's index, if it sets one (file:// indexes are host paths: the build cannot see them).
pip_config() {
    local python
    for python in .venv/bin/python python3; do
        if command -v "$python" >/dev/null 2>&1; then
            "$python" -m pip config get "$1" 2>/dev/null && return 0
        fi
    done
    return 1
}
index_url="${PIP_INDEX_URL:-$(pip_config global.index-url || true)}"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
{
    echo "[global]"
    echo "cert = /run/pip-build/ca.crt"
    echo "timeout = 180"
    if [[ "$index_url" == http* ]]; then echo "index-url = $index_url"; fi
} >"$scratch/pip.conf"
cp "$ca" "$scratch/ca.crt"
chmod 0755 "$scratch" && chmod 0644 "$scratch"/*

commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]]; then commit="$commit-dirty"; fi

echo "building $image on $base (commit $commit)"
started=$SECONDS
# shellcheck disable=SC2086  # BUILD_ARGS is a list of words
podman build --pull=never --network host --format docker --layers \
    --build-arg "BASE_IMAGE=$base" --build-arg "GIT_COMMIT=$commit" \
    --build-arg PIP_CONFIG_FILE=/run/pip-build/pip.conf -v "$scratch:/run/pip-build:ro" \
    ${BUILD_ARGS:-} -t "$image" -f Dockerfile .
echo "built $image in $((SECONDS - started)) s; size $(podman image inspect --format '{{.Size}}' "$image") bytes"
