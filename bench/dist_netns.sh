#!/bin/sh
# dist_netns.sh - tensor-parallel grok over a real TCP link on one machine: two
# Linux network namespaces joined by a veth pair whose egress is limited by a
# token-bucket filter (tc tbf; this kernel has no netem, so there is no added
# latency beyond the stack's own), rank 0 in one namespace and rank 1 in the
# other, OpenMPI's TCP transport only (no shared memory between the ranks).
#
# usage (root): bench/dist_netns.sh MODEL.gguf [RATE] [grok bench options...]
#   RATE: a tc rate such as 1gbit (default) or 10gbit
# GK_DIST_LATENCY_US in the environment: the link's latency, which the kernel
# cannot add, added by grok's link model in each rank (bandwidth stays tbf's).
# Prints `grok bench` at N = 2 over the link; removes the namespaces on exit.
set -eu
model=${1:?usage: dist_netns.sh MODEL.gguf [RATE] [bench options]}
rate=${2:-1gbit}
shift $(( $# >= 2 ? 2 : 1 ))
grok=${GROK:-$(dirname "$0")/../build/grok}
grok=$(readlink -f "$grok")
model=$(readlink -f "$model")
ns0=gkdist0.$$
ns1=gkdist1.$$

cleanup() {
    ip netns del "$ns0" 2>/dev/null || true
    ip netns del "$ns1" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

. "$(dirname "$0")/netns_link.sh"
netns_link "$ns0" "$ns1" gkv0 gkv1 10.77.0 "$rate"
ip -n "$ns0" link show gkv0 | grep -q "state UP\|LOWER_UP"

echo "grok bench, N = 2 over a veth pair limited to $rate (tc tbf), OpenMPI TCP"
# mpirun runs in the first namespace; the rank in the second reaches its PMIx
# server over the veth (remote connections allowed). The ranks talk to each
# other only over TCP on the veth addresses.
ip netns exec "$ns0" env PMIX_MCA_ptl_tcp_remote_connections=1 PMIX_MCA_ptl_tcp_if_include=10.77.0.0/24 \
    GK_DIST_LATENCY_US=${GK_DIST_LATENCY_US:-0} \
    mpirun --allow-run-as-root --oversubscribe -x GK_DIST_LATENCY_US \
    -x PMIX_MCA_ptl_tcp_remote_connections -x PMIX_MCA_ptl_tcp_if_include \
    --mca mpi_yield_when_idle 1 --mca btl tcp,self --mca btl_tcp_if_include 10.77.0.0/24 \
    --mca oob_tcp_if_include 10.77.0.0/24 --mca pml ob1 \
    -np 1 "$grok" bench -m "$model" -t 1 "$@" : \
    -np 1 ip netns exec "$ns1" "$grok" bench -m "$model" -t 1 "$@"
