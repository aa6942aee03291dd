#!/bin/sh
# link_compare.sh - grok tensor parallel (N = 2, one thread per rank) against
# llama.cpp's RPC backend over the same emulated links (bench/dist_netns.sh and
# bench/rpc_netns.sh: two network namespaces, a veth pair, tc tbf at 1 Gbit/s
# with 100 us and 10 Gbit/s with 30 us latency; the latency is added by grok's
# link model and by bench/rtt_shim.c for llama.cpp, see rpc_netns.sh), prompt and
# generation tokens/s.
# Each run takes /tmp/bench.lock on its own.
#
# usage (root): bench/link_compare.sh MODEL.gguf [-p 64 -n 32 -r 1]
set -eu
model=${1:?usage: link_compare.sh MODEL.gguf [bench options]}
shift
opts=${*:--p 64 -n 32 -r 1}
here=$(dirname "$0")
lock="flock /tmp/bench.lock"

grok_row() { # rate wire
    out=$(GK_DIST_LATENCY_US=$lat $lock "$here/dist_netns.sh" "$model" "$1" $opts \
        --dist-wire "$2" 2>&1) ||
        { echo "$out" | tail -5; exit 1; }
    pp=$(echo "$out" | awk '/^prompt:/ {print $2}')
    tg=$(echo "$out" | awk '/^generation:/ {print $2}')
    printf "| %-12s | %-44s | %8s | %8s |\n" "$1 ${lat}us" "grok N=2 (1 thread each), wire $2" "$pp" "$tg"
}

llama_row() { # rate servers label [llama-bench options]
    rate=$1 servers=$2 label=$3
    shift 3
    out=$(SERVERS=$servers LAT_US=$lat $lock "$here/rpc_netns.sh" "$model" "$rate" -t 1 $opts \
        "$@" 2>&1) ||
        { echo "$out" | tail -5; exit 1; }
    pp=$(echo "$out" | awk -F'|' '/ pp[0-9]/ {split($(NF-1), a, " "); print a[1]}')
    tg=$(echo "$out" | awk -F'|' '/ tg[0-9]/ {split($(NF-1), a, " "); print a[1]}')
    printf "| %-12s | %-44s | %8s | %8s |\n" "$rate ${lat}us" "$label" "${pp:--}" "${tg:--}"
}

echo "model: $model; $opts"
printf "| %-12s | %-44s | %8s | %8s |\n" link run prompt/s gen/s
printf "|%s|%s|%s|%s|\n" "--------------" "----------------------------------------------" "----------" "----------"
for link in 1gbit:100 10gbit:30; do
    rate=${link%:*} lat=${link#*:}
    for wire in f32 bf16 q8_0; do grok_row $rate $wire; done
    llama_row $rate 1 "llama.cpp RPC, 1 server (-t 1), all layers"
    llama_row $rate 2 "llama.cpp RPC, 2 servers (-t 1), -ts 1/1" -ts 1/1
done
