#!/usr/bin/env bash
# Builds the benchmark anchors from their public source into a cache OUTSIDE the repo, and imports
# kt-connect's images into the test cluster's containerd. Nothing of either project is committed
# here: kt-connect is GPLv3, so we build and run it, we never copy it.
#
#   KTCTL_BENCH_ANCHORS=/var/cache/ktctl-bench test/bench/anchors/build.sh
#
# Expects the sources at $KTCTL_BENCH_ANCHORS/src/kt-connect (checked out at v0.3.7) and
# $KTCTL_BENCH_ANCHORS/src/kubefwd (any release), e.g. clones of github.com/alibaba/kt-connect and
# github.com/txn2/kubefwd. Writes:
#   bin/kt-ktctl bin/kt-shadow bin/kt-router bin/kubefwd      (Go, static)
#   images/kt-shadow.tar images/kt-router.tar                  (OCI, imported as ktctl-bench.local/...)
# kt-connect's images are rebuilt without Docker from Debian packages of this machine's release:
#   shadow: bash, coreutils, grep and openssh-server + kt-connect's shadow binary and its run.sh
#   router: nginx + kt-connect's router binary and its nginx.conf
# Deviations from kt-connect's Dockerfiles (all forced by building from Debian 12 packages):
#   - sshd_config: kt-connect's lists ssh-dss and diffie-hellman-group1-sha1, which OpenSSH 9 no
#     longer knows (sshd refuses to start); ours keeps its intent (root by key, GatewayPorts,
#     forwarding) with the defaults of OpenSSH 9, and UsePAM no (no PAM stack in the image).
#   - nginx 1.22 (Debian 12) instead of nginx 1.21 (Docker Hub); same configuration.
set -euo pipefail
ANCHORS="${KTCTL_BENCH_ANCHORS:?set KTCTL_BENCH_ANCHORS to the anchors cache (with src/kt-connect and src/kubefwd)}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
. "$REPO/test/cluster/lib/common.sh"
SRC="$ANCHORS/src"
BIN="$ANCHORS/bin"
IMAGES="$ANCHORS/images"
DEBS="$ANCHORS/debs"
mkdir -p "$BIN" "$IMAGES" "$DEBS"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
SHADOW_IMAGE="ktctl-bench.local/kt-connect-shadow:v0.3.7"
ROUTER_IMAGE="ktctl-bench.local/kt-connect-router:v0.3.7"

# kt-connect v0.3.7 needs Go < 1.20: its gvisor (2022) builds only under `go1.13 && !go1.20`, and its
# golang.org/x/net links to syscall.recvmsg, which Go >= 1.23 refuses. Debian 12 has Go 1.19
# (apt-get install golang-1.19-go); kubefwd wants a current Go.
KT_GO="${KT_GO:-/usr/lib/go-1.19/bin/go}"
[[ -x "$KT_GO" ]] || die "kt-connect v0.3.7 needs Go 1.19 at $KT_GO (Debian: apt-get install golang-1.19-go), or set KT_GO"
go_build() { # go dir package out
  [[ -x "$4" ]] && return
  log "go build $3 -> $4 ($("$1" version | cut -d' ' -f3))"
  (cd "$2" && CGO_ENABLED=0 GOFLAGS=-mod=mod "$1" build -trimpath -ldflags "-s -w -X main.version=0.3.7" -o "$4" "$3")
}
go_build "$KT_GO" "$SRC/kt-connect" ./cmd/ktctl "$BIN/kt-ktctl"
go_build "$KT_GO" "$SRC/kt-connect" ./cmd/shadow "$BIN/kt-shadow"
go_build "$KT_GO" "$SRC/kt-connect" ./cmd/router "$BIN/kt-router"
go_build go "$SRC/kubefwd" ./cmd/kubefwd "$BIN/kubefwd"

# The closure of Depends/Pre-Depends of the given packages, downloaded with apt-get and unpacked.
rootfs_of() { # dir packages...
  local dir="$1"; shift
  local names
  names="$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances "$@" | grep -v '^ \|^<' | sort -u)"
  (cd "$DEBS" && for p in $names; do ls "${p}"_*.deb >/dev/null 2>&1 || apt-get download -q "$p" >/dev/null; done)
  mkdir -p "$dir"
  for p in $names; do dpkg-deb -x "$(ls "$DEBS/${p}"_*.deb | tail -1)" "$dir"; done
  # Debian 12 is merged-/usr: the packages put files in /usr/bin, /usr/lib; the links make /bin, /lib.
  for d in bin sbin lib lib64; do [[ -e "$dir/$d" ]] || ln -s "usr/$d" "$dir/$d"; done
}

oci_image() { # name out rootfs config-json
  bun "$HERE/rootfs-image.ts" "$3" "$1" "$2" "$4"
}

if [[ ! -f "$IMAGES/kt-shadow.tar" ]]; then
  log "image $SHADOW_IMAGE"
  root="$WORK/shadow"
  rootfs_of "$root" bash coreutils grep openssh-server sed
  install -m 0755 "$BIN/kt-shadow" "$root/usr/sbin/shadow"
  install -m 0755 "$SRC/kt-connect/build/docker/shadow/run.sh" "$root/run.sh"
  install -m 0755 "$SRC/kt-connect/build/docker/shadow/disconnect.sh" "$root/disconnect.sh"
  printf 'root:x:0:0:root:/root:/bin/bash\nsshd:x:100:65534::/run/sshd:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' > "$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
  printf 'root:*:19000:0:99999:7:::\nsshd:*:19000:0:99999:7:::\n' > "$root/etc/shadow"
  chmod 0600 "$root/etc/shadow"
  mkdir -p "$root/root" "$root/run/sshd" "$root/var/run" "$root/tmp" "$root/etc/ssh"
  chmod 1777 "$root/tmp"; chmod 0755 "$root/run/sshd"
  ssh-keygen -q -A -f "$root"
  cat > "$root/etc/ssh/sshd_config" <<'EOF'
Port 22
HostKey /etc/ssh/ssh_host_rsa_key
HostKey /etc/ssh/ssh_host_ecdsa_key
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin yes
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowTcpForwarding yes
GatewayPorts yes
TCPKeepAlive yes
PrintMotd no
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
  oci_image "$SHADOW_IMAGE" "$IMAGES/kt-shadow.tar" "$root" \
    '{"entrypoint":["/run.sh"],"env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"exposedPorts":["22/tcp"]}'
fi

if [[ ! -f "$IMAGES/kt-router.tar" ]]; then
  log "image $ROUTER_IMAGE"
  root="$WORK/router"
  rootfs_of "$root" nginx bash coreutils
  install -m 0755 "$BIN/kt-router" "$root/usr/sbin/router"
  install -m 0644 "$SRC/kt-connect/build/docker/router/nginx.conf" "$root/etc/nginx/nginx.conf"
  rm -f "$root"/etc/nginx/conf.d/*.conf "$root"/etc/nginx/sites-enabled/*
  printf 'root:x:0:0:root:/root:/bin/bash\nnginx:x:101:101:nginx:/nonexistent:/usr/sbin/nologin\n' > "$root/etc/passwd"
  printf 'root:x:0:\nnginx:x:101:\n' > "$root/etc/group"
  mkdir -p "$root/var/log/nginx" "$root/var/cache/nginx" "$root/var/lib/nginx" "$root/run" "$root/var/run" "$root/tmp" "$root/etc/nginx/conf.d"
  chmod 1777 "$root/tmp"
  touch "$root/var/kt.lock"
  oci_image "$ROUTER_IMAGE" "$IMAGES/kt-router.tar" "$root" \
    '{"entrypoint":["/usr/sbin/nginx","-g","daemon off;"],"env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"exposedPorts":["80/tcp"]}'
fi

for tar in "$IMAGES/kt-shadow.tar" "$IMAGES/kt-router.tar"; do
  ctr --address "$CONTAINERD_SOCK" -n k8s.io images import --no-unpack=false "$tar" >/dev/null
done
log "anchors ready in $ANCHORS (kt-connect images: $SHADOW_IMAGE, $ROUTER_IMAGE)"
