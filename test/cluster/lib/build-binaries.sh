#!/usr/bin/env bash
# Builds Kubernetes, etcd and CoreDNS from their Go modules into a cache keyed by version.
# A second run finds the binaries and builds nothing.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$HERE/lib/common.sh"

build_module() { # name dir outdir ldflags pkgs...
  local name="$1" dir="$2" out="$3" ldflags="$4"; shift 4
  if [[ -f "$out/.complete" ]]; then log "$name: cached in $out"; return; fi
  log "$name: building from Go modules (cold: several minutes on 2 cores; output follows when done)"
  mkdir -p "$out"
  local started=$SECONDS
  ( cd "$dir" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$out/" "$@" ) \
    2>&1 | sed -u "s/^/  [$name] /"
  touch "$out/.complete"
  log "$name: built in $((SECONDS - started)) s"
}

k8s_ldflags() {
  local v="v$K8S_VERSION" major="${K8S_VERSION%%.*}" minor; minor="$(echo "$K8S_VERSION" | cut -d. -f2)"
  local f=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    f+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
    f+=" -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  echo "-s -w$f"
}

build_module "kubernetes v$K8S_VERSION" "$HERE/gomod/kubernetes" "$K8S_BIN" "$(k8s_ldflags)" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet \
  k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubectl
build_module "etcd v$ETCD_VERSION" "$HERE/gomod/etcd" "$ETCD_BIN" "-s -w" .
build_module "coredns v$COREDNS_VERSION" "$HERE/gomod/coredns" "$COREDNS_BIN" "-s -w" github.com/coredns/coredns
