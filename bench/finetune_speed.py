"""Training speed against PyTorch, side by side on this machine: LoRA (rank 8 on every attention
and MLP projection, as `detox finetune --lora-rank 8` trains) on SmolLM2-135M in f32, blocks of
128 tokens, 4 blocks a forward pass, 2,048 tokens a step, AdamW; tokens per second over the
training steps only (loading and saving left out), detox's from its run.json.

The PyTorch side loads the Hugging Face folder detox saved for SmolLM2 (the same weights in
`transformers`' layout) and trains it with the same data blocks and settings, on the same
number of threads.

Usage: .venv-ref/bin/python bench/finetune_speed.py [--steps 4] [--threads 2]
"""

import argparse
import json
import math
import os
import subprocess
import tempfile
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


class Lora(torch.nn.Module):
    def __init__(self, base, r, alpha):
        super().__init__()
        self.base, self.scale = base, alpha / r
        out_f, in_f = base.weight.shape
        self.lora_A = torch.nn.Parameter(torch.empty(r, in_f))
        torch.nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.lora_B = torch.nn.Parameter(torch.zeros(out_f, r))

    def forward(self, x):
        return self.base(x) + (x @ self.lora_A.T @ self.lora_B.T) * self.scale


def cpu():
    name = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    avx512 = "avx512f" in open("/proc/cpuinfo").read()
    return f"{name}, {'with' if avx512 else 'without'} AVX-512"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--detox", default="target/release/detox")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        train = os.path.join(tmp, "train.jsonl")
        with open(train, "w") as f:
            for i in range(400):
                f.write(json.dumps({"text": f"Paragraph {i}: language models continue prompts, and some of what they write is toxic; "
                                            f"this text is here to be read {i % 7} times over by a training loop."}) + "\n")
        out = os.path.join(tmp, "detox")
        common = ["--block-size", "128", "--batch-tokens", "2048", "--micro-batch", "4", "--lr", "1e-3",
                  "--lora-rank", "8", "--lora-alpha", "16", "--threads", str(a.threads)]
        subprocess.run([a.detox, "--offline", "finetune", "--model", "smollm2", "--train", train, "--out", out,
                        "--max-steps", str(a.steps), *common], check=True, capture_output=True)
        run = json.load(open(os.path.join(out, "run.json")))
        detox_tps = run["train_tokens"] / run["train_seconds"]
        # PyTorch on the folder detox wrote (the merged LoRA of a few steps: the same shapes).
        tok = AutoTokenizer.from_pretrained(out)
        model = AutoModelForCausalLM.from_pretrained(out, torch_dtype=torch.float32)
        for p in model.parameters():
            p.requires_grad_(False)
        for name, mod in list(model.named_modules()):
            if name.split(".")[-1] in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
                parent, leaf = name.rsplit(".", 1)
                setattr(model.get_submodule(parent), leaf, Lora(mod, 8, 16.0))
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
        ids = []
        for line in open(train):
            ids += tok(json.loads(line)["text"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        blocks = [ids[i:i + 128] for i in range(0, len(ids) - 127, 128)]
        model.train()
        t0, tokens = time.perf_counter(), 0
        for s in range(a.steps):
            step = blocks[(s * 16) % (len(blocks) - 16):][:16]
            for m in range(4):
                x = torch.tensor(step[m * 4:(m + 1) * 4])
                loss = model(input_ids=x, labels=x).loss / 4
                loss.backward()
                tokens += x.shape[0] * (x.shape[1] - 1)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad()
        torch_tps = tokens / (time.perf_counter() - t0)
    print(f"CPU: {cpu()}, {a.threads} threads")
    print(f"LoRA rank 8, SmolLM2-135M f32, {a.steps} steps of 2,048 tokens")
    print(f"  detox     {detox_tps:8.1f} tokens/s")
    print(f"  PyTorch   {torch_tps:8.1f} tokens/s (torch {torch.__version__})")
    print(f"  ratio     {detox_tps / torch_tps:8.2f}x")


if __name__ == "__main__":
    main()
