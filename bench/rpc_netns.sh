#!/bin/sh
# rpc_netns.sh - llama.cpp's RPC backend over the same link as bench/dist_netns.sh:
# two Linux network namespaces joined by a veth pair whose egress is limited by a
# token-bucket filter (tc tbf). ggml-rpc-server runs in the second namespace and
# llama-bench (--rpc) in the first, so every byte between them crosses the veth.
#
# usage (root): bench/rpc_netns.sh MODEL.gguf [RATE] [llama-bench options...]
#   RATE: a tc rate such as 1gbit (default) or 10gbit
#   SERVERS=2 in the environment: a second ggml-rpc-server in the first namespace
#   as well, and llama-bench given both (-ts 1/1 splits the layers over them: the
#   two-machine layout, one thread per machine)
#   LLAMA=/path/to/llama.cpp/build/bin (default /work/llama.cpp/build/bin)
#   LAT_US=100: the link's one-way latency, added by bench/rtt_shim.c (below)
#
# What it can emulate: the link's bandwidth (tbf, each direction) and a real TCP
# stack between the two sides. What the kernel cannot: added latency (it has no
# netem, fq or etf qdisc, so a packet only waits for the stack and the bucket,
# tens of microseconds on a veth). With LAT_US, llama-bench runs with the
# LD_PRELOAD shim bench/rtt_shim.c, which makes the first recv() after a send()
# on a socket wait 2 x LAT_US: every request that waits for its answer
# (get_tensor: the logits, and with two servers the activations between them)
# pays the round trip; one-way messages (set_tensor, graph_compute) travel free,
# as they would. grok's counterpart is GK_DIST_LATENCY_US (bench/dist_netns.sh
# passes it to the ranks). Prints llama-bench's table; removes the namespaces and
# stops the servers on exit.
set -eu
model=${1:?usage: rpc_netns.sh MODEL.gguf [RATE] [llama-bench options]}
rate=${2:-1gbit}
shift $(( $# >= 2 ? 2 : 1 ))
bin=${LLAMA:-/work/llama.cpp/build/bin}
model=$(readlink -f "$model")
ns0=gkrpc0.$$
ns1=gkrpc1.$$
pids=""
shim=

cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    for p in $pids; do wait "$p" 2>/dev/null || true; done
    ip netns del "$ns0" 2>/dev/null || true
    ip netns del "$ns1" 2>/dev/null || true
    [ -z "$shim" ] || rm -rf "$shim"
}
trap cleanup EXIT INT TERM

. "$(dirname "$0")/netns_link.sh"
netns_link "$ns0" "$ns1" gkr0 gkr1 10.78.0 "$rate"

ip netns exec "$ns1" "$bin/ggml-rpc-server" -H 10.78.0.2 -p 50052 -t 1 >/dev/null 2>&1 &
pids="$pids $!"
servers=10.78.0.2:50052
if [ "${SERVERS:-1}" = 2 ]; then
    ip netns exec "$ns0" "$bin/ggml-rpc-server" -H 10.78.0.1 -p 50052 -t 1 >/dev/null 2>&1 &
    pids="$pids $!"
    servers=10.78.0.2:50052,10.78.0.1:50052
fi
# wait until the servers listen (10 s at most)
for i in $(seq 100); do
    n=$( (ip netns exec "$ns0" ss -ltn; ip netns exec "$ns1" ss -ltn) | grep -c ':50052 ' || true)
    [ "$n" -ge "${SERVERS:-1}" ] && break
    sleep 0.1
done

preload=
if [ -n "${LAT_US:-}" ]; then
    shim=$(mktemp -d)
    cc -O2 -shared -fPIC -o "$shim/rtt_shim.so" "$(dirname "$0")/rtt_shim.c" -ldl
    preload="env GK_RTT_LAT_US=$LAT_US LD_PRELOAD=$shim/rtt_shim.so"
fi
echo "llama-bench --rpc $servers over a veth pair limited to $rate (tc tbf), latency ${LAT_US:-0} us"
ip netns exec "$ns0" $preload "$bin/llama-bench" -m "$model" --rpc "$servers" "$@"
