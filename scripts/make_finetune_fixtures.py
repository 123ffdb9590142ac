"""Reference outputs for detox-finetune's parity tests (crates/detox-finetune/tests/parity.rs).

Three AdamW steps on the tiny random GPT-2 (crates/detox-lm/tests/fixtures/tiny-gpt2) and the
tiny random llama (the model tiny-llama.gguf was written from, rebuilt here with the same seed
and checked against its committed logits), each with full fine-tuning and with LoRA, in
PyTorch: causal-LM loss as `model(ids, labels=ids).loss` computes it, `torch.optim.AdamW` with
Hugging Face Trainer's parameter groups (no weight decay on biases and norm weights),
`torch.nn.utils.clip_grad_norm_`, and `get_cosine_schedule_with_warmup` stepped after each
optimizer step as Trainer steps it. LoRA as PEFT's `lora.Linear` computes it
(`W x + (alpha / r) * B A x`, B = 0 at the start; A's start is written to the fixture so both
sides begin alike; GPT-2's Conv1D layers take the transposed update, PEFT's fan_in_fan_out).

Writes, per case, `<case>.json` (settings, batches, the loss and learning rate of each step) and
`<case>-after.safetensors` (every parameter after the three steps, LoRA merged), plus
`<case>-lora-init.safetensors` for LoRA cases.

Usage (from the repository root, in the environment of scripts/make_lm_fixtures.py):
    .venv-ref/bin/python scripts/make_finetune_fixtures.py
"""

import json
import math
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, get_cosine_schedule_with_warmup

sys.path.insert(0, os.path.dirname(__file__))
from make_lm_fixtures import randomize  # noqa: E402  (the tiny llama's weights)

LM = "crates/detox-lm/tests/fixtures"
OUT = "crates/detox-finetune/tests/fixtures"

SETTINGS = {
    "lr": 0.01,
    "betas": [0.9, 0.999],
    # Larger than AdamW's 1e-8: a gradient that is zero in exact arithmetic (GPT-2's key biases:
    # softmax ignores a constant added to every score) is float noise on both sides, and a tiny
    # eps turns noise into full-size steps of opposite signs. 1e-4 keeps those steps negligible.
    "eps": 1e-4,
    "weight_decay": 0.1,
    "max_grad_norm": 0.5,
    "warmup_steps": 1,
    "total_steps": 3,
    "lora_rank": 2,
    "lora_alpha": 4.0,
}


def tiny_llama():
    torch.manual_seed(7)
    cfg = LlamaConfig(
        vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True,
        bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )
    model = LlamaForCausalLM(cfg)
    randomize(model)
    with open(os.path.join(LM, "tiny-llama-expected.json")) as f:
        expected = json.load(f)
    with torch.no_grad():
        got = model(torch.tensor([expected["sequences"][0]])).logits[0]
    diff = (got - torch.tensor(expected["logits"][0])).abs().max().item()
    assert diff < 1e-5, f"the rebuilt tiny llama differs from tiny-llama.gguf's: {diff}"
    return model


def tiny_gpt2():
    return GPT2LMHeadModel.from_pretrained(os.path.join(LM, "tiny-gpt2"))


def no_decay(name):
    # transformers Trainer.get_decay_parameter_names: biases and LayerNorm-type weights.
    return name.endswith("bias") or "norm" in name or ".ln_" in name or name.startswith("ln_") or ".ln_f." in name


def lora_targets(kind):
    if kind == "gpt2":
        return ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"]
    return ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
            "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


class Lora(torch.nn.Module):
    """PEFT's lora.Linear forward on a frozen base layer (nn.Linear or GPT-2's Conv1D)."""

    def __init__(self, base, a, conv1d, scale):
        super().__init__()
        self.base, self.conv1d, self.scale = base, conv1d, scale
        out_features = base.weight.shape[1] if conv1d else base.weight.shape[0]
        self.lora_A = torch.nn.Parameter(a.clone())
        self.lora_B = torch.nn.Parameter(torch.zeros(out_features, a.shape[0]))

    def forward(self, x):
        return self.base(x) + (x @ self.lora_A.T @ self.lora_B.T) * self.scale

    def merged(self):
        delta = (self.lora_B @ self.lora_A) * self.scale
        return self.base.weight + (delta.T if self.conv1d else delta)


def run(kind, lora):
    case = f"{kind}-{'lora' if lora else 'full'}"
    model = tiny_gpt2() if kind == "gpt2" else tiny_llama()
    model.train()
    for m in model.modules():  # no dropout in the reference (detox trains without it)
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    cfg = model.config
    g = torch.Generator().manual_seed(99)
    # Token ids from 3 up: the llama's pad id (0) gets no gradient through `nn.Embedding(padding_idx=0)`
    # in transformers; detox never pads (blocks are packed), so it treats no id specially.
    batches = [torch.randint(3, cfg.vocab_size, (2, 12), generator=g) for _ in range(SETTINGS["total_steps"])]
    loras = {}
    if lora:
        for p in model.parameters():
            p.requires_grad_(False)
        r, alpha = SETTINGS["lora_rank"], SETTINGS["lora_alpha"]
        init = {}
        for name, module in list(model.named_modules()):
            if any(name.endswith(t) for t in lora_targets(kind)):
                conv1d = kind == "gpt2"
                in_features = module.weight.shape[0] if conv1d else module.weight.shape[1]
                a = torch.empty(r, in_features)
                torch.nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=g)  # PEFT's init of A
                wrapped = Lora(module, a, conv1d, alpha / r)
                parent, leaf = name.rsplit(".", 1)
                setattr(model.get_submodule(parent), leaf, wrapped)
                loras[name] = wrapped
                init[f"{name}.lora_A"] = a.contiguous()
        save_file(init, os.path.join(OUT, f"{case}-lora-init.safetensors"))
        params = [(f"{n}.lora_{x}", getattr(m, f"lora_{x}")) for n, m in loras.items() for x in "AB"]
    else:
        params = [(n, p) for n, p in model.named_parameters()]
    decay = [p for n, p in params if not no_decay(n) and not lora]
    plain = [p for n, p in params if no_decay(n) or lora]
    groups = [{"params": decay, "weight_decay": SETTINGS["weight_decay"]}, {"params": plain, "weight_decay": 0.0}]
    if lora:  # PEFT's LoRA matrices take the decay (they are neither biases nor norms)
        groups = [{"params": [p for _, p in params], "weight_decay": SETTINGS["weight_decay"]}]
    opt = torch.optim.AdamW(groups, lr=SETTINGS["lr"], betas=tuple(SETTINGS["betas"]), eps=SETTINGS["eps"])
    sched = get_cosine_schedule_with_warmup(opt, SETTINGS["warmup_steps"], SETTINGS["total_steps"])
    steps = []
    for ids in batches:
        lr = opt.param_groups[0]["lr"]
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_([p for _, p in params], SETTINGS["max_grad_norm"])
        opt.step()
        sched.step()
        opt.zero_grad()
        steps.append({"loss": loss.item(), "lr": lr, "grad_norm": norm.item()})
    after = {}
    with torch.no_grad():
        for n, p in model.named_parameters():
            if ".lora_" in n:
                continue
            after[n.replace(".base.", ".")] = p.detach().clone().contiguous()
        for name, m in loras.items():
            after[f"{name}.weight"] = m.merged().detach().clone().contiguous()
    save_file(after, os.path.join(OUT, f"{case}-after.safetensors"))
    with open(os.path.join(OUT, f"{case}.json"), "w") as f:
        json.dump({"settings": SETTINGS, "lora": lora, "batches": [b.tolist() for b in batches], "steps": steps,
                   "torch_version": torch.__version__}, f, indent=1)
    print(case, [round(s["loss"], 5) for s in steps], [round(s["grad_norm"], 4) for s in steps])


def main():
    os.makedirs(OUT, exist_ok=True)
    for kind in ["gpt2", "llama"]:
        for lora in [False, True]:
            run(kind, lora)


if __name__ == "__main__":
    main()
