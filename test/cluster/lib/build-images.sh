#!/usr/bin/env bash
# Builds every image the test cluster runs as an OCI tarball (no Docker, no registry) and imports
# them into the cluster's containerd. Pods never pull: these names exist only here.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
. "$HERE/lib/common.sh"

IMAGE_DIR="$CACHE_DIR/images"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$IMAGE_DIR"

oci() { bun "$REPO/build/oci.ts" "$@" >/dev/null; }

# The echo workload is small and changes with the tests, so it is rebuilt when its source changes
# (the toolbox carries the echo client and the pause program as its PID 1, so both count).
echo_key="$(cat "$HERE/images/echo/"{main.go,go.mod,go.sum} "$HERE/images/pause/pause.c" | sha256sum | cut -c1-12)"

build_pause() {
  local out="$IMAGE_DIR/pause.tar"
  [[ -f "$out" ]] && return
  log "image $PAUSE_IMAGE"
  gcc -static -Os -o "$WORK/pause" "$HERE/images/pause/pause.c"
  oci --name "$PAUSE_IMAGE" --out "$out" --file "$WORK/pause:/pause:0755" --entrypoint '["/pause"]'
}

build_coredns() {
  local out="$IMAGE_DIR/coredns-$COREDNS_VERSION.tar"
  [[ -f "$out" ]] && return
  log "image $COREDNS_IMAGE"
  oci --name "$COREDNS_IMAGE" --out "$out" --file "$COREDNS_BIN/coredns:/coredns:0755" \
    --entrypoint '["/coredns"]' --user 65532:65532
}

build_echo_and_toolbox() {
  local echo_out="$IMAGE_DIR/echo-$echo_key.tar" toolbox_out="$IMAGE_DIR/toolbox-$echo_key.tar"
  [[ -f "$echo_out" && -f "$toolbox_out" ]] && return
  log "image $ECHO_IMAGE and $TOOLBOX_IMAGE"
  ( cd "$HERE/images/echo" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$WORK/echo" . )
  oci --name "$ECHO_IMAGE" --out "$echo_out" --file "$WORK/echo:/echo:0755" \
    --entrypoint '["/echo"]' --user 65532:65532
  # The toolbox is where tests run commands "inside the cluster": busybox plus the echo client.
  # Its PID 1 is the pause program, which reaps: processes of `kubectl exec` whose parent exits
  # first (a `timeout` wrapping a client) are re-parented to it, and `sleep` as PID 1 would
  # keep them as zombies until the node runs out of PIDs.
  gcc -static -Os -o "$WORK/toolbox-init" "$HERE/images/pause/pause.c"
  local links=()
  for applet in $(busybox --list | grep -vx busybox); do links+=(--symlink "/bin/busybox:/bin/$applet"); done
  oci --name "$TOOLBOX_IMAGE" --out "$toolbox_out" --file "$(command -v busybox):/bin/busybox:0755" \
    --file "$WORK/echo:/usr/local/bin/kecho:0755" "${links[@]}" --dir /tmp:1777 \
    --file "$WORK/toolbox-init:/sbin/init:0755" \
    --env PATH=/usr/local/bin:/bin --entrypoint '["/sbin/init"]'
}

build_pause
build_coredns
build_echo_and_toolbox

import_image() {
  ctr --address "$CONTAINERD_SOCK" -n k8s.io images import --no-unpack=false "$1" >/dev/null
}
for tar in "$IMAGE_DIR/pause.tar" "$IMAGE_DIR/coredns-$COREDNS_VERSION.tar" \
           "$IMAGE_DIR/echo-$echo_key.tar" "$IMAGE_DIR/toolbox-$echo_key.tar"; do
  import_image "$tar"
done
# Images handed in by the build (the shadow): dist/shadow-image-*.tar, or KTCTL_EXTRA_IMAGES.
shopt -s nullglob
for tar in "$REPO"/dist/shadow-image-*-amd64.tar ${KTCTL_EXTRA_IMAGES:-}; do
  log "importing $(basename "$tar")"
  import_image "$tar"
done
log "images ready"
