"""Checks that PyTorch `transformers` loads a folder `detox finetune` wrote with the logits detox
computes for it (issue: the saved model is a Hugging Face folder).

Trains the tiny random GPT-2 (crates/detox-lm/tests/fixtures/tiny-gpt2) for a few full
fine-tuning steps, and SmolLM2-135M (when `detox models pull smollm2` has been run) for a few
LoRA steps, with the release `detox`; loads each output folder with `AutoModelForCausalLM` and
`AutoTokenizer` (so the saved tokenizer must load too); compares the logits at every position of
a text tokenized by it with detox's (`cargo run --release -p detox-lm --example logits`).

Measured 2026-12-03: tiny GPT-2 4.3e-6, SmolLM2-135M with LoRA 8.4e-5 (logits of magnitude 20).

Usage (from the repository root): .venv-ref/bin/python scripts/check_finetune_export.py
"""

import json
import os
import subprocess
import sys
import tempfile

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

DETOX = os.environ.get("DETOX", "target/release/detox")
TEXT = "The quick brown fox jumps over the lazy dog. Language models continue prompts, café 12345."


def run(*args):
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def check(name, model, train, out, extra):
    run(DETOX, "--offline", "finetune", "--model", model, "--train", train, "--out", out,
        "--block-size", "32", "--batch-tokens", "64", "--micro-batch", "2", "--max-steps", "2",
        "--lr", "1e-3", *extra)
    tok = AutoTokenizer.from_pretrained(out)
    hf = AutoModelForCausalLM.from_pretrained(out, torch_dtype=torch.float32).eval()
    ids = tok(TEXT, add_special_tokens=False)["input_ids"]
    ids = [i for i in ids if i < hf.config.vocab_size][:24]
    with torch.no_grad():
        want = hf(torch.tensor([ids])).logits[0]
    got = torch.tensor(json.loads(run("cargo", "run", "-q", "--release", "-p", "detox-lm", "--example", "logits", "--", out, *map(str, ids))))
    diff = (got - want).abs().max().item()
    print(f"{name}: {len(ids)} tokens, max |logit difference| {diff:.2e} (transformers {hf.__class__.__name__})")
    assert diff < 1e-4, f"{name}: logits differ by {diff}"


def main():
    with tempfile.TemporaryDirectory() as tmp:
        train = os.path.join(tmp, "train.jsonl")
        with open(train, "w") as f:
            for i in range(60):
                f.write(json.dumps({"text": f"{TEXT} Sentence number {i} of the training text."}) + "\n")
        check("tiny GPT-2, full fine-tuning", "crates/detox-lm/tests/fixtures/tiny-gpt2", train,
              os.path.join(tmp, "gpt2"), [])
        smol = subprocess.run([DETOX, "--offline", "models", "path", "smollm2"], capture_output=True, text=True)
        if smol.returncode == 0:
            check("SmolLM2-135M, LoRA rank 4", smol.stdout.strip(), train, os.path.join(tmp, "smollm2"),
                  ["--lora-rank", "4"])
        else:
            print("SmolLM2 is not pulled (detox models pull smollm2): its check was skipped", file=sys.stderr)


if __name__ == "__main__":
    main()
