# netns_link.sh - sourced by bench/dist_netns.sh and bench/rpc_netns.sh: two network
# namespaces joined by a veth pair whose each direction a tc tbf limits to a rate
# (this kernel has no netem, so no delay: the scripts add latency in the processes).
#   netns_link NS0 NS1 DEV0 DEV1 PREFIX RATE   (PREFIX.1 in NS0, PREFIX.2 in NS1, /24)
netns_link() {
    ip netns add "$1"
    ip netns add "$2"
    ip link add "$3" netns "$1" type veth peer name "$4" netns "$2"
    ip -n "$1" addr add "$5.1/24" dev "$3"
    ip -n "$2" addr add "$5.2/24" dev "$4"
    for n in "$1:$3" "$2:$4"; do
        ns=${n%%:*}
        dev=${n#*:}
        ip -n "$ns" link set lo up
        ip -n "$ns" link set "$dev" up
        # bandwidth on each direction: burst of 64 KiB, at most 50 ms queued
        ip netns exec "$ns" tc qdisc add dev "$dev" root tbf rate "$6" burst 64kb latency 50ms
    done
}
