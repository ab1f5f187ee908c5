#!/usr/bin/env bash
# Build a local Debian bookworm base image with debootstrap and import it into podman.
#
# CI has no container registry, so the Dockerfile's pinned python:3.11-slim-bookworm cannot be pulled.
# This base stands in for it (BASE_IMAGE build argument); its python3 is Debian's 3.11, which the
# Dockerfile installs with apt when the base has no python3.11. Skipped when the image already exists.
#
#   .ci/container/build-base.sh [IMAGE]        (default localhost/trashnet-base:bookworm)
#   DEBIAN_MIRROR=http://...  overrides the mirror (default: the one apt on this machine already uses)
set -euo pipefail

image="${1:-${TRASHNET_BASE_IMAGE:-localhost/trashnet-base:bookworm}}"
suite=bookworm

if podman image exists "$image"; then
    echo "base image $image exists: skipping debootstrap"
    exit 0
fi

# The mirror apt already uses: the first URI of a deb822 source, else of a one-line source.
mirror="${DEBIAN_MIRROR:-}"
if [[ -z "$mirror" ]]; then
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
fi
if [[ -z "$mirror" ]]; then
    mirror=$(awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n 1 || true)
fi
mirror="${mirror:-http://deb.debian.org/debian}"

rootfs=$(mktemp -d /var/tmp/trashnet-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT

echo "debootstrap $suite from $mirror into $rootfs"
started=$SECONDS
debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
    tail -n 30 "$rootfs.log" >&2
    exit 1
}
rm -f "$rootfs.log"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

tar -C "$rootfs" --numeric-owner -c . \
    | podman import --quiet --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' - "$image" >/dev/null
echo "imported $image in $((SECONDS - started)) s"
