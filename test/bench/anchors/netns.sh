#!/usr/bin/env bash
# A second "laptop" of the peers benchmark: a network namespace of its own, built like the test
# cluster's (test/cluster/lib/network.sh: reaches only the API server, its own /etc/hosts and
# resolv.conf), so kt-connect's tun device and routes and kubefwd's /etc/hosts entries never meet
# the routes and files that ktctl tests running at the same time keep in ktctl-laptop.
#   test/bench/anchors/netns.sh up|down
# Another suite that needs a laptop of its own (the fault suite drops its link) names it:
#   KTCTL_NETNS=name KTCTL_NETNS_IF=host-side-veth KTCTL_NETNS_NET=10.202.0 KTCTL_NETNS_CHAIN=CHAIN netns.sh up
set -euo pipefail
NS="${KTCTL_NETNS:-ktctl-bench-laptop}"
HOST_IF="${KTCTL_NETNS_IF:-ktctl-benchl0}"
NET="${KTCTL_NETNS_NET:-10.201.0}"
CHAIN="${KTCTL_NETNS_CHAIN:-KTCTL-BENCH-LAPTOP}"
HOST_IP="$NET.1"
NS_IP="$NET.2"
API_IP=10.200.0.1
API_PORT=6443

up() {
  if ! ip netns list | grep -qw "$NS"; then
    ip netns add "$NS"
    ip link add "$HOST_IF" type veth peer name eth0 netns "$NS"
    ip addr add "$HOST_IP/30" dev "$HOST_IF"
    ip link set "$HOST_IF" up
    ip -n "$NS" addr add "$NS_IP/30" dev eth0
    ip -n "$NS" link set eth0 up
    ip -n "$NS" link set lo up
    ip -n "$NS" route add "$API_IP/32" via "$HOST_IP"
  fi
  mkdir -p "/etc/netns/$NS"
  printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' > "/etc/netns/$NS/resolv.conf"
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n%s\tlaptop\n' "$NS_IP" > "/etc/netns/$NS/hosts"
  # The same fence as the test laptop: the API server and nothing else.
  iptables -w -N "$CHAIN" 2>/dev/null || iptables -w -F "$CHAIN"
  iptables -w -A "$CHAIN" -p tcp -d "$API_IP" --dport "$API_PORT" -j ACCEPT
  iptables -w -A "$CHAIN" -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
  iptables -w -A "$CHAIN" -j DROP
  iptables -w -C INPUT -i "$HOST_IF" -j "$CHAIN" 2>/dev/null || iptables -w -I INPUT 1 -i "$HOST_IF" -j "$CHAIN"
  iptables -w -C FORWARD -i "$HOST_IF" -j DROP 2>/dev/null || iptables -w -I FORWARD 1 -i "$HOST_IF" -j DROP
  iptables -w -C FORWARD -o "$HOST_IF" -j DROP 2>/dev/null || iptables -w -I FORWARD 1 -o "$HOST_IF" -j DROP
  # The link-local IPv6 address stays "tentative" for a moment (duplicate address detection), and
  # its route comes after: a snapshot of the laptop taken meanwhile would differ from every later one.
  for _ in $(seq 1 100); do
    [[ -z "$(ip -n "$NS" -6 addr show tentative)" ]] && return 0
    sleep 0.1
  done
  echo "netns.sh: $NS still has tentative IPv6 addresses after 10 s" >&2
  return 1
}

down() {
  iptables -w -D INPUT -i "$HOST_IF" -j "$CHAIN" 2>/dev/null || true
  iptables -w -D FORWARD -i "$HOST_IF" -j DROP 2>/dev/null || true
  iptables -w -D FORWARD -o "$HOST_IF" -j DROP 2>/dev/null || true
  iptables -w -F "$CHAIN" 2>/dev/null || true
  iptables -w -X "$CHAIN" 2>/dev/null || true
  ip link del "$HOST_IF" 2>/dev/null || true
  ip netns delete "$NS" 2>/dev/null || true
  rm -rf "/etc/netns/$NS"
}

"${1:?up or down}"
