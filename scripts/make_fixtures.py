#!/usr/bin/env python3
"""Make the parity fixtures of detox's encoder classifiers with PyTorch `transformers`.

For each architecture detox implements (BERT, RoBERTa, XLM-RoBERTa, DistilBERT) this writes a
tiny randomly initialised sequence classifier as a Hugging Face folder (config.json, weights,
tokenizer.json), and `expected.json` with the token ids and logits that `transformers` computes
for the texts below. Two Detoxify-layout Lightning checkpoints (a BERT `original` and a RoBERTa
`unbiased`) are written the same way. The outputs are committed, so `cargo test` needs no Python.

Usage (from the repository root):
    python3 -m venv .venv-ref
    .venv-ref/bin/pip install torch transformers tokenizers safetensors
    .venv-ref/bin/python scripts/make_fixtures.py
    .venv-ref/bin/python scripts/make_fixtures.py --minilm "$(detox models path all-minilm-l6-v2)"

Everything is seeded: running it again gives the same files for the same library versions.
"""

import json
import os
import shutil
import sys

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertTokenizerFast,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    PreTrainedTokenizerFast,
    RobertaConfig,
    RobertaForSequenceClassification,
    RobertaTokenizerFast,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "crates", "detox-scorers", "tests", "fixtures")
MAX_POS = 64  # model maximum length in tokens, so the long text below is truncated

# A small training corpus for the tiny tokenizers, written for this project.
CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "you are a wonderful person and I like your work",
    "this comment is rude, stupid and offensive",
    "shut up, nobody wants to hear your idiotic opinion",
    "I disagree with you, but I respect your point of view",
    "thanks for the helpful answer, it fixed my problem",
    "what a terrible, awful, horrible day it has been",
    "go away you worthless troll",
    "the weather in the mountains is cold and clear",
    "numbers like 12345 and 3.14159 appear in text too",
    "Don't you think it's strange? I'm not sure...",
    "مرحبا بالعالم، هذا نص عربي قصير",
    "هذا تعليق مهين وغبي",
    "你好，世界。这是一个简短的中文句子。",
    "你是个笨蛋",
    "Bonjour tout le monde, je suis très content aujourd'hui",
    "Das ist ein ganz normaler deutscher Satz über Häuser",
    "emoji time 😀 🔥 👍 and more 🎉",
    "CAPITAL LETTERS ARE SHOUTING AT YOU",
    "email me at someone@example.com or visit https://example.org/page",
] * 20

TEXTS = [
    "",
    "hello world",
    "You are a wonderful person.",
    "shut up, you idiot!",
    "I disagree with you, but I respect your view.",
    "Go away you worthless troll 🔥🔥",
    "😀",
    "👍🏽 great job 🎉",
    "مرحبا بالعالم",
    "هذا تعليق مهين وغبي",
    "你好，世界",
    "你是个笨蛋！",
    "Bonjour, ça va très bien?",
    "Das Häuschen am See",
    "   leading and trailing spaces   ",
    "tabs\tand\nnewlines\r\nin text",
    "CAPITAL LETTERS ARE SHOUTING",
    "numbers 12345 and 3.14159",
    "mixed: hello مرحبا 你好 😀 end",
    "a",
    "unknownwordsxyzzy qqqqq zzzzz",
    "email someone@example.com or https://example.org/page?x=1",
    " ".join(["this sentence keeps going and going"] * 20),
    "word " * 200,
]


def seed_all(seed):
    torch.manual_seed(seed)


def spread_init(model, seed):
    """Re-initialise with larger weights so logits are O(1) and differences are visible."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name or name.endswith("_layer_norm.weight"):
                if name.endswith("weight"):
                    p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
                else:
                    p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p.shape[-1] if p.dim() > 1 else 1
                std = 1.0 / (fan_in ** 0.5) if p.dim() > 1 and "embeddings" not in name else 0.5
                p.copy_(std * torch.randn(p.shape, generator=g))


def train_wordpiece(dirname):
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=400, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    )
    tok.train_from_iterator(CORPUS, trainer)
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    os.makedirs(dirname, exist_ok=True)
    path = os.path.join(dirname, "vocab.txt")
    with open(path, "w", encoding="utf-8") as f:
        for token, _ in vocab:
            f.write(token + "\n")
    return path


def bert_tokenizer(vocab_path):
    return BertTokenizerFast(vocab=vocab_path, do_lower_case=True, model_max_length=MAX_POS)


def roberta_tokenizer(tmpdir):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=500,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    os.makedirs(tmpdir, exist_ok=True)
    tok.model.save(tmpdir)
    return RobertaTokenizerFast(
        vocab=os.path.join(tmpdir, "vocab.json"),
        merges=os.path.join(tmpdir, "merges.txt"),
        model_max_length=MAX_POS,
    )


def xlmr_tokenizer():
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Replace(" {2,}", " ")]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=500,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        unk_token="<unk>",
    )
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        cls_token="<s>",
        sep_token="</s>",
        model_max_length=MAX_POS,
    )


def expected(model, tokenizer, max_length):
    model.eval()
    ids = []
    truncated = []
    for t in TEXTS:
        full = tokenizer(t, truncation=False)["input_ids"]
        cut = tokenizer(t, truncation=True, max_length=max_length)["input_ids"]
        ids.append(cut)
        truncated.append(len(full) > len(cut))
    with torch.no_grad():
        enc = tokenizer(TEXTS, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        enc.pop("token_type_ids", None) if isinstance(model, DistilBertForSequenceClassification) else None
        batched = model(**enc).logits.tolist()
        single = []
        for t in TEXTS:
            e = tokenizer(t, truncation=True, max_length=max_length, return_tensors="pt")
            if isinstance(model, DistilBertForSequenceClassification):
                e.pop("token_type_ids", None)
            single.append(model(**e).logits[0].tolist())
    return {
        "max_length": max_length,
        "texts": TEXTS,
        "input_ids": ids,
        "truncated": truncated,
        "logits": single,
        "logits_batched": batched,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
    }


def write_expected(dirname, data, extra=None):
    if extra:
        data.update(extra)
    with open(os.path.join(dirname, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=1)
        f.write("\n")
    spread = max(abs(v) for row in data["logits"] for v in row)
    print(f"{os.path.basename(dirname)}: {len(data['texts'])} texts, max |logit| {spread:.2f}")


def clean(dirname):
    if os.path.exists(dirname):
        shutil.rmtree(dirname)
    os.makedirs(dirname)


def save_model(model, dirname, safetensors=True):
    if safetensors:
        model.save_pretrained(dirname)
    else:
        model.config.save_pretrained(dirname)
        torch.save(model.state_dict(), os.path.join(dirname, "pytorch_model.bin"))


def minilm_embeddings(model_dir):
    """Mean-pooled all-MiniLM-L6-v2 embeddings of a few texts, for the real-weights test."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    texts = TEXTS[:22]
    rows = []
    with torch.no_grad():
        for t in texts:
            enc = tok(t, truncation=True, max_length=512, return_tensors="pt")
            h = model(**enc).last_hidden_state[0]
            rows.append(h.mean(0).tolist())
    path = os.path.join(ROOT, "crates", "detox", "tests", "fixtures", "minilm-embeddings.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"texts": texts, "embeddings": rows, "transformers_version": transformers.__version__}, f, ensure_ascii=False)
        f.write("\n")
    print("minilm-embeddings:", len(texts), "texts")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--minilm":
        minilm_embeddings(sys.argv[2])
        return
    os.makedirs(OUT, exist_ok=True)
    tmp = os.path.join(OUT, ".tmp")
    clean(tmp)
    vocab = train_wordpiece(os.path.join(tmp, "wordpiece"))

    # BERT: multi-label (sigmoid), with pooler, safetensors weights.
    d = os.path.join(OUT, "bert")
    clean(d)
    tok = bert_tokenizer(vocab)
    seed_all(1)
    cfg = BertConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=37, max_position_embeddings=MAX_POS, type_vocab_size=2,
        hidden_act="gelu", num_labels=3, problem_type="multi_label_classification",
        id2label={0: "toxic", 1: "insult", 2: "threat"}, label2id={"toxic": 0, "insult": 1, "threat": 2},
    )
    bert = BertForSequenceClassification(cfg)
    spread_init(bert, 11)
    save_model(bert, d)
    tok.save_pretrained(d)
    write_expected(d, expected(bert, tok, MAX_POS))

    # The same BERT with only vocab.txt (no tokenizer.json): detox builds the WordPiece tokenizer.
    d2 = os.path.join(OUT, "bert-vocab-only")
    clean(d2)
    save_model(bert, d2, safetensors=False)
    shutil.copy(vocab, os.path.join(d2, "vocab.txt"))
    with open(os.path.join(d2, "tokenizer_config.json"), "w") as f:
        json.dump({"do_lower_case": True, "model_max_length": MAX_POS, "tokenizer_class": "BertTokenizer"}, f)
    write_expected(d2, expected(bert, tok, MAX_POS))

    # RoBERTa: single-label (softmax), positions offset by padding_idx, byte-level BPE.
    d = os.path.join(OUT, "roberta")
    clean(d)
    tok = roberta_tokenizer(os.path.join(tmp, "bpe"))
    seed_all(2)
    cfg = RobertaConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=37, max_position_embeddings=MAX_POS + 2, type_vocab_size=1,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, hidden_act="gelu", num_labels=2,
        id2label={0: "neutral", 1: "toxic"}, label2id={"neutral": 0, "toxic": 1},
    )
    roberta = RobertaForSequenceClassification(cfg)
    spread_init(roberta, 12)
    save_model(roberta, d)
    tok.save_pretrained(d)
    write_expected(d, expected(roberta, tok, MAX_POS))

    # XLM-RoBERTa: multi-label, tanh-approximate GELU, unigram tokenizer.
    d = os.path.join(OUT, "xlm-roberta")
    clean(d)
    tok = xlmr_tokenizer()
    seed_all(3)
    cfg = XLMRobertaConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=37, max_position_embeddings=MAX_POS + 2, type_vocab_size=1,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, hidden_act="gelu_new", num_labels=4,
        problem_type="multi_label_classification",
        id2label={0: "toxicity", 1: "insult", 2: "obscene", 3: "threat"},
        label2id={"toxicity": 0, "insult": 1, "obscene": 2, "threat": 3},
    )
    xlmr = XLMRobertaForSequenceClassification(cfg)
    spread_init(xlmr, 13)
    save_model(xlmr, d)
    tok.save_pretrained(d)
    write_expected(d, expected(xlmr, tok, MAX_POS))

    # DistilBERT: no token types, pre_classifier + ReLU head, pytorch_model.bin weights.
    d = os.path.join(OUT, "distilbert")
    clean(d)
    tok = bert_tokenizer(vocab)
    seed_all(4)
    cfg = DistilBertConfig(
        vocab_size=len(tok), dim=32, n_layers=2, n_heads=4, hidden_dim=37,
        max_position_embeddings=MAX_POS, activation="gelu", num_labels=2,
        id2label={0: "non-toxic", 1: "toxic"}, label2id={"non-toxic": 0, "toxic": 1},
    )
    distil = DistilBertForSequenceClassification(cfg)
    spread_init(distil, 14)
    save_model(distil, d, safetensors=False)
    tok.save_pretrained(d)
    write_expected(d, expected(distil, tok, MAX_POS))

    # Detoxify `original` layout: a Lightning checkpoint with `state_dict` and `config`.
    d = os.path.join(OUT, "detoxify-original")
    clean(d)
    classes = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]
    tok = bert_tokenizer(vocab)
    seed_all(5)
    cfg = BertConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=37, max_position_embeddings=MAX_POS, type_vocab_size=2, num_labels=len(classes),
    )
    m = BertForSequenceClassification(cfg)
    spread_init(m, 15)
    ckpt = {
        "epoch": 2,
        "global_step": 1000,
        "pytorch-lightning_version": "1.0.3",
        "state_dict": m.state_dict(),
        "config": {
            "name": "Jigsaw_BERT",
            "n_gpu": 1,
            "arch": {
                "type": "BERT",
                "args": {
                    "num_classes": len(classes),
                    "model_type": "tiny-bert",
                    "model_name": "BertForSequenceClassification",
                    "tokenizer_name": "BertTokenizer",
                },
            },
            "dataset": {"type": "JigsawDataOriginal", "args": {"classes": classes}},
        },
    }
    torch.save(ckpt, os.path.join(d, "original-tiny.ckpt"))
    base = BertConfig(**{k: v for k, v in cfg.to_dict().items() if k not in ("id2label", "label2id")})
    base.save_pretrained(d)
    tok.save_pretrained(d)
    data = expected(m, tok, MAX_POS)
    data["labels"] = ["toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack"]
    data["scores"] = torch.sigmoid(torch.tensor(data["logits"])).tolist()
    write_expected(d, data)

    # Detoxify `unbiased` layout: RoBERTa with 16 classes.
    d = os.path.join(OUT, "detoxify-unbiased")
    clean(d)
    classes = [
        "toxicity", "severe_toxicity", "obscene", "identity_attack", "insult", "threat",
        "sexual_explicit", "male", "female", "homosexual_gay_or_lesbian", "christian",
        "jewish", "muslim", "black", "white", "psychiatric_or_mental_illness",
    ]
    tok = roberta_tokenizer(os.path.join(tmp, "bpe2"))
    seed_all(6)
    cfg = RobertaConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=37, max_position_embeddings=MAX_POS + 2, type_vocab_size=1,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, num_labels=len(classes),
    )
    m = RobertaForSequenceClassification(cfg)
    spread_init(m, 16)
    ckpt = {
        "epoch": 1,
        "state_dict": m.state_dict(),
        "config": {
            "arch": {
                "type": "roberta",
                "args": {
                    "num_classes": len(classes),
                    "model_type": "tiny-roberta",
                    "model_name": "RobertaForSequenceClassification",
                    "tokenizer_name": "RobertaTokenizer",
                },
            },
            "dataset": {"type": "JigsawDataBias", "args": {"classes": classes}},
        },
    }
    torch.save(ckpt, os.path.join(d, "unbiased-tiny.ckpt"))
    base = RobertaConfig(**{k: v for k, v in cfg.to_dict().items() if k not in ("id2label", "label2id")})
    base.save_pretrained(d)
    tok.save_pretrained(d)
    data = expected(m, tok, MAX_POS)
    data["labels"] = classes
    data["scores"] = torch.sigmoid(torch.tensor(data["logits"])).tolist()
    write_expected(d, data)

    shutil.rmtree(tmp)
    print("fixtures written to", OUT, file=sys.stderr)


if __name__ == "__main__":
    main()
