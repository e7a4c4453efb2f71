# Host-side network of the test cluster: the laptop namespace and the fences around it.
# Sourced after common.sh.

setup_laptop_netns() {
  if ! ip netns list | grep -qw "$LAPTOP_NS"; then
    log "laptop network namespace $LAPTOP_NS ($LAPTOP_IP, reaches only $API_SERVER)"
    ip netns add "$LAPTOP_NS"
    ip link add "$LAPTOP_HOST_IF" type veth peer name "$LAPTOP_NS_IF" netns "$LAPTOP_NS"
    ip addr add "$HOST_SIDE_IP/30" dev "$LAPTOP_HOST_IF"
    ip link set "$LAPTOP_HOST_IF" up
    ip -n "$LAPTOP_NS" addr add "$LAPTOP_IP/30" dev "$LAPTOP_NS_IF"
    ip -n "$LAPTOP_NS" link set "$LAPTOP_NS_IF" up
    ip -n "$LAPTOP_NS" link set lo up
  fi
  # `ip netns exec` bind-mounts these over /etc inside the namespace: the laptop's own files.
  # Its resolver is its own loopback where nothing listens: cluster names fail fast, as on a laptop.
  mkdir -p "/etc/netns/$LAPTOP_NS"
  [[ -f "/etc/netns/$LAPTOP_NS/resolv.conf" ]] || printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' > "/etc/netns/$LAPTOP_NS/resolv.conf"
  [[ -f "/etc/netns/$LAPTOP_NS/hosts" ]] || printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n%s\tlaptop\n%s\tapi.ktctl.test\n' "$LAPTOP_IP" "$HOST_SIDE_IP" > "/etc/netns/$LAPTOP_NS/hosts"
}

# Our own chains, hooked first into INPUT/FORWARD; `down` unhooks and deletes them.
setup_fences() {
  iptables -w -N KTCTL-LAPTOP 2>/dev/null || iptables -w -F KTCTL-LAPTOP
  iptables -w -A KTCTL-LAPTOP -p tcp --dport "$API_PORT" -j ACCEPT
  iptables -w -A KTCTL-LAPTOP -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
  iptables -w -A KTCTL-LAPTOP -j DROP
  iptables -w -C INPUT -i "$LAPTOP_HOST_IF" -j KTCTL-LAPTOP 2>/dev/null || iptables -w -I INPUT 1 -i "$LAPTOP_HOST_IF" -j KTCTL-LAPTOP

  iptables -w -N KTCTL-FENCE 2>/dev/null || iptables -w -F KTCTL-FENCE
  # The laptop forwards nothing through the host: no pod, no service, no DNS.
  iptables -w -A KTCTL-FENCE -i "$LAPTOP_HOST_IF" -j DROP
  iptables -w -A KTCTL-FENCE -o "$LAPTOP_HOST_IF" -j DROP
  # Pods talk to pods; nothing of theirs leaves the machine.
  iptables -w -A KTCTL-FENCE -i "$POD_BRIDGE" -o "$POD_BRIDGE" -j ACCEPT
  iptables -w -A KTCTL-FENCE -i "$POD_BRIDGE" -j DROP
  iptables -w -C FORWARD -j KTCTL-FENCE 2>/dev/null || iptables -w -I FORWARD 1 -j KTCTL-FENCE

  # Service addresses that kube-proxy did not NAT go nowhere.
  ip route replace blackhole "$SERVICE_CIDR"

  sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
}

teardown_network() {
  iptables -w -D INPUT -i "$LAPTOP_HOST_IF" -j KTCTL-LAPTOP 2>/dev/null || true
  iptables -w -D FORWARD -j KTCTL-FENCE 2>/dev/null || true
  for chain in KTCTL-LAPTOP KTCTL-FENCE; do
    iptables -w -F "$chain" 2>/dev/null || true
    iptables -w -X "$chain" 2>/dev/null || true
  done
  ip route del blackhole "$SERVICE_CIDR" 2>/dev/null || true
  ip link del "$LAPTOP_HOST_IF" 2>/dev/null || true
  ip netns delete "$LAPTOP_NS" 2>/dev/null || true
  rm -rf "/etc/netns/$LAPTOP_NS"
  ip link del "$POD_BRIDGE" 2>/dev/null || true
}
