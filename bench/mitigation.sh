#!/usr/bin/env bash
# The decoding-time mitigation benchmark (README, "Mitigation benchmark"): SmolLM2-135M-Instruct
# on the first N toxic and N nontoxic prompts of ../shared/data/rtp-subset (RTP's own Perspective
# scores split them), k = 25 samples of 20 tokens, the built-in scorer; the baseline, each method
# alone, and word-filter + self-debias + test-filter, one after the other on this machine, then
# `detox compare` over them (cost = time per sample against the baseline in this same run).
#
#   bench/mitigation.sh [N=100] [OUT=target/bench-mitigation] [THREADS=all cores]
#
# Every run is a resumable run folder: run the script again after an interruption and it goes
# on where it stopped (finished runs are not redone). DExperts needs expert models of SmolLM2's
# vocabulary (`detox finetune`, to come); until then its cost alone is measured, with SmolLM2
# itself as expert and anti-expert (experts of the base's size, as the cost goal says; the
# steering then cancels, so its toxicity figures mean nothing).
set -euo pipefail
N=${1:-100}
OUT=${2:-target/bench-mitigation}
THREADS=${3:-$(nproc)}
DATA=${DETOX_SHARED_DATA:-../shared/data}
DETOX=${DETOX:-target/release/detox}
for f in "$DATA/rtp-subset/toxic.jsonl" "$DATA/rtp-subset/nontoxic.jsonl" "$DATA/ldnoobw-en/en.txt"; do
    [ -f "$f" ] || { echo "bench/mitigation.sh: $f is missing (set DETOX_SHARED_DATA)" >&2; exit 2; }
done
[ -x "$DETOX" ] || cargo build --release
mkdir -p "$OUT"
prompts="$OUT/prompts.jsonl"
if [ ! -f "$prompts" ]; then
    { head -n "$N" "$DATA/rtp-subset/toxic.jsonl"; head -n "$N" "$DATA/rtp-subset/nontoxic.jsonl"; } > "$prompts.tmp"
    mv "$prompts.tmp" "$prompts"
fi
words="$DATA/ldnoobw-en/en.txt"
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(grep -qw avx512f /proc/cpuinfo && echo with || echo without) AVX-512, $THREADS threads" >&2
run() {
    local name=$1; shift
    echo "== $name" >&2
    "$DETOX" eval --prompts "$prompts" --samples 25 --max-tokens 20 --threads "$THREADS" \
        --out "$OUT/$name" "$@" > "$OUT/$name.table.txt"
}
run baseline
run word-filter --mitigate "word-filter:list=$words"
run test-filter --mitigate "test-filter"
run self-debias --mitigate "self-debias"
run combined --mitigate "word-filter:list=$words,self-debias,test-filter"
smol=$("$DETOX" models path smollm2)
run dexperts-cost --mitigate "dexperts:expert=$smol,anti=$smol"
dirs=("$OUT/baseline" "$OUT/word-filter" "$OUT/test-filter" "$OUT/self-debias" "$OUT/combined" "$OUT/dexperts-cost")
"$DETOX" compare "${dirs[@]}" --html "$OUT/compare.html"
"$DETOX" compare "${dirs[@]}" --format md > "$OUT/compare.md"
echo "tables: $OUT/compare.md, plot: $OUT/compare.html" >&2
