# Writes the config files of containerd, CNI, the control plane, kubelet and kube-proxy.
# Sourced by `up` after common.sh.

write_kubeconfig() { # file user-cert-name
  local file="$1" name="$2"
  cat > "$file" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: ktctl-test
  cluster:
    server: $API_SERVER
    certificate-authority-data: $(base64 -w0 "$PKI_DIR/ca.crt")
users:
- name: $name
  user:
    client-certificate-data: $(base64 -w0 "$PKI_DIR/$name.crt")
    client-key-data: $(base64 -w0 "$PKI_DIR/$name.key")
contexts:
- name: ktctl-test
  context:
    cluster: ktctl-test
    user: $name
    namespace: default
current-context: ktctl-test
YAML
}

write_configs() {
  mkdir -p "$STATE_DIR/config" "$STATE_DIR/cni/net.d" "$STATE_DIR/cni/ipam"
  local c="$STATE_DIR/config"

  cat > "$c/containerd.toml" <<TOML
version = 2
root = "$STATE_DIR/containerd"
state = "$RUN_DIR/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$CONTAINERD_SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # The VM's root lacks CAP_SYS_RESOURCE: without this runc cannot set oom_score_adj and every pod fails.
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE_DIR/cni/net.d"
TOML

  cat > "$STATE_DIR/cni/net.d/10-ktctl.conflist" <<JSON
{
  "cniVersion": "0.4.0",
  "name": "ktctl-pods",
  "plugins": [
    {
      "type": "bridge", "bridge": "$POD_BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": { "type": "host-local", "ranges": [[{ "subnet": "$POD_CIDR" }]], "routes": [{ "dst": "0.0.0.0/0" }],
                "dataDir": "$STATE_DIR/cni/ipam" }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
JSON

  for name in admin controller-manager scheduler kube-proxy kubelet; do
    write_kubeconfig "$c/$name.kubeconfig" "$name"
  done
  cp "$c/admin.kubeconfig" "$KUBECONFIG_ADMIN"

  # Pods with dnsPolicy Default (CoreDNS itself) get this: no upstream, nothing leaves the machine.
  echo "nameserver 127.0.0.1" > "$c/kubelet-resolv.conf"

  cat > "$c/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $HOST_SIDE_IP
authentication:
  anonymous: { enabled: false }
  webhook: { enabled: false }
  x509: { clientCAFile: $PKI_DIR/ca.crt }
authorization: { mode: AlwaysAllow }
cgroupDriver: cgroupfs
clusterDNS: [$DNS_SVC_IP]
clusterDomain: $CLUSTER_DOMAIN
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
failSwapOn: false
resolvConf: $c/kubelet-resolv.conf
tlsCertFile: $PKI_DIR/kubelet.crt
tlsPrivateKeyFile: $PKI_DIR/kubelet.key
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: { memory.available: "100Mi", nodefs.available: "1%", nodefs.inodesFree: "1%", imagefs.available: "1%" }
maxPods: 250
YAML

  cat > "$c/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: { kubeconfig: $c/kube-proxy.kubeconfig }
mode: iptables
clusterCIDR: $CLUSTER_POD_CIDR
hostnameOverride: $NODE_NAME
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack: { maxPerCore: 0 }
nodePortAddresses: ["$HOST_SIDE_IP/32"]
YAML
}
