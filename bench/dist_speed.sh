#!/bin/sh
# dist_speed.sh - the tensor-parallel speed table: prompt and generation tokens/s
# of one model for N = 1 (2 threads) and N = 2 (1 thread each) on this machine,
# then N = 2 under the link model (GK_DIST_LATENCY_US, GK_DIST_MBPS) of 1 GbE
# (100 us, 1000 Mbit/s) and 10 GbE (30 us, 10000 Mbit/s) for each wire format.
#
# usage: bench/dist_speed.sh MODEL.gguf [grok bench options, e.g. -p 64 -n 32 -r 2]
set -eu
model=${1:?usage: dist_speed.sh MODEL.gguf [bench options]}
shift
grok=${GROK:-$(dirname "$0")/../build/grok}
mpi="mpirun --allow-run-as-root --oversubscribe -x OMPI_MCA_mpi_yield_when_idle=1"

row() { # label, then the command
    label=$1
    shift
    out=$("$@" 2>&1) || { echo "$out" | tail -5; exit 1; }
    pp=$(echo "$out" | awk '/^prompt:/ {print $2}')
    tg=$(echo "$out" | awk '/^generation:/ {print $2}')
    comm=$(echo "$out" | awk '/^dist generation/ {for (i = 1; i <= NF; i++) if ($i == "communication") print $(i + 1)}')
    sent=$(echo "$out" | awk '/^dist generation/ {for (i = 1; i <= NF; i++) if ($i == "sent") print $(i + 1)}')
    printf "| %-34s | %8s | %8s | %10s | %10s |\n" "$label" "$pp" "$tg" "${comm:--}" "${sent:--}"
}

echo "model: $model; grok bench $*"
printf "| %-34s | %8s | %8s | %10s | %10s |\n" "run" "prompt/s" "gen/s" "comm ms/tok" "bytes/tok"
printf "|%s|%s|%s|%s|%s|\n" "------------------------------------" "----------" "----------" "------------" "------------"
row "N=1, 2 threads" "$grok" bench -m "$model" -t 2 "$@"
row "N=2, 1 thread each" $mpi -np 2 "$grok" bench -m "$model" -t 1 "$@"
for link in "1GbE:100:1000" "10GbE:30:10000"; do
    name=${link%%:*}
    rest=${link#*:}
    lat=${rest%%:*}
    mbps=${rest#*:}
    for wire in f32 bf16 q8_0; do
        row "N=2, $name link model, wire $wire" env GK_DIST_LATENCY_US=$lat GK_DIST_MBPS=$mbps \
            $mpi -x GK_DIST_LATENCY_US -x GK_DIST_MBPS -np 2 "$grok" bench -m "$model" -t 1 \
            --dist-wire $wire "$@"
    done
done
