#!/usr/bin/env bash
# Installs what the cluster needs from Debian, once.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need=()
for pair in containerd:containerd runc:runc /usr/lib/cni/bridge:containernetworking-plugins \
            iptables:iptables conntrack:conntrack busybox:busybox-static openssl:openssl ip:iproute2 \
            curl:curl gcc:gcc dig:dnsutils getent:libc-bin socat:socat; do
  probe="${pair%%:*}" pkg="${pair#*:}"
  if [[ "$probe" == /* ]]; then [[ -e "$probe" ]] || need+=("$pkg")
  else command -v "$probe" >/dev/null || need+=("$pkg"); fi
done
command -v go >/dev/null || die "Go is needed to build Kubernetes, etcd and CoreDNS"
if ((${#need[@]})); then
  log "installing from Debian: ${need[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
