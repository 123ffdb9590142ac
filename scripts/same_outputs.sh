#!/usr/bin/env bash
# Runs the same detox commands with two binaries and compares every output byte for byte:
# `detox score` (JSONL, lines, an ensemble, -o), and `detox eval` run folders (SmolLM2 with the
# built-in scorer; a GPT-2 folder with a judge and a scorer-made subset; unprompted; strict
# threshold with quantized weights kept). Use it to check that a refactor changes nothing:
#
#   git worktree add ../before <commit> && (cd ../before && cargo build -p detox)
#   cargo build -p detox
#   scripts/same_outputs.sh ../before/target/debug/detox target/debug/detox
#
# Needs ../shared/data and the pulled models (`detox models pull all-minilm-l6-v2 smollm2`).
# Prints `same FILE` or `DIFF FILE` for each output; exits 1 if any differs. The stdout of
# `detox eval` names the run folder, which differs by design, so it is compared without that line.
set -u
OLD=$(realpath "$1"); NEW=$(realpath "$2")
cd "$(dirname "$0")/.."
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/old" "$W/new"
head -3 ../shared/data/rtp-subset/toxic.jsonl > "$W/p.jsonl"
head -3 ../shared/data/rtp-subset/nontoxic.jsonl >> "$W/p.jsonl"
printf 'You are a stupid idiot and\nThe garden was quiet in the\n' > "$W/p.txt"
G=crates/detox-lm/tests/fixtures/tiny-gpt2
for side in old new; do
  B=$OLD; [ $side = new ] && B=$NEW
  O=$W/$side
  "$B" score examples/comments.jsonl > "$O/score_default.jsonl" 2>/dev/null
  "$B" score examples/comments.jsonl --scorer fast --format jsonl > "$O/score_fast.jsonl" 2>/dev/null
  printf 'a\n\nyou idiot\n' | "$B" score --format lines --scorer fast > "$O/score_lines.jsonl" 2>/dev/null
  "$B" score "$W/p.jsonl" --field prompt.text --scorer default,fast -o "$O/score_out.jsonl" 2>/dev/null
  "$B" eval --prompts "$W/p.jsonl" --limit 6 --samples 5 --max-tokens 10 --out "$O/run_smol" > "$O/eval_smol.txt" 2>/dev/null
  "$B" eval --model $G --judge-model $G --prompts "$W/p.txt" --subset toxic --samples 3 --max-tokens 4 --scorer fast --out "$O/run_gpt2" > "$O/eval_gpt2.txt" 2>/dev/null
  "$B" eval --model $G --unprompted 12 --samples 5 --max-tokens 4 --scorer fast --out "$O/run_unp" > "$O/eval_unp.txt" 2>/dev/null
  "$B" eval --model $G --prompts "$W/p.jsonl" --samples 4 --max-tokens 3 --scorer fast --weights as-stored --strict --threshold 0.4 --out "$O/run_strict" > "$O/eval_strict.txt" 2>/dev/null
  for r in "$O"/run_*; do sed -i 's/"started_unix": [0-9]*/"started_unix": T/' "$r/run.json"; done
  for t in "$O"/eval_*.txt; do sed -i '/^run folder: /d' "$t"; done
done
status=0
cd "$W"
for f in $(cd old && find . -type f | sort); do
  if cmp -s "old/$f" "new/$f"; then echo "same $f ($(wc -c < "old/$f") bytes)"; else echo "DIFF $f"; status=1; fi
done
exit $status
