#!/usr/bin/env bash
# The fine-tuning demonstration (README, "Training language models"): SmolLM2-135M-Instruct's
# DExperts expert and anti-expert trained with LoRA by `detox finetune --recipe experts` on
# labelled text from ../shared/data (bench/experts_data.py: Davidson's tweets and CAT-LARGE's
# comments, sets a committed model may be trained on), then RealToxicityPrompts on the first N
# toxic and N nontoxic prompts of rtp-subset (k = 25 samples of 20 tokens, the built-in scorer)
# with and without `--mitigate dexperts`, side by side in `detox compare`.
#
#   bench/finetune_demo.sh [N=100] [STEPS=25] [OUT=target/bench-finetune] [THREADS=all cores]
#
# Every step is resumable: run the script again after an interruption.
set -euo pipefail
N=${1:-100}
STEPS=${2:-25}
OUT=${3:-target/bench-finetune}
THREADS=${4:-$(nproc)}
DATA=${DETOX_SHARED_DATA:-../shared/data}
DETOX=${DETOX:-target/release/detox}
[ -x "$DETOX" ] || cargo build --release
mkdir -p "$OUT"
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(grep -qw avx512f /proc/cpuinfo && echo with || echo without) AVX-512, $THREADS threads" >&2
[ -f "$OUT/experts.jsonl" ] || python3 bench/experts_data.py --data "$DATA" --out "$OUT/experts.jsonl"
start=$(date +%s)
"$DETOX" finetune --model smollm2 --recipe experts --train "$OUT/experts.jsonl" --out "$OUT/experts" \
    --lora-rank 8 --lora-alpha 16 --lr 1e-3 --warmup-steps 2 --block-size 128 --batch-tokens 2048 \
    --micro-batch 4 --max-steps "$STEPS" --checkpoint-every 5 --threads "$THREADS"
echo "training: $(( $(date +%s) - start )) s for both experts" >&2
prompts="$OUT/prompts.jsonl"
if [ ! -f "$prompts" ]; then
    { head -n "$N" "$DATA/rtp-subset/toxic.jsonl"; head -n "$N" "$DATA/rtp-subset/nontoxic.jsonl"; } > "$prompts.tmp"
    mv "$prompts.tmp" "$prompts"
fi
run() {
    local name=$1; shift
    echo "== $name" >&2
    "$DETOX" eval --prompts "$prompts" --samples 25 --max-tokens 20 --threads "$THREADS" \
        --out "$OUT/$name" "$@" > "$OUT/$name.table.txt"
}
run baseline
run dexperts --mitigate "dexperts:expert=$OUT/experts/expert,anti=$OUT/experts/anti-expert"
"$DETOX" compare "$OUT/baseline" "$OUT/dexperts" --format md > "$OUT/compare.md"
"$DETOX" compare "$OUT/baseline" "$OUT/dexperts" --html "$OUT/compare.html" > /dev/null
echo "table: $OUT/compare.md" >&2
