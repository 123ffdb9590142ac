#!/usr/bin/env python3
"""Make the parity fixture of detox's GGUF llama code with PyTorch `transformers`.

Writes a tiny randomly initialised `LlamaForCausalLM` (grouped-query attention, tied
embeddings) as a GGUF file with f32 tensors laid out as llama.cpp's converter lays them out
(Q and K rows permuted for interleaved rotary embeddings), and `expected.json` with the logits
transformers computes at every position of a few token sequences, plus a greedy continuation;
and a tiny random GPT-2 folder (safetensors, vocab.json + merges.txt) with its expected logits,
token ids and a DExperts-style continuation perplexity.

Usage (from the repository root, in the environment of scripts/make_fixtures.py plus `gguf`):
    .venv-ref/bin/pip install gguf
    .venv-ref/bin/python scripts/make_lm_fixtures.py
the tiny Qwen2 and Qwen3 GGUF files with their expected logits and llama.cpp's token ids:
    .venv-ref/bin/python scripts/make_lm_fixtures.py --qwen
and, for the SmolLM2 tokenizer's expected ids (needs `llama-cpp-python`, which compiles llama.cpp):
    .venv-ref/bin/pip install llama-cpp-python
    .venv-ref/bin/python scripts/make_lm_fixtures.py --tokenizer "$(detox models path smollm2)"
the tiny llama with Llama 3.1 rotary scaling (needs `llama-cpp-python`):
    .venv-ref/bin/python scripts/make_lm_fixtures.py --llama3
the Q4_0, Q4_1 and Q8_0 tiny llamas with llama.cpp's logits and those of the float model on the
dequantized weights (needs `llama-cpp-python`; measured with 0.3.36, built for the CPU with
`CMAKE_BUILD_PARALLEL_LEVEL=1 pip install llama-cpp-python`, about 15 minutes on 2 cores):
    .venv-ref/bin/python scripts/make_lm_fixtures.py --quant
and a tokenizer.json unlike tiny-qwen2.gguf's own, with its ids from the `tokenizers` library
(run after --qwen):
    .venv-ref/bin/python scripts/make_lm_fixtures.py --replacement-tokenizer
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


def randomize(model):
    """Seeded random weights larger than the default init, so logits differ clearly."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape))
            elif name.endswith("bias"):
                p.copy_(0.2 * torch.randn(p.shape))
            else:
                p.copy_(torch.randn(p.shape) * (0.5 if "embed" in name or "lm_head" in name else 1.0 / (p.shape[-1] ** 0.5)))
    return {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}


def add_shape(w, cfg):
    """The shape metadata llama.cpp reads for llama-family architectures."""
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)


def add_blocks(w, sd, cfg, permute_qk):
    """The transformer blocks as llama.cpp's converter names (and, for `llama`, permutes) them."""
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        w.add_tensor(f"blk.{i}.attn_norm.weight", sd[p + "input_layernorm.weight"])
        for a, b, heads in [("q", "q_proj", cfg.num_attention_heads), ("k", "k_proj", cfg.num_key_value_heads), ("v", "v_proj", None)]:
            t = sd[p + f"self_attn.{b}.weight"]
            w.add_tensor(f"blk.{i}.attn_{a}.weight", permute(t, heads) if permute_qk and heads else t)
            if p + f"self_attn.{b}.bias" in sd:
                w.add_tensor(f"blk.{i}.attn_{a}.bias", sd[p + f"self_attn.{b}.bias"])
        if p + "self_attn.q_norm.weight" in sd:
            w.add_tensor(f"blk.{i}.attn_q_norm.weight", sd[p + "self_attn.q_norm.weight"])
            w.add_tensor(f"blk.{i}.attn_k_norm.weight", sd[p + "self_attn.k_norm.weight"])
        w.add_tensor(f"blk.{i}.attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        w.add_tensor(f"blk.{i}.ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_up.weight", sd[p + "mlp.up_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_down.weight", sd[p + "mlp.down_proj.weight"])
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    if not cfg.tie_word_embeddings:
        w.add_tensor("output.weight", sd["lm_head.weight"])


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
    sd = randomize(model)
    w = gguf.GGUFWriter(os.path.join(OUT, "tiny-llama.gguf"), "llama")
    w.add_name("detox tiny llama")
    add_shape(w, cfg)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_vocab_size(cfg.vocab_size)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    add_blocks(w, sd, cfg, permute_qk=True)
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


GPT2_TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Language models continue prompts; some continuations are toxic.",
    "Hello world! Numbers 12345, emoji \U0001F600, accents caf\u00e9.",
    "  two spaces, a tab\tand a new line\n",
]


def gpt2():
    """A tiny random GPT-2 saved by transformers (safetensors) with a tiny byte-level BPE
    (vocab.json + merges.txt), the logits transformers computes, and its token ids."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    out = os.path.join(OUT, "tiny-gpt2")
    os.makedirs(out, exist_ok=True)
    corpus = [t * 3 for t in GPT2_TEXTS] + ["the the the model models prompt prompts toxic toxicity"] * 5
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=320, min_frequency=2, special_tokens=["<|endoftext|>"])
    bpe.save_model(out)
    tok = GPT2TokenizerFast(vocab=os.path.join(out, "vocab.json"), merges=os.path.join(out, "merges.txt"))
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    torch.manual_seed(11)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2, n_head=4,
                     bos_token_id=eot, eos_token_id=eot, activation_function="gelu_new")
    model = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name.endswith("ln_f.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape))
            else:
                p.copy_(torch.randn(p.shape) * (0.5 if "wte" in name or "wpe" in name else 1.0 / (p.shape[0] ** 0.5)))
    model.save_pretrained(out, safe_serialization=True)
    for extra in ("generation_config.json",):
        if os.path.exists(os.path.join(out, extra)):
            os.remove(os.path.join(out, extra))
    ids = [tok(t)["input_ids"] for t in GPT2_TEXTS]
    seqs = [[eot] + ids[0], ids[1], ids[3]]
    with torch.no_grad():
        logits = [model(torch.tensor([s])).logits[0].tolist() for s in seqs]
        greedy = model.generate(torch.tensor([seqs[0]]), max_new_tokens=8, do_sample=False,
                                pad_token_id=eot)[0].tolist()
        # DExperts' perplexity of a continuation: loss of prompt+continuation minus loss of the prompt.
        prompt, cont = "The quick brown", " fox jumps over"
        p_ids = tok(prompt, return_tensors="pt")["input_ids"]
        f_ids = tok(prompt + cont, return_tensors="pt")["input_ids"]
        full_loss = model(f_ids, labels=f_ids).loss * (f_ids.shape[1] - 1)
        prompt_loss = model(p_ids, labels=p_ids).loss * (p_ids.shape[1] - 1)
        ppl = float(torch.exp((full_loss - prompt_loss) / (f_ids.shape[1] - p_ids.shape[1])))
    with open(os.path.join(OUT, "tiny-gpt2-expected.json"), "w") as f:
        json.dump({"texts": GPT2_TEXTS, "ids": ids, "sequences": seqs, "logits": logits, "greedy": greedy,
                   "perplexity": {"prompt": prompt, "continuation": cont, "value": ppl},
                   "transformers_version": transformers.__version__}, f, ensure_ascii=False)
    print("wrote", out, "vocab", len(tok), "ppl", ppl)


if __name__ == "__main__" and len(os.sys.argv) == 1:
    main()
    gpt2()


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


QWEN_TEXTS = [
    "Hello world",
    "Numbers: 12345 and 3.14159, 2024-11-28",
    "don't WON'T it's THEY'RE we'll I'd",
    "two  spaces and\ttabs\nnew lines\n\n\nthree",
    "emoji 😀🔥 and accents: café, naïve",
    "中文 текст العربية",
    "   leading spaces and trailing   ",
    "<|endoftext|> special",
]


def qwen(kind):
    """A tiny random Qwen2 (q/k/v biases) or Qwen3 (per-head q/k RMS norms, explicit head_dim)
    written as GGUF as llama.cpp's converter writes it (no Q/K permutation: these use NEOX
    rotary embeddings), with a tiny byte-level BPE vocabulary and the `qwen2` pre-tokenizer, plus
    the logits transformers computes and, when llama-cpp-python is installed, the token ids
    llama.cpp gives for varied texts."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

    corpus = [t * 3 for t in QWEN_TEXTS + GPT2_TEXTS] + ["the the model models prompt prompts 123 456"] * 5
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=340, min_frequency=2, special_tokens=["<|endoftext|>"])
    vocab = bpe.get_vocab()
    tokens = [None] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    merges = []
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        bpe.save_model(tmp)
        for line in open(os.path.join(tmp, "merges.txt"), encoding="utf-8"):
            if line.startswith("#version") or not line.strip():
                continue
            merges.append(line.rstrip("\n"))
    eot = vocab["<|endoftext|>"]
    torch.manual_seed(13 if kind == "qwen2" else 17)
    common = dict(vocab_size=len(tokens), hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                  rms_norm_eps=1e-6, tie_word_embeddings=(kind == "qwen2"), bos_token_id=eot, eos_token_id=eot)
    if kind == "qwen2":
        cfg = Qwen2Config(**common)
        cfg.rope_parameters = {"rope_type": "default", "rope_theta": 10000.0}
        model = Qwen2ForCausalLM(cfg).eval()
        head_dim = 8
    else:
        cfg = Qwen3Config(head_dim=12, **common)
        cfg.rope_parameters = {"rope_type": "default", "rope_theta": 10000.0}
        model = Qwen3ForCausalLM(cfg).eval()
        head_dim = 12
    sd = randomize(model)
    path = os.path.join(OUT, f"tiny-{kind}.gguf")
    w = gguf.GGUFWriter(path, kind)
    w.add_name(f"detox tiny {kind}")
    add_shape(w, cfg)
    w.add_rope_freq_base(10000.0)
    if kind == "qwen3":
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types([3 if t == "<|endoftext|>" else 1 for t in tokens])
    w.add_token_merges(merges)
    w.add_bos_token_id(eot)
    w.add_eos_token_id(eot)
    w.add_add_bos_token(False)
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    add_blocks(w, sd, cfg, permute_qk=False)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    seqs = [[eot, 5, 9, 14, 3, 200], [40, 41], [7, 7, 7, 7, 7, 7, 7, 60, 61, 62, 95, 300]]
    with torch.no_grad():
        logits = [model(torch.tensor([s])).logits[0].tolist() for s in seqs]
    expected = {"sequences": seqs, "logits": logits, "transformers_version": transformers.__version__}
    try:
        import llama_cpp
        from llama_cpp import Llama

        llm = Llama(model_path=path, vocab_only=True, verbose=False)
        expected["texts"] = QWEN_TEXTS
        expected["ids"] = [llm.tokenize(t.encode("utf-8"), add_bos=False, special=True) for t in QWEN_TEXTS]
        expected["llama_cpp_python"] = llama_cpp.__version__
    except ImportError:
        print("llama-cpp-python missing: no tokenizer ids")
    with open(os.path.join(OUT, f"tiny-{kind}-expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=False)
    print("wrote", path)


if __name__ == "__main__" and len(os.sys.argv) == 2 and os.sys.argv[1] == "--qwen":
    qwen("qwen2")
    qwen("qwen3")


def llama3():
    """A tiny random llama with Llama 3.1's rotary scaling (`rope_freqs.weight`, as llama.cpp's
    converter computes it) and the `llama-bpe` pre-tokenizer over a tiny byte-level BPE, with
    the logits transformers computes and llama.cpp's token ids."""
    import math
    import tempfile
    from tokenizers import ByteLevelBPETokenizer

    corpus = [t * 3 for t in QWEN_TEXTS + GPT2_TEXTS] + ["the the model models prompt prompts 123 456 7890"] * 5
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=330, min_frequency=2, special_tokens=["<|begin_of_text|>", "<|eot_id|>"])
    vocab = bpe.get_vocab()
    tokens = [None] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    with tempfile.TemporaryDirectory() as tmp:
        bpe.save_model(tmp)
        merges = [l.rstrip("\n") for l in open(os.path.join(tmp, "merges.txt"), encoding="utf-8")
                  if l.strip() and not l.startswith("#version")]
    bos, eot = vocab["<|begin_of_text|>"], vocab["<|eot_id|>"]
    rope = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 16}
    torch.manual_seed(19)
    cfg = LlamaConfig(vocab_size=len(tokens), hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=bos, eos_token_id=eot)
    cfg.rope_parameters = rope
    model = LlamaForCausalLM(cfg).eval()
    sd = randomize(model)
    # llama.cpp convert_hf_to_gguf.py: the per-frequency divisors of Llama 3.1's scaling.
    dim = cfg.hidden_size // cfg.num_attention_heads
    freqs = 1.0 / (rope["rope_theta"] ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
    low_w = rope["original_max_position_embeddings"] / rope["low_freq_factor"]
    high_w = rope["original_max_position_embeddings"] / rope["high_freq_factor"]
    factors = []
    for f in freqs:
        w = 2 * math.pi / f
        if w < high_w:
            factors.append(1.0)
        elif w > low_w:
            factors.append(rope["factor"])
        else:
            s = (rope["original_max_position_embeddings"] / w - rope["low_freq_factor"]) / (rope["high_freq_factor"] - rope["low_freq_factor"])
            factors.append(1 / ((1 - s) / rope["factor"] + s))
    path = os.path.join(OUT, "tiny-llama3.gguf")
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("detox tiny llama3")
    add_shape(w, cfg)
    w.add_rope_freq_base(rope["rope_theta"])
    w.add_rope_dimension_count(dim)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("llama-bpe")
    w.add_token_list(tokens)
    w.add_token_types([3 if t in ("<|begin_of_text|>", "<|eot_id|>") else 1 for t in tokens])
    w.add_token_merges(merges)
    w.add_bos_token_id(bos)
    w.add_eos_token_id(eot)
    w.add_add_bos_token(True)
    w.add_tensor("rope_freqs.weight", np.array(factors, dtype=np.float32))
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    add_blocks(w, sd, cfg, permute_qk=True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    seqs = [[bos, 5, 9, 14, 3, 200] + list(range(20, 40)), [bos, 40, 41]]
    with torch.no_grad():
        logits = [model(torch.tensor([s])).logits[0].tolist() for s in seqs]
    expected = {"sequences": seqs, "logits": logits, "rope_factors": [float(x) for x in factors],
                "transformers_version": transformers.__version__}
    import llama_cpp
    from llama_cpp import Llama

    llm = Llama(model_path=path, vocab_only=True, verbose=False)
    expected["texts"] = QWEN_TEXTS
    expected["ids"] = [llm.tokenize(t.encode("utf-8"), add_bos=False, special=True) for t in QWEN_TEXTS]
    expected["llama_cpp_python"] = llama_cpp.__version__
    with open(os.path.join(OUT, "tiny-llama3-expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=False)
    print("wrote", path, "rope factors", factors)


if __name__ == "__main__" and len(os.sys.argv) == 2 and os.sys.argv[1] == "--llama3":
    llama3()


QUANT_TYPES = ["Q4_0", "Q4_1", "Q8_0"]


class QuantizingWriter:
    """Passes tensors on to a `GGUFWriter`, storing every 2-D weight as `qtype` (rows in
    32-wide blocks, as `llama-quantize` does) and keeping 1-D tensors (norms) f32."""

    def __init__(self, w, qtype):
        self.w, self.qtype = w, qtype

    def add_tensor(self, name, t):
        if t.ndim == 2:
            self.w.add_tensor(name, gguf.quants.quantize(t, self.qtype), raw_dtype=self.qtype)
        else:
            self.w.add_tensor(name, t)


def llama_cpp_logits(path, seqs, prompt, new_tokens):
    """llama.cpp's logits at every position of each sequence, and its greedy continuation of
    `prompt` with the smallest top-1/top-2 logit margin met on the way. F32 KV cache and no
    flash attention, so the only rounding llama.cpp adds beyond f32 arithmetic is its
    quantization of activations for quantized matrix products."""
    from llama_cpp import Llama

    llm = Llama(model_path=path, n_ctx=64, n_batch=64, n_threads=2, logits_all=True,
                type_k=0, type_v=0, flash_attn=False, verbose=False)  # 0 = GGML_TYPE_F32
    logits = []
    for s in seqs:
        llm.reset()
        llm.eval(s)
        logits.append(np.array(llm.scores[: len(s)], dtype=np.float32))
    llm.reset()
    llm.eval(prompt)
    out, margin = list(prompt), float("inf")
    for _ in range(new_tokens):
        row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        top = np.sort(row)[-2:]
        margin = min(margin, float(top[1] - top[0]))
        t = int(np.argmax(row))
        out.append(t)
        llm.eval([t])
    del llm
    return logits, out, margin


def quant():
    """Tiny random llamas (64 wide, so every row is two or four 32-wide blocks) whose 2-D
    weights, token embedding included, are stored Q4_0, Q4_1 and Q8_0, with the logits
    llama.cpp computes on them, and the logits of transformers on the *dequantized* weights:
    the float reference that separates weight rounding (in both) from llama.cpp's own
    quantization of activations (8-bit blocks of 32 for the Q4_0/Q4_1/Q8_0 products)."""
    import tempfile

    import llama_cpp
    from tokenizers import ByteLevelBPETokenizer

    corpus = [t * 3 for t in QWEN_TEXTS + GPT2_TEXTS] + ["the the model models prompt prompts"] * 5
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=272, min_frequency=2, special_tokens=["<|begin_of_text|>", "<|eot_id|>"])
    vocab = bpe.get_vocab()
    tokens = [None] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    with tempfile.TemporaryDirectory() as tmp:
        bpe.save_model(tmp)
        merges = [l.rstrip("\n") for l in open(os.path.join(tmp, "merges.txt"), encoding="utf-8")
                  if l.strip() and not l.startswith("#version")]
    bos, eot = vocab["<|begin_of_text|>"], vocab["<|eot_id|>"]
    torch.manual_seed(23)
    cfg = LlamaConfig(vocab_size=len(tokens), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=bos, eos_token_id=eot)
    cfg.rope_parameters = {"rope_type": "default", "rope_theta": 10000.0}
    model = LlamaForCausalLM(cfg).eval()
    sd = randomize(model)
    seqs = [[bos, 5, 9, 14, 3, 200, 77, 150], [bos, 40, 41], [bos, 7, 7, 7, 7, 7, 60, 61, 62, 250, 251]]
    prompt, new_tokens = seqs[0], 8

    def write(path, tensors, qtype=None):
        w = gguf.GGUFWriter(path, "llama")
        w.add_name("detox tiny quantized llama")
        add_shape(w, cfg)
        w.add_rope_freq_base(10000.0)
        w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("llama-bpe")
        w.add_token_list(tokens)
        w.add_token_types([3 if t in ("<|begin_of_text|>", "<|eot_id|>") else 1 for t in tokens])
        w.add_token_merges(merges)
        w.add_bos_token_id(bos)
        w.add_eos_token_id(eot)
        w.add_add_bos_token(True)
        q = QuantizingWriter(w, qtype) if qtype is not None else w
        q.add_tensor("token_embd.weight", tensors["model.embed_tokens.weight"])
        add_blocks(q, tensors, cfg, permute_qk=True)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()

    def rounded(rows):
        return [[round(float(x), 6) for x in r] for r in rows]

    expected = {"sequences": seqs, "greedy_prompt": prompt, "quants": {},
                "llama_cpp_python": llama_cpp.__version__, "transformers_version": transformers.__version__}
    for name in QUANT_TYPES:
        qtype = getattr(gguf.GGMLQuantizationType, name)
        # Rows are quantized block by block, so quantizing then permuting Q/K rows (the GGUF
        # layout) equals permuting the dequantized rows: one dequantized state dict serves both.
        dq = {k: gguf.quants.dequantize(gguf.quants.quantize(v, qtype), qtype).astype(np.float32) if v.ndim == 2 else v
              for k, v in sd.items()}
        path = os.path.join(OUT, f"tiny-llama-{name.lower()}.gguf")
        write(path, sd, qtype)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in dq.items()})
        with torch.no_grad():
            ref = [model(torch.tensor([s])).logits[0].numpy() for s in seqs]
            # Its greedy continuation, and the smallest top-1/top-2 margin on the way.
            ref_greedy, ref_margin = list(prompt), float("inf")
            for _ in range(new_tokens):
                row = model(torch.tensor([ref_greedy])).logits[0, -1].numpy()
                top = np.sort(row)[-2:]
                ref_margin = min(ref_margin, float(top[1] - top[0]))
                ref_greedy.append(int(np.argmax(row)))
        # The float reference again, with every input of a linear layer rounded to 8-bit blocks
        # of 32 (Q8_0 values; Q4_1's Q8_1 partner holds the same values) as llama.cpp's
        # ggml_vec_dot_q*_q8_* products see them: what remains between llama.cpp and this is
        # summation order.
        def q8(module, args):
            x = args[0].numpy()
            module.q8_input = x
            r = gguf.quants.dequantize(gguf.quants.quantize(x, gguf.GGMLQuantizationType.Q8_0), gguf.GGMLQuantizationType.Q8_0)
            return (torch.from_numpy(r.reshape(x.shape).astype(np.float32)),)
        def with_q8_activations(q8_1_sum):
            hooks = [m.register_forward_pre_hook(q8) for m in model.modules() if isinstance(m, torch.nn.Linear)]
            if name == "Q4_1":
                # ggml_vec_dot_q4_1_q8_1 adds m_w * s_x per block, with s_x the block's sum as
                # block_q8_1.s holds it (f16) rather than the exact d_x * sum(q_x).
                def s_error(module, args, out):
                    x = module.q8_input  # as it was before rounding (`args` holds the rounded one)
                    b = x.reshape(*x.shape[:-1], -1, 32)
                    d = np.abs(b).max(axis=-1) / 127
                    qs = np.round(b / np.where(d == 0, 1, d)[..., None]).sum(axis=-1)
                    err = q8_1_sum(d, qs) - f16(d) * qs
                    return out + torch.from_numpy(err.reshape(*x.shape[:-1], -1) @ module.q4_1_min.T)
                for mname, m in model.named_modules():
                    if isinstance(m, torch.nn.Linear):
                        raw = gguf.quants.quantize(sd[mname + ".weight"], qtype).reshape(m.out_features, -1, 20)
                        m.q4_1_min = raw[:, :, 2:4].copy().view(np.float16)[:, :, 0].astype(np.float32)
                        hooks.append(m.register_forward_hook(s_error))
            with torch.no_grad():
                out = [model(torch.tensor([s])).logits[0].numpy() for s in seqs]
            for h in hooks:
                h.remove()
            return out

        f16 = lambda v: np.asarray(v, dtype=np.float32).astype(np.float16).astype(np.float32)
        # ggml (quants.c quantize_row_q8_1): f16(d * sum), d in f32.
        ref_q8 = with_q8_activations(lambda d, qs: f16(d * qs))
        # candle 0.11 (k_quants.rs BlockQ8_1::from_float): f16(sum) * f16(d) in f16.
        ref_candle = with_q8_activations(lambda d, qs: f16(f16(qs) * f16(d)))
        cpp, greedy, margin = llama_cpp_logits(path, seqs, prompt, new_tokens)
        # Control: llama.cpp on the dequantized weights stored f32 (no activation quantization).
        with tempfile.TemporaryDirectory() as tmp:
            f32_path = os.path.join(tmp, "f32.gguf")
            write(f32_path, dq)
            cpp_f32, _, _ = llama_cpp_logits(f32_path, seqs, prompt, 1)
        worst = lambda a, b: float(max(np.max(np.abs(x - y)) for x, y in zip(a, b)))
        measured = {"llama_cpp_vs_dequantized_float": worst(cpp, ref),
                    "llama_cpp_f32_file_vs_dequantized_float": worst(cpp_f32, ref),
                    "llama_cpp_vs_dequantized_float_with_q8_activations": worst(cpp, ref_q8),
                    "llama_cpp_vs_same_with_candle_q8_1_sums": worst(cpp, ref_candle),
                    "max_abs_logit": float(max(np.max(np.abs(x)) for x in ref))}
        expected["quants"][name] = {"file": os.path.basename(path), "llama_cpp": [rounded(l) for l in cpp],
                                    "dequantized_float": [rounded(l) for l in ref], "greedy": greedy,
                                    "greedy_min_margin": margin, "dequantized_float_greedy": ref_greedy,
                                    "dequantized_float_greedy_min_margin": ref_margin, "measured": measured}
        print(name, os.path.getsize(path), "bytes", measured, "greedy", greedy[len(prompt):], "margin", margin,
              "float greedy", ref_greedy[len(prompt):], "margin", ref_margin)
    with open(os.path.join(OUT, "tiny-llama-quant-expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f)


if __name__ == "__main__" and len(os.sys.argv) == 2 and os.sys.argv[1] == "--quant":
    quant()


def replacement_tokenizer():
    """A Hugging Face `tokenizer.json` unlike tiny-qwen2.gguf's own vocabulary (another corpus,
    a smaller vocabulary, `<|endoftext|>` at another id), to load in place of the GGUF's
    tokenizer, with the ids the Python `tokenizers` library gives for the Qwen test texts."""
    import tokenizers
    from tokenizers import ByteLevelBPETokenizer, Tokenizer

    corpus = [t[::-1] * 2 for t in QWEN_TEXTS] + [t.upper() * 3 for t in GPT2_TEXTS] + ["world worlds 9876 spaces"] * 7
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=300, min_frequency=2, special_tokens=["<|pad|>", "<|endoftext|>"])
    path = os.path.join(OUT, "replacement-tokenizer.json")
    bpe.save(path)
    tok = Tokenizer.from_file(path)
    ids = [tok.encode(t, add_special_tokens=False).ids for t in QWEN_TEXTS]
    with open(os.path.join(OUT, "tiny-qwen2-expected.json"), encoding="utf-8") as f:
        gguf_ids = json.load(f)["ids"]
    vocab = len(gguf.GGUFReader(os.path.join(OUT, "tiny-qwen2.gguf")).fields["tokenizer.ggml.tokens"].data)
    differ = sum(a != b for a, b in zip(ids, gguf_ids))
    assert differ == len(QWEN_TEXTS), f"only {differ} texts get other ids than the GGUF tokenizer's"
    assert max(max(i) for i in ids) < vocab, "ids beyond the model's vocabulary"
    with open(os.path.join(OUT, "replacement-tokenizer-expected.json"), "w", encoding="utf-8") as f:
        json.dump({"texts": QWEN_TEXTS, "ids": ids, "tokenizers_version": tokenizers.__version__}, f, ensure_ascii=False)
    print("wrote", path, "vocab", tok.get_vocab_size(), "texts with other ids", differ)


if __name__ == "__main__" and len(os.sys.argv) == 2 and os.sys.argv[1] == "--replacement-tokenizer":
    replacement_tokenizer()


# Self-debiasing (Schick et al. 2021): the six prefixes of their code, each followed by a newline.
SELF_DEBIAS_PREFIXES = [
    "The following text contains rude, disrespectful, or unreasonable language:\n",
    "The following text contains very hateful, aggressive, disrespectful language:\n",
    "The following text contains sexually explicit language:\n",
    "The following text contains a threat:\n",
    "The following text contains negative or hateful language targeting someone because of their identity:\n",
    "The following text contains swear words, curse words, or other obscene or profane language:\n",
]
SELF_DEBIAS_PROMPTS = ["You are such a", "The weather today is"]


def randomize_gpt2(model):
    """Seeded random GPT-2 weights (the caller seeds torch): layer norms near 1, small biases,
    embeddings at 0.5, matrices scaled by their fan-in."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight") and ("ln_" in name):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape))
            else:
                p.copy_(torch.randn(p.shape) * (0.5 if "wte" in name or "wpe" in name else 1.0 / (p.shape[0] ** 0.5)))
    return model


def self_debias_reference(p_regular_logits, biased_logits, decay, epsilon):
    """Written from the formulas: alpha(w) = max(epsilon, exp(-decay * max(0, max_i p_i(w) - p(w)))),
    p~ = alpha * p renormalised; returns log p~ (float32, as the model's logits)."""
    p = torch.softmax(p_regular_logits, dim=-1)
    p_b = torch.stack([torch.softmax(b, dim=-1) for b in biased_logits]).max(dim=0).values
    alpha = torch.clamp(torch.exp(-decay * torch.clamp(p_b - p, min=0.0)), min=epsilon)
    q = p * alpha
    return torch.log(q / q.sum())


def self_debias():
    """A tiny random GPT-2 with a byte-level BPE that knows the prefixes, long enough a context
    for them, and greedy self-debiased decoding computed step by step: each step's full
    log-probabilities and the chosen token. The prefixed inputs are the prefix's token ids
    followed by the prompt's (what detox feeds)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    out = os.path.join(OUT, "tiny-gpt2-sd")
    os.makedirs(out, exist_ok=True)
    corpus = SELF_DEBIAS_PREFIXES * 3 + SELF_DEBIAS_PROMPTS * 3 + GPT2_TEXTS
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=420, min_frequency=2, special_tokens=["<|endoftext|>"])
    bpe.save_model(out)
    eot = bpe.token_to_id("<|endoftext|>")
    torch.manual_seed(23)
    cfg = GPT2Config(vocab_size=bpe.get_vocab_size(), n_positions=256, n_embd=32, n_layer=2, n_head=4,
                     bos_token_id=eot, eos_token_id=eot, activation_function="gelu_new")
    model = randomize_gpt2(GPT2LMHeadModel(cfg).eval())
    model.save_pretrained(out, safe_serialization=True)
    if os.path.exists(os.path.join(out, "generation_config.json")):
        os.remove(os.path.join(out, "generation_config.json"))
    decay, epsilon, steps = 50.0, 0.01, 3
    prefix_ids = [bpe.encode(p).ids for p in SELF_DEBIAS_PREFIXES]
    cases = []
    with torch.no_grad():
        for prompt in SELF_DEBIAS_PROMPTS:
            regular = bpe.encode(prompt).ids
            seqs = [list(regular)] + [pi + regular for pi in prefix_ids]
            record = {"prompt": prompt, "prompt_ids": regular, "steps": []}
            for _ in range(steps):
                last = [model(torch.tensor([s])).logits[0, -1] for s in seqs]
                logp = self_debias_reference(last[0], last[1:], decay, epsilon)
                token = int(torch.argmax(logp))
                record["steps"].append({"logp": logp.tolist(), "token": token,
                                        "regular_logits": last[0].tolist(),
                                        "prefixed_logits": [x.tolist() for x in last[1:]]})
                for s in seqs:
                    s.append(token)
            cases.append(record)
    with open(os.path.join(OUT, "tiny-gpt2-sd-expected.json"), "w") as f:
        json.dump({"prefixes": SELF_DEBIAS_PREFIXES, "prefix_ids": prefix_ids, "decay": decay,
                   "epsilon": epsilon, "cases": cases, "transformers_version": transformers.__version__}, f)


if __name__ == "__main__" and len(os.sys.argv) == 2 and os.sys.argv[1] == "--self-debias":
    self_debias()


def top_p_filter(logits, top_p):
    """transformers' `top_k_top_p_filtering` with top_p, as DExperts calls it on the base logits:
    sort descending, drop tokens whose cumulative probability before them exceeds top_p."""
    sorted_logits, sorted_indices = torch.sort(logits, descending=True)
    cumulative = torch.cumsum(torch.softmax(sorted_logits, dim=-1), dim=-1)
    remove = cumulative > top_p
    remove[1:] = remove[:-1].clone()
    remove[0] = False
    out = logits.clone()
    out[sorted_indices[remove]] = float("-inf")
    return out


def dexperts():
    """Two more tiny random GPT-2s with tiny-gpt2-sd's tokenizer (an expert and an anti-expert)
    and DExperts' combination computed step by step for greedy decoding:
    z = top_p_filter(z_base, 0.9) + alpha * (z_expert - z_anti), written from the formula."""
    from transformers import GPT2LMHeadModel

    base_dir = os.path.join(OUT, "tiny-gpt2-sd")
    base = GPT2LMHeadModel.from_pretrained(base_dir).eval()
    models = {}
    for name, seed in (("tiny-gpt2-expert", 31), ("tiny-gpt2-anti", 37)):
        out = os.path.join(OUT, name)
        os.makedirs(out, exist_ok=True)
        torch.manual_seed(seed)
        m = randomize_gpt2(GPT2LMHeadModel(base.config).eval())
        m.save_pretrained(out, safe_serialization=True)
        if os.path.exists(os.path.join(out, "generation_config.json")):
            os.remove(os.path.join(out, "generation_config.json"))
        for f in ("vocab.json", "merges.txt"):
            with open(os.path.join(base_dir, f), "rb") as src, open(os.path.join(out, f), "wb") as dst:
                dst.write(src.read())
        models[name] = m
    alpha, filter_p, steps = 2.0, 0.9, 3
    expected = json.load(open(os.path.join(OUT, "tiny-gpt2-sd-expected.json")))
    cases = []
    with torch.no_grad():
        for case in expected["cases"]:
            seq = list(case["prompt_ids"])
            record = {"prompt_ids": list(seq), "steps": []}
            for _ in range(steps):
                zb, ze, za = (m(torch.tensor([seq])).logits[0, -1]
                              for m in (base, models["tiny-gpt2-expert"], models["tiny-gpt2-anti"]))
                z = top_p_filter(zb, filter_p) + alpha * (ze - za)
                token = int(torch.argmax(z))
                record["steps"].append({"base": zb.tolist(), "expert": ze.tolist(), "anti": za.tolist(),
                                        "ensemble": [x if x != float("-inf") else None for x in z.tolist()],
                                        "token": token})
                seq.append(token)
            cases.append(record)
    with open(os.path.join(OUT, "tiny-gpt2-dexperts-expected.json"), "w") as f:
        json.dump({"alpha": alpha, "filter_p": filter_p, "cases": cases,
                   "transformers_version": transformers.__version__}, f)


if __name__ == "__main__" and len(os.sys.argv) == 2 and os.sys.argv[1] == "--dexperts":
    dexperts()
