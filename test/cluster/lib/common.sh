# Shared settings of the test cluster scripts: paths, names, addresses.
. "$(dirname "${BASH_SOURCE[0]}")/versions.sh"

# Built binaries live outside the repo, keyed by version, so CI on the same machine reuses them.
CACHE_DIR="${KTCTL_CLUSTER_CACHE:-/var/cache/ktctl-cluster}"
K8S_BIN="$CACHE_DIR/kubernetes-v$K8S_VERSION"
ETCD_BIN="$CACHE_DIR/etcd-v$ETCD_VERSION"
COREDNS_BIN="$CACHE_DIR/coredns-v$COREDNS_VERSION"

# Everything a running cluster owns; `down` removes these.
STATE_DIR="${KTCTL_CLUSTER_STATE:-/var/lib/ktctl-cluster}"
RUN_DIR="/run/ktctl-cluster"
LOG_DIR="$STATE_DIR/logs"
PKI_DIR="$STATE_DIR/pki"
KUBECONFIG_ADMIN="$STATE_DIR/admin.kubeconfig"
CONTAINERD_SOCK="$RUN_DIR/containerd.sock"

NODE_NAME="ktctl-node"
POD_CIDR="10.244.0.0/24"
CLUSTER_POD_CIDR="10.244.0.0/16"
SERVICE_CIDR="10.96.0.0/16"
KUBERNETES_SVC_IP="10.96.0.1"
DNS_SVC_IP="10.96.0.10"
CLUSTER_DOMAIN="cluster.local"

# The laptop: a network namespace joined to the host by one veth pair; it reaches only the API server.
LAPTOP_NS="ktctl-laptop"
LAPTOP_HOST_IF="ktctl-lap0"
LAPTOP_NS_IF="eth0"
HOST_SIDE_IP="10.200.0.1"
LAPTOP_IP="10.200.0.2"
API_PORT=6443
API_SERVER="https://$HOST_SIDE_IP:$API_PORT"

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf '[cluster] error: %s\n' "$*" >&2; exit 1; }

PAUSE_IMAGE="ktctl.local/pause:1"
COREDNS_IMAGE="ktctl.local/coredns:$COREDNS_VERSION"
ECHO_IMAGE="ktctl.local/echo:1"
TOOLBOX_IMAGE="ktctl.local/toolbox:1"
POD_BRIDGE="ktctl-cni0"
