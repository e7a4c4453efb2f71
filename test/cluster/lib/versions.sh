# Versions of everything the test cluster builds. The binary cache is keyed by these.
K8S_VERSION=1.34.4
ETCD_VERSION=3.5.35
COREDNS_VERSION=1.12.4
