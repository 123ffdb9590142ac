#!/usr/bin/env python3
"""Reference scorers for `bench/score.py`: PyTorch `transformers` or ONNX Runtime, end to end.

Reads JSONL texts, tokenizes with the model folder's tokenizer.json (the fast tokenizer), sorts
by length (as detox does, so neither side pays for padding the other avoids), runs the model in
batches and writes one JSONL line of scores per text, in input order. Prints one JSON line of
timings on stdout: texts/s covers tokenization + model + activation, not model loading.
"""
import argparse
import json
import os
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", choices=["torch", "onnx"], required=True)
    ap.add_argument("--model", required=True, help="Hugging Face classifier folder (model.onnx beside it for onnx)")
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import numpy as np
    from transformers import AutoConfig, AutoTokenizer

    texts = [json.loads(l)["text"] for l in open(args.input, encoding="utf-8") if l.strip()]
    cfg = AutoConfig.from_pretrained(args.model)
    labels = [cfg.id2label[i] for i in range(cfg.num_labels)]
    tok = AutoTokenizer.from_pretrained(args.model)
    max_len = min(tok.model_max_length, cfg.max_position_embeddings)

    if args.backend == "torch":
        import torch
        from transformers import AutoModelForSequenceClassification

        torch.set_num_threads(args.threads)
        model = AutoModelForSequenceClassification.from_pretrained(args.model).eval()

        def run(enc):
            with torch.inference_mode():
                return model(**{k: torch.from_numpy(v) for k, v in enc.items()}).logits.numpy()
    else:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(os.path.join(args.model, "model.onnx"), so, providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]

        def run(enc):
            return sess.run(["logits"], {k: v for k, v in enc.items() if k in names})[0]

    # Warm up once, outside the timing (both sides load lazily).
    run(dict(tok(["warm up"], return_tensors="np", padding=True)))
    t0 = time.perf_counter()
    enc_all = tok(texts, truncation=True, max_length=max_len)
    ids_all = enc_all["input_ids"]
    has_tt = "token_type_ids" in enc_all
    pad = tok.pad_token_id or 0
    order = sorted(range(len(texts)), key=lambda i: -len(ids_all[i]))
    out = [None] * len(texts)
    for s in range(0, len(order), args.batch_size):
        idx = order[s : s + args.batch_size]
        width = max(len(ids_all[i]) for i in idx)
        ids = np.full((len(idx), width), pad, dtype=np.int64)
        mask = np.zeros((len(idx), width), dtype=np.int64)
        for j, i in enumerate(idx):
            n = len(ids_all[i])
            ids[j, :n] = ids_all[i]
            mask[j, :n] = 1
        enc = {"input_ids": ids, "attention_mask": mask}
        if has_tt:
            enc["token_type_ids"] = np.zeros_like(ids)
        logits = run(enc)
        scores = 1.0 / (1.0 + np.exp(-logits))
        for j, i in enumerate(idx):
            out[i] = scores[j]
    secs = time.perf_counter() - t0
    with open(args.output, "w", encoding="utf-8") as f:
        for row in out:
            f.write(json.dumps({"scores": {l: float(v) for l, v in zip(labels, row)}}) + "\n")
    print(json.dumps({"texts": len(texts), "seconds": secs, "texts_per_s": len(texts) / secs}))


if __name__ == "__main__":
    sys.exit(main())
