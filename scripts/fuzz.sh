#!/usr/bin/env bash
# fuzz.sh - run every libFuzzer target of the sanitizer build (`make fuzz`), or
# minimise the grown corpora back into the repository (`make fuzz-merge`).
#
#   scripts/fuzz.sh [run]      build build-asan (GK_SANITIZE=ON GK_FUZZ=ON), then run
#                              each target for FUZZ_SECONDS, one at a time
#   scripts/fuzz.sh merge      add to tests/fuzz/corpus/<name>/ the grown entries
#                              (FUZZ_OUT/corpus/<target>) that add coverage (-merge=1)
#   scripts/fuzz.sh list       print the targets found
#   scripts/fuzz.sh record LABEL
#                              add this campaign's totals per target (FUZZ_OUT/stats.tsv)
#                              to the ledger tests/fuzz/campaign.tsv, as rows named LABEL
#   scripts/fuzz.sh total      print the ledger's totals per target, plus the stats.tsv of
#                              a FUZZ_OUT given (a campaign not recorded yet), against
#                              FUZZ_GOAL_CPU_S (3600: one CPU-hour per target)
#
# Targets are found, not listed: every CMake target named fuzz_* in the sanitizer
# build is one (tests/cmake/fuzz.cmake's gk_add_fuzzer makes them), so a parser's
# new target is run with no edit here. Its committed seeds are
# tests/fuzz/corpus/<target without "fuzz_">/ (or tests/fuzz/corpus/<target>/), read
# only; new entries go to FUZZ_OUT/corpus/<target>/, outside the repository.
# Extra libFuzzer flags for one target (say -max_len=16384) may sit one per line in
# tests/fuzz/<target>.options.
#
# Per input, more than FUZZ_TIMEOUT seconds (1) or FUZZ_RSS_MB MiB (256, also the
# largest single malloc) is a finding, as is any crash or sanitizer report; a
# timeout (libFuzzer's is wall time) counts when a rerun of the input also spends
# more than FUZZ_TIMEOUT seconds of CPU, else it is listed as unconfirmed (load). A
# target that stops on a finding is restarted (its grown corpus kept) until its
# time is used. `merge` keeps every committed input and adds grown ones. Findings are kept in FUZZ_OUT/findings/ and listed at the end with
# the command that reproduces each; the exit status is 1 when there is any.
#
# Environment:
#   FUZZ_SECONDS  seconds per target (60)          FUZZ_OUT      output root (/tmp/grok-fuzz)
#   FUZZ_TARGETS  space-separated subset (all)     FUZZ_NICE     nice level (19)
#   FUZZ_TIMEOUT  seconds per input (1)            FUZZ_RSS_MB   MiB per input (256)
#   FUZZ_FLAGS    extra libFuzzer flags (all targets)
#   ASAN_BUILD    sanitizer build directory (build-asan)  JOBS  build jobs (2)
#   FUZZ_NO_BUILD=1  use the existing build as it is
#
# Each run appends one line per target to FUZZ_OUT/stats.tsv (date, target, wall
# seconds, CPU seconds, executions, cov, ft, corpus files and bytes before and
# after, findings), so a campaign made of several runs can be totalled.
set -u -o pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=${1:-run}
SECONDS_PER=${FUZZ_SECONDS:-60}
OUT=${FUZZ_OUT:-/tmp/grok-fuzz}
NICE=${FUZZ_NICE:-19}
TMO=${FUZZ_TIMEOUT:-1}
RSS=${FUZZ_RSS_MB:-256}
BUILD_DIR=${ASAN_BUILD:-build-asan}
JOBS=${JOBS:-2}
# Leaks are findings too; a sanitizer report must end the process so that
# libFuzzer keeps the input. ASan's quarantine of freed memory (256 MiB by
# default) is kept small so that it does not count against the RSS limit.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1:quarantine_size_mb=16}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

die() {
    echo "fuzz.sh: $*" >&2
    exit 2
}

case $MODE in
run | merge | list | record | total) ;;
*) die "unknown mode '$MODE' (run, merge, list, record or total)" ;;
esac

# The ledger: one row per campaign and target (label, target, CPU seconds, runs, the
# last cov and ft, findings), so that the CPU time a target has had is the sum of its
# rows, whatever machine or session each campaign ran on.
LEDGER=tests/fuzz/campaign.tsv
# Totals per target of a stats.tsv (fuzz.sh run appends one row per target and run):
# "target cpu_s runs cov ft findings", cov and ft from its last row.
sum_stats() {
    awk -F'\t' 'NF >= 12 && $4 ~ /^[0-9]+$/ { c[$2] += $4; r[$2] += $5; cov[$2] = $6; ft[$2] = $7; f[$2] += $12 }
        END { for (t in c) printf "%s\t%d\t%d\t%s\t%s\t%d\n", t, c[t], r[t], cov[t], ft[t], f[t] }' "$1" | sort
}
if [[ $MODE == record ]]; then
    label=${2:-}
    [[ -n $label && $label != *$'\t'* ]] || die "record needs a label for the campaign (no tabs)"
    [[ -s $OUT/stats.tsv ]] || die "no $OUT/stats.tsv to record (set FUZZ_OUT to the campaign's output)"
    [[ -f $LEDGER ]] && cut -f1 "$LEDGER" | grep -qxF -- "$label" && die "the ledger already has '$label'"
    [[ -f $LEDGER ]] || printf '# campaign\ttarget\tcpu_s\truns\tcov\tft\tfindings\n' >"$LEDGER"
    sum_stats "$OUT/stats.tsv" | sed "s/^/$label\t/" >>"$LEDGER"
    echo "recorded $(sum_stats "$OUT/stats.tsv" | wc -l) targets of $OUT/stats.tsv as '$label' in $LEDGER"
    exit 0
fi
if [[ $MODE == total ]]; then
    goal=${FUZZ_GOAL_CPU_S:-3600}
    [[ $goal =~ ^[0-9]+$ ]] || die "FUZZ_GOAL_CPU_S must be a whole number of seconds"
    rows=$(mktemp)
    trap 'rm -f "$rows"' EXIT
    [[ -f $LEDGER ]] && grep -v '^#' "$LEDGER" | cut -f2- >"$rows"
    [[ -n ${FUZZ_OUT:-} && -s $OUT/stats.tsv ]] && sum_stats "$OUT/stats.tsv" >>"$rows" &&
        echo "(with $OUT/stats.tsv, not in the ledger yet)"
    printf '%-22s %9s %12s %9s %s\n' target cpu_s runs findings "goal ${goal} CPU-s"
    awk -F'\t' -v goal="$goal" '{ c[$1] += $2; r[$1] += $3; f[$1] += $6 }
        END { for (t in c) printf "%-22s %9d %12d %9d %s\n", t, c[t], r[t], f[t],
              (c[t] >= goal ? "reached" : sprintf("%d CPU-s to go", goal - c[t])) }' "$rows" | sort
    exit 0
fi
[[ $SECONDS_PER =~ ^[0-9]+$ && $SECONDS_PER -gt 0 ]] || die "FUZZ_SECONDS must be a positive integer"
case $OUT in
"$ROOT" | "$ROOT"/*) die "FUZZ_OUT ($OUT) must be outside the repository" ;;
esac

if [[ ${FUZZ_NO_BUILD:-0} != 1 ]]; then
    CC=clang cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Debug -DGK_SANITIZE=ON -DGK_FUZZ=ON \
        >/dev/null || die "configuring $BUILD_DIR failed"
fi
[[ -f $BUILD_DIR/CMakeCache.txt ]] || die "$BUILD_DIR is not configured"
grep -q '^GK_FUZZ:BOOL=ON' "$BUILD_DIR/CMakeCache.txt" || die "$BUILD_DIR is not built with GK_FUZZ=ON"

# Every fuzz_* target the build knows ("... name" from Makefiles, "name: phony" from Ninja).
mapfile -t ALL < <(cmake --build "$BUILD_DIR" --target help 2>/dev/null |
    sed -nE 's/^(\.\.\. )?(fuzz_[A-Za-z0-9_]+)(:.*)?$/\2/p' | sort -u)
((${#ALL[@]})) || die "no fuzz_* targets in $BUILD_DIR"
if [[ -n ${FUZZ_TARGETS:-} ]]; then
    TARGETS=()
    for t in $FUZZ_TARGETS; do
        printf '%s\n' "${ALL[@]}" | grep -qx "$t" || die "no target '$t' (have: ${ALL[*]})"
        TARGETS+=("$t")
    done
else
    TARGETS=("${ALL[@]}")
fi
if [[ $MODE == list ]]; then
    printf '%s\n' "${TARGETS[@]}"
    exit 0
fi
if [[ ${FUZZ_NO_BUILD:-0} != 1 ]]; then
    nice -n "$NICE" cmake --build "$BUILD_DIR" -j"$JOBS" --target "${TARGETS[@]}" >/dev/null ||
        die "building ${TARGETS[*]} failed"
fi

bin_of() { # the executable of a target, wherever its CMake directory puts it
    local b
    b=$(find "$ROOT/$BUILD_DIR" -name "$1" -type f -perm -u+x -print -quit)
    [[ -n $b ]] && echo "$b"
}
seeds_of() { # committed corpus directory of a target
    local name=${1#fuzz_}
    if [[ -d tests/fuzz/corpus/$name ]]; then
        echo "tests/fuzz/corpus/$name"
    else echo "tests/fuzz/corpus/$1"; fi
}
options_of() { # per-target libFuzzer flags
    local f=tests/fuzz/$1.options
    [[ -f $f ]] && grep -vE '^\s*(#|$)' "$f"
}
dir_stats() { # "files bytes" of a directory
    if [[ -d $1 ]]; then
        find "$1" -maxdepth 1 -type f -printf '%s\n' | awk '{n++; b+=$1} END {printf "%d %d", n, b}'
    else echo "0 0"; fi
}

mkdir -p "$OUT/findings" "$OUT/logs" || die "cannot create $OUT"

if [[ $MODE == merge ]]; then
    status=0
    for t in "${TARGETS[@]}"; do
        seeds=$(seeds_of "$t")
        grown=$OUT/corpus/$t
        if [[ ! -d $grown ]] || [[ -z $(ls -A "$grown") ]]; then
            echo "$t: nothing grown in $grown"
            continue
        fi
        mkdir -p "$seeds"
        read -r f0 b0 < <(dir_stats "$seeds")
        mapfile -t opts < <(options_of "$t")
        # The committed seeds stay; only grown entries that add coverage are copied in.
        bin=$(bin_of "$t") || die "$t is not built in $BUILD_DIR"
        if ! nice -n "$NICE" "$bin" -merge=1 -timeout="$TMO" -rss_limit_mb="$RSS" \
            -malloc_limit_mb="$RSS" "${opts[@]}" ${FUZZ_FLAGS:-} "$seeds" "$grown" \
            >"$OUT/logs/$t-merge.log" 2>&1; then
            echo "$t: merge failed, see $OUT/logs/$t-merge.log"
            status=1
            continue
        fi
        read -r f1 b1 < <(dir_stats "$seeds")
        echo "$t: $seeds $f0 files ($b0 bytes) -> $f1 files ($b1 bytes)"
    done
    exit $status
fi

# The last "cov: N ft: M" libFuzzer printed, and its executed-units count.
log_cov() { grep -oE 'cov: [0-9]+ ft: [0-9]+' "$1" | tail -1 | awk '{print $2, $4}'; }
log_runs() { sed -nE 's/^stat::number_of_executed_units: ([0-9]+)/\1/p' "$1" | tail -1; }

summary=$OUT/summary.txt
findings=$OUT/findings.txt
: >"$summary"
: >"$findings"
rm -f "$findings.unconfirmed"
found=0
printf '%-22s %8s %8s %10s %7s %7s %16s %16s %s\n' target seconds cpu_s runs cov ft "corpus before" \
    "corpus after" findings | tee -a "$summary"
for t in "${TARGETS[@]}"; do
    bin=$(bin_of "$t") || die "$t is not built in $BUILD_DIR"
    seeds=$(seeds_of "$t")
    grown=$OUT/corpus/$t
    mkdir -p "$grown"
    [[ -d $seeds ]] || echo "$t: no seed corpus $seeds; starting from nothing" >&2
    read -r gf0 gb0 < <(dir_stats "$grown")
    read -r sf sb < <(dir_stats "$seeds")
    mapfile -t opts < <(options_of "$t")
    log=$OUT/logs/$t.log
    : >"$log"
    start=$(date +%s)
    runs=0 cov=0 ft=0 n_find=0 tries=0 cpu=0
    while :; do
        left=$((SECONDS_PER - ($(date +%s) - start)))
        ((left > 0)) || break
        ((tries++ < 50)) || break # every run ends on a finding at once: stop looping
        one=$OUT/logs/$t.last.log
        seed_dirs=()
        [[ -d $seeds ]] && seed_dirs=("$seeds")
        # `time` gives the CPU seconds the run had (wall time is shared with the machine's load).
        TIMEFORMAT='%3U %3S'
        # A fuzzer that outlives its time by 10 minutes is killed: one stuck in its own
        # report (its llvm-symbolizer child stopped by a pause of the campaign) held a
        # lane for 40 minutes.
        { time nice -n "$NICE" timeout -k 30 $((left + 600)) "$bin" -max_total_time="$left" \
            -timeout="$TMO" -rss_limit_mb="$RSS" -malloc_limit_mb="$RSS" -print_final_stats=1 \
            -artifact_prefix="$OUT/findings/$t-" "${opts[@]}" ${FUZZ_FLAGS:-} "$grown" \
            "${seed_dirs[@]}" >"$one" 2>&1; } 2>"$one.time"
        rc=$?
        cpu=$(awk -v c="$cpu" '{printf "%.0f", c + $1 + $2}' "$one.time")
        cat "$one" >>"$log"
        r=$(log_runs "$one")
        runs=$((runs + ${r:-0}))
        read -r c f < <(log_cov "$one")
        [[ -n ${c:-} ]] && cov=$c ft=$f
        ((rc == 0)) && continue
        if ((rc == 124 || rc == 137)); then
            echo "UNCONFIRMED $t: the fuzzer ran 10 minutes past its time and was killed" \
                "(its log: $log)" >>"$findings.unconfirmed"
            continue
        fi
        # A finding: the artifact line names the input libFuzzer kept.
        art=$(sed -nE 's/.*Test unit written to (.*)$/\1/p' "$one" | tail -1)
        # What was found: the sanitizer's own line (file:line and what), else libFuzzer's
        # (timeout, out-of-memory, deadly signal).
        kind=$(grep -m1 -oE '[^ ]+: runtime error: .*' "$one")
        [[ -z $kind ]] && kind=$(grep -m1 -oE 'SUMMARY: (Address|Leak|Memory|UndefinedBehavior)Sanitizer: .*' "$one")
        [[ -z $kind ]] && kind=$(grep -m1 -oE 'ERROR: libFuzzer: [^(]*' "$one")
        [[ -z $kind ]] && kind="exit status $rc"
        repro="$bin -timeout=$TMO -rss_limit_mb=$RSS -malloc_limit_mb=$RSS ${opts[*]} $art"
        if [[ $kind == *timeout* && -n $art && -f $art ]]; then
            # libFuzzer's timeout is wall time, which a loaded machine stretches: a
            # timeout counts when a rerun spends more than FUZZ_TIMEOUT seconds of CPU
            # (or does not finish in ten times that).
            { time "$bin" -timeout=$((TMO * 10)) -rss_limit_mb="$RSS" -malloc_limit_mb="$RSS" \
                "${opts[@]}" "$art" >"$one.recheck" 2>&1; } 2>"$one.retime"
            rrc=$?
            used=$(awk '{printf "%.2f", $1 + $2}' "$one.retime")
            if ((rrc == 0)) && awk -v u="$used" -v t="$TMO" 'BEGIN {exit !(u <= t)}'; then
                mkdir -p "$OUT/findings/unconfirmed"
                mv "$art" "$OUT/findings/unconfirmed/"
                echo "UNCONFIRMED $t: $kind (a rerun of $OUT/findings/unconfirmed/${art##*/}" \
                    "used ${used}s of CPU: machine load)" >>"$findings.unconfirmed"
                continue
            fi
            kind="$kind (a rerun used ${used}s of CPU)"
        fi
        n_find=$((n_find + 1))
        {
            echo "FINDING $t: $kind"
            if [[ -n $art && -f $art ]]; then
                echo "  input:     $art"
                echo "  reproduce: ASAN_OPTIONS=$ASAN_OPTIONS UBSAN_OPTIONS=$UBSAN_OPTIONS $repro"
            else
                echo "  no input was written (see $log)"
            fi
        } >>"$findings"
    done
    secs=$(($(date +%s) - start))
    read -r gf1 gb1 < <(dir_stats "$grown")
    found=$((found + n_find))
    printf '%-22s %8d %8d %10d %7s %7s %16s %16s %d\n' "$t" "$secs" "$cpu" "$runs" "$cov" "$ft" \
        "$((sf + gf0))f/$((sb + gb0))B" "$((sf + gf1))f/$((sb + gb1))B" "$n_find" | tee -a "$summary"
    printf '%s\t%s\t%d\t%d\t%d\t%s\t%s\t%d\t%d\t%d\t%d\t%d\n' "$(date -u +%FT%TZ)" "$t" "$secs" \
        "$cpu" "$runs" "$cov" "$ft" "$((sf + gf0))" "$((sb + gb0))" "$((sf + gf1))" "$((sb + gb1))" \
        "$n_find" >>"$OUT/stats.tsv"
done
[[ -f $findings.unconfirmed ]] && tee -a "$summary" <"$findings.unconfirmed"
if ((found)); then
    echo
    tee -a "$summary" <"$findings"
    echo "fuzz.sh: $found finding(s); inputs in $OUT/findings, logs in $OUT/logs"
    exit 1
fi
echo "fuzz.sh: no findings; grown corpora in $OUT/corpus (scripts/fuzz.sh merge adds them to the repo)"
