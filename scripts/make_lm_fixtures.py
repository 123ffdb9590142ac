#!/usr/bin/env python3
"""Make the parity fixture of detox's GGUF llama code with PyTorch `transformers`.

Writes a tiny randomly initialised `LlamaForCausalLM` (grouped-query attention, tied
embeddings) as a GGUF file with f32 tensors laid out as llama.cpp's converter lays them out
(Q and K rows permuted for interleaved rotary embeddings), and `expected.json` with the logits
transformers computes at every position of a few token sequences, plus a greedy continuation.

Usage (from the repository root, in the environment of scripts/make_fixtures.py plus `gguf`):
    .venv-ref/bin/pip install gguf
    .venv-ref/bin/python scripts/make_lm_fixtures.py
and, for the SmolLM2 tokenizer's expected ids (needs `llama-cpp-python`, which compiles llama.cpp):
    .venv-ref/bin/pip install llama-cpp-python
    .venv-ref/bin/python scripts/make_lm_fixtures.py --tokenizer "$(detox models path smollm2)"
"""
import json
import os

import gguf
import numpy as np
import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "crates", "detox-lm", "tests", "fixtures")


def permute(w, n_head):
    # llama.cpp convert_hf_to_gguf.py: HF's rotate-half layout -> GGML's interleaved pairs.
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(7)
    cfg = LlamaConfig(
        vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True,
        bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape))
            else:
                p.copy_(torch.randn(p.shape) * (0.5 if "embed" in name else 1.0 / (p.shape[-1] ** 0.5)))
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    w = gguf.GGUFWriter(os.path.join(OUT, "tiny-llama.gguf"), "llama")
    w.add_name("detox tiny llama")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_vocab_size(cfg.vocab_size)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        w.add_tensor(f"blk.{i}.attn_norm.weight", sd[p + "input_layernorm.weight"])
        w.add_tensor(f"blk.{i}.attn_q.weight", permute(sd[p + "self_attn.q_proj.weight"], cfg.num_attention_heads))
        w.add_tensor(f"blk.{i}.attn_k.weight", permute(sd[p + "self_attn.k_proj.weight"], cfg.num_key_value_heads))
        w.add_tensor(f"blk.{i}.attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        w.add_tensor(f"blk.{i}.attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        w.add_tensor(f"blk.{i}.ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_up.weight", sd[p + "mlp.up_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_down.weight", sd[p + "mlp.down_proj.weight"])
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    seqs = [[1, 5, 9, 14, 3], [1, 40, 41], [1, 7, 7, 7, 7, 7, 7, 7, 60, 61, 62, 95]]
    logits = []
    with torch.no_grad():
        for s in seqs:
            logits.append(model(torch.tensor([s])).logits[0].tolist())
        greedy = model.generate(torch.tensor([seqs[0]]), max_new_tokens=8, do_sample=False)[0].tolist()
    with open(os.path.join(OUT, "tiny-llama-expected.json"), "w") as f:
        json.dump({"sequences": seqs, "logits": logits, "greedy": greedy,
                   "transformers_version": transformers.__version__}, f)
    print("wrote", OUT, "max |logit|", max(abs(x) for l in logits for r in l for x in r))


if __name__ == "__main__" and len(os.sys.argv) == 1:
    main()


TOKENIZER_TEXTS = [
    "",
    "Hello world",
    " leading space",
    "two  spaces and\ttabs\nnew lines",
    "Numbers: 12345 and 3.14159, 2024-11-28",
    "<|im_start|>user\nWhat is this?<|im_end|>\n<|im_start|>assistant\n",
    "emoji 😀🔥 and accents: café, naïve, Ångström",
    "中文 текст العربية",
    "def f(x):\n    return x ** 2  # code",
    "SHOUTING!!! whispering... (parentheses) [brackets] {braces}",
    "don't won't it's they're",
    "https://example.org/path?q=1&r=two",
    "a" * 50,
    "The man at the back of the bus started shouting that",
]


def tokenizer_fixture(gguf_path):
    """Token ids that llama.cpp (through llama-cpp-python) gives for varied texts."""
    import llama_cpp
    from llama_cpp import Llama

    llm = Llama(model_path=gguf_path, vocab_only=True, verbose=False)
    ids = [llm.tokenize(t.encode("utf-8"), add_bos=False, special=True) for t in TOKENIZER_TEXTS]
    path = os.path.join(ROOT, "crates", "detox", "tests", "fixtures", "smollm2-tokens.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"texts": TOKENIZER_TEXTS, "ids": ids, "llama_cpp_python": llama_cpp.__version__}, f, ensure_ascii=False)
    print("wrote", path)


if __name__ == "__main__" and len(os.sys.argv) == 3 and os.sys.argv[1] == "--tokenizer":
    tokenizer_fixture(os.sys.argv[2])
