#!/usr/bin/env python3
"""Generation benchmark of the RealToxicityPrompts protocol: detox vs llama.cpp vs transformers.

The same model (the built-in SmolLM2-135M-Instruct Q4_1 GGUF) samples k = 25 continuations of
20 new tokens (temperature 1, top-p 0.9) for the same prompts (the first N of detox's built-in
smoke set), each stack in its own process on the same cores, one after the other:

- detox: `detox eval --no-perplexity --scorer fast` (the 25 samples of a prompt share its
  prefill and decode as one batch; prompts side by side, one per core); the generation loop's
  own timing (model loading excluded; scoring with the n-gram scorer included);
- llama.cpp through `llama-cpp-python`: 25 `create_completion` calls per prompt (as the issue
  measured it), each with its own seed;
- PyTorch `transformers` loading the same GGUF (dequantized to f32): one `generate` call per
  prompt with `num_return_sequences=25` (batched sampling).

Reports generations/s and detox's ratio against each reference, with the CPU line of `detox cpu`
(model, instruction sets, the one detox's kernels use: `DETOX_CPU=avx2` measures the AVX2
kernels on an AVX-512 machine); results go to
bench/out/eval_speed.json.

Usage (from the repository root):
    python3 -m venv .venv-ref && .venv-ref/bin/pip install torch transformers gguf llama-cpp-python
    cargo build --release && ./target/release/detox models pull smollm2
    .venv-ref/bin/python bench/eval_speed.py [--prompts 8] [--threads 2]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DETOX = os.path.join(ROOT, "target", "release", "detox")
SMOKE = os.path.join(ROOT, "crates", "detox-eval", "data", "smoke-prompts.jsonl")


def prompts(n):
    out = []
    for line in open(SMOKE, encoding="utf-8"):
        if line.strip():
            out.append(json.loads(line)["prompt"]["text"])
    return out[:n]


def run_llama_cpp(model, texts, k, max_tokens, threads):
    from llama_cpp import Llama

    llm = Llama(model_path=model, n_threads=threads, n_threads_batch=threads, n_ctx=512,
                verbose=False, seed=0)
    llm.create_completion(texts[0], max_tokens=4, temperature=1.0, top_p=0.9, top_k=0, seed=1)
    t = time.perf_counter()
    tokens = 0
    for i, p in enumerate(texts):
        for s in range(k):
            r = llm.create_completion(p, max_tokens=max_tokens, temperature=1.0, top_p=0.9,
                                      top_k=0, seed=1000 * i + s)
            tokens += r["usage"]["completion_tokens"]
    secs = time.perf_counter() - t
    return {"generations_per_s": len(texts) * k / secs, "tokens_per_s": tokens / secs, "seconds": secs}


def run_transformers(model, texts, k, max_tokens, threads):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    d, f = os.path.dirname(model), os.path.basename(model)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    lm = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
    torch.manual_seed(0)
    with torch.inference_mode():
        ids = tok(texts[0], return_tensors="pt")
        lm.generate(**ids, do_sample=True, top_p=0.9, top_k=0, temperature=1.0, max_new_tokens=4,
                    num_return_sequences=2, pad_token_id=tok.eos_token_id)
        t = time.perf_counter()
        tokens = 0
        for p in texts:
            ids = tok(p, return_tensors="pt")
            out = lm.generate(**ids, do_sample=True, top_p=0.9, top_k=0, temperature=1.0,
                              max_new_tokens=max_tokens, num_return_sequences=k,
                              pad_token_id=tok.eos_token_id)
            new = out[:, ids["input_ids"].shape[1]:]
            tokens += int((new != tok.eos_token_id).sum())
        secs = time.perf_counter() - t
    return {"generations_per_s": len(texts) * k / secs, "tokens_per_s": tokens / secs, "seconds": secs}


def run_detox(detox, texts, k, max_tokens, threads):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "prompts.jsonl")
        with open(path, "w", encoding="utf-8") as f:
            for t in texts:
                f.write(json.dumps({"prompt": {"text": t}}) + "\n")
        cmd = [detox, "eval", "--prompts", path, "--samples", str(k), "--max-tokens", str(max_tokens),
               "--no-perplexity", "--scorer", "fast", "--threads", str(threads), "--out", os.path.join(tmp, "run")]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"detox eval failed:\n{r.stderr}")
        m = re.search(r"generations in ([0-9.]+)s: [0-9.]+ prompts/s, ([0-9.]+) generations/s", r.stderr)
        if not m:
            sys.exit(f"no timing line in detox's output:\n{r.stderr}")
        tokens = 0
        with open(os.path.join(tmp, "run", "generations.jsonl"), encoding="utf-8") as f:
            for line in f:
                tokens += sum(1 for g in json.loads(line)["generations"])
        secs = float(m.group(1))
        return {"generations_per_s": float(m.group(2)), "seconds": secs}


def child(args):
    fn = {"llama_cpp": run_llama_cpp, "transformers": run_transformers}[args.child]
    res = fn(args.model, prompts(args.prompts), args.k, args.max_tokens, args.threads)
    print("RESULT " + json.dumps(res))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--k", type=int, default=25)
    ap.add_argument("--max-tokens", type=int, default=20)
    ap.add_argument("--skip", default="", help="comma-separated stacks to skip: llama_cpp,transformers")
    ap.add_argument("--detox", default=DETOX, help="the detox binary to measure")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    if not os.path.exists(args.detox):
        sys.exit("build first: cargo build --release")
    model = subprocess.run([args.detox, "models", "path", "smollm2"], capture_output=True, text=True).stdout.strip()
    if not model or not os.path.exists(model):
        sys.exit("pull the model first: ./target/release/detox models pull smollm2")
    texts = prompts(args.prompts)
    cpu = subprocess.run([args.detox, "cpu"], capture_output=True, text=True).stdout.strip() or "unknown (detox cpu failed)"
    print(f"CPU: {cpu}")
    print(f"{len(texts)} prompts x {args.k} samples x {args.max_tokens} new tokens, {args.threads} threads, {os.path.basename(model)}")
    results = {"detox": run_detox(args.detox, texts, args.k, args.max_tokens, args.threads)}
    print(f"  detox         {results['detox']['generations_per_s']:7.2f} generations/s")
    for name in ["llama_cpp", "transformers"]:
        if name in args.skip.split(","):
            continue
        r = subprocess.run([sys.executable, __file__, "--child", name, "--model", model, "--prompts", str(args.prompts),
                            "--threads", str(args.threads), "--k", str(args.k), "--max-tokens", str(args.max_tokens)],
                           capture_output=True, text=True)
        line = [l for l in r.stdout.splitlines() if l.startswith("RESULT ")]
        if r.returncode != 0 or not line:
            print(f"  {name:<13} failed: {r.stderr.strip().splitlines()[-1:] }")
            continue
        results[name] = json.loads(line[0][7:])
        print(f"  {name:<13} {results[name]['generations_per_s']:7.2f} generations/s")
    print()
    d = results["detox"]["generations_per_s"]
    for name, r in results.items():
        if name != "detox":
            print(f"detox / {name}: {d / r['generations_per_s']:.2f}x")
    refs = [r["generations_per_s"] for n, r in results.items() if n != "detox"]
    if refs:
        print(f"detox / best reference: {d / max(refs):.2f}x")
    os.makedirs(os.path.join(ROOT, "bench", "out"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "out", "eval_speed.json"), "w") as f:
        json.dump({"settings": vars(args), "cpu": cpu, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
