#!/usr/bin/env python3
"""Scoring benchmark: detox vs PyTorch `transformers` vs ONNX Runtime, side by side.

The same model (all-MiniLM-L6-v2 with a seeded random 8-label multi-label head, the shape of
the built-in scorer) scores the same corpus (the 3,338 prompt and continuation texts of
`../shared/data/rtp-subset`) in three separate processes per batch size. Each reports texts/s
end to end (tokenization + model + sigmoid, model loading excluded); peak memory is each
process's max RSS. Outputs are compared: the largest score difference is printed.

Every figure is the median of `--repeats` interleaved runs (shared machines are noisy), and the
CPU line (`detox cpu`: model, instruction sets, the one detox's kernels use) is printed beside
the table. `DETOX_CPU=avx2` measures detox's AVX2 kernels on an AVX-512 machine.

Usage (from the repository root):
    python3 -m venv .venv-ref && .venv-ref/bin/pip install torch transformers onnxruntime onnx
    cargo build --release
    .venv-ref/bin/python bench/score.py [--batch-sizes 1,32] [--threads 2]

Results also go to bench/out/score.json.
"""
import argparse
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
ATTRS = ["toxicity", "severe_toxicity", "identity_attack", "insult", "profanity", "threat", "sexually_explicit", "flirtation"]


def corpus(data_dir, path):
    texts = []
    for name in ["toxic.jsonl", "nontoxic.jsonl"]:
        p = os.path.join(data_dir, "rtp-subset", name)
        if not os.path.exists(p):
            sys.exit(f"missing {p}: the benchmark corpus lives in ../shared/data")
        for line in open(p, encoding="utf-8"):
            if line.strip():
                row = json.loads(line)
                texts.append(row["prompt"]["text"])
                texts.append(row["continuation"]["text"])
    with open(path, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({"text": t}) + "\n")
    return len(texts)


def make_model(detox, model_dir):
    """MiniLM encoder + seeded random 8-label head as a HF folder, plus its ONNX export."""
    if os.path.exists(os.path.join(model_dir, "model.onnx")):
        return
    import shutil

    import torch
    from transformers import BertForSequenceClassification

    base = subprocess.run([detox, "models", "path", "all-minilm-l6-v2"], check=True, capture_output=True, text=True).stdout.strip()
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(
        base,
        num_labels=len(ATTRS),
        problem_type="multi_label_classification",
        id2label=dict(enumerate(ATTRS)),
        label2id={a: i for i, a in enumerate(ATTRS)},
    ).eval()
    with torch.no_grad():
        model.classifier.weight.normal_(0, 1.0)
        model.classifier.bias.normal_(0, 0.5)
    os.makedirs(model_dir, exist_ok=True)
    model.save_pretrained(model_dir)
    for f in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"]:
        if os.path.exists(os.path.join(base, f)):
            shutil.copy(os.path.join(base, f), model_dir)
    ids = torch.ones((2, 16), dtype=torch.long)
    torch.onnx.export(
        model,
        (ids, torch.ones_like(ids), torch.zeros_like(ids)),
        os.path.join(model_dir, "model.onnx"),
        input_names=["input_ids", "attention_mask", "token_type_ids"],
        output_names=["logits"],
        dynamic_axes={n: {0: "batch", 1: "seq"} for n in ["input_ids", "attention_mask", "token_type_ids"]} | {"logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )


def run_measured(cmd):
    pid = os.fork()
    if pid == 0:
        try:
            out = os.open(cmd_out(cmd), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            errf = os.open(cmd_out(cmd) + ".err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(out, 1)
            os.dup2(errf, 2)
            os.execvp(cmd[0], cmd)
        finally:
            os._exit(127)
    _, status, ru = os.wait4(pid, 0)
    stdout = open(cmd_out(cmd), encoding="utf-8").read()
    stderr = open(cmd_out(cmd) + ".err", encoding="utf-8").read()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{stderr[-2000:]}")
    return stdout, stderr, ru.ru_maxrss / 1024.0


def cmd_out(cmd):
    return os.path.join(OUT, "last-run.log")


def load_scores(path):
    return [[json.loads(l)["scores"][a] for a in ATTRS] for l in open(path, encoding="utf-8")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--detox", default=os.path.join(ROOT, "target", "release", "detox"))
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data"))
    ap.add_argument("--batch-sizes", default="1,32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backends", default="detox,torch,onnx")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved runs per batch size; figures are medians")
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    corpus_path = os.path.join(OUT, "corpus.jsonl")
    n = corpus(args.data, corpus_path)
    model_dir = os.path.join(OUT, "minilm-8")
    make_model(args.detox, model_dir)
    backends = args.backends.split(",")
    cpu = subprocess.run([args.detox, "cpu"], capture_output=True, text=True).stdout.strip() or "unknown (this detox has no `cpu` command)"
    print(f"CPU: {cpu}", file=sys.stderr)
    results = []
    for bs in [int(b) for b in args.batch_sizes.split(",")]:
        row = {"batch_size": bs}
        outs = {}
        runs = {b: [] for b in backends}
        # Repeats interleave the backends, so a slow spell of a shared machine hits all of them;
        # each figure is the median of its repeats.
        for rep in range(args.repeats):
            for b in backends:
                out_path = os.path.join(OUT, f"scores-{b}-{bs}.jsonl")
                if b == "detox":
                    cmd = [args.detox, "score", corpus_path, "--scorer", model_dir, "--batch-size", str(bs),
                           "--threads", str(args.threads), "--output", out_path]
                    _, err, rss = run_measured(cmd)
                    m = re.search(r"scored (\d+) texts in ([\d.]+)s \(([\d.]+) texts/s", err)
                    if not m:
                        sys.exit(f"no throughput line from detox:\n{err}")
                    tps = float(m.group(3))
                else:
                    cmd = [sys.executable, os.path.join(ROOT, "bench", "reference_score.py"), "--backend", b,
                           "--model", model_dir, "--input", corpus_path, "--output", out_path,
                           "--batch-size", str(bs), "--threads", str(args.threads)]
                    out, _, rss = run_measured(cmd)
                    tps = json.loads(out.strip().splitlines()[-1])["texts_per_s"]
                runs[b].append((tps, rss))
                outs[b] = load_scores(out_path)
                print(f"  batch {bs:>3} {b:<6} {tps:8.1f} texts/s  peak {rss:7.1f} MiB  (run {rep + 1}/{args.repeats})", file=sys.stderr)
        for b in backends:
            speeds = sorted(t for t, _ in runs[b])
            row[b] = {"texts_per_s": round(speeds[len(speeds) // 2], 1), "runs_texts_per_s": [round(t, 1) for t, _ in runs[b]],
                      "peak_rss_mib": round(max(r for _, r in runs[b]), 1)}
        if "detox" in outs:
            for b in backends:
                if b != "detox":
                    d = max(abs(x - y) for r1, r2 in zip(outs["detox"], outs[b]) for x, y in zip(r1, r2))
                    row[b]["max_abs_score_diff_vs_detox"] = d
                    row[b]["detox_speed_ratio"] = round(row["detox"]["texts_per_s"] / row[b]["texts_per_s"], 2)
        results.append(row)

    print(f"\nscoring benchmark: {n} texts (rtp-subset prompts + continuations), all-MiniLM-L6-v2 + 8-label head, {args.threads} threads, median of {args.repeats}")
    print(f"CPU: {cpu}")
    header = f"{'batch':>5} | " + " | ".join(f"{b:>22}" for b in backends) + " | ratios (detox / reference)"
    print(header)
    print("-" * len(header))
    for row in results:
        cells = [f"{row[b]['texts_per_s']:7.1f}/s {row[b]['peak_rss_mib']:6.0f} MiB" for b in backends]
        ratios = ", ".join(f"vs {b} {row[b]['detox_speed_ratio']:.2f}x (max diff {row[b]['max_abs_score_diff_vs_detox']:.1e})"
                           for b in backends if b != "detox" and "detox_speed_ratio" in row[b])
        print(f"{row['batch_size']:>5} | " + " | ".join(f"{c:>22}" for c in cells) + " | " + ratios)
    with open(os.path.join(OUT, "score.json"), "w") as f:
        json.dump({"texts": n, "threads": args.threads, "cpu": cpu, "repeats": args.repeats, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
