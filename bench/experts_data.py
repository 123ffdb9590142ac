"""Labelled training text for DExperts' expert and anti-expert (README's fine-tuning demo).

From the `../shared/data` sets a committed model may be trained on (`../shared/README.md`):
Davidson et al.'s tweets (hate or offensive -> toxicity 1, neither -> 0) and CAT-LARGE's
Wikipedia talk comments (human label 1 or Perspective TOXICITY >= 0.5 -> 1; label 0 with
Perspective below 0.1 -> 0; the rest left out). Writes JSONL {"text", "toxicity", "source"}.

Usage: python bench/experts_data.py [--data ../shared/data] [--out bench/out/experts.jsonl]
"""

import argparse
import csv
import json
import os
import random


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--out", default="bench/out/experts.jsonl")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rows = []
    with open(os.path.join(a.data, "davidson-hate-offensive", "labeled_data.csv"), newline="") as f:
        for r in csv.DictReader(f):
            rows.append({"text": r["tweet"], "toxicity": 0.0 if r["class"] == "2" else 1.0, "source": "davidson"})
    with open(os.path.join(a.data, "cat-large", "gn.csv"), newline="") as f:
        for r in csv.DictReader(f):
            api = float(r["api"]) if r["api"] else None
            if r["label"] == "1" or (api is not None and api >= 0.5):
                rows.append({"text": r["text"], "toxicity": 1.0, "source": "cat-large"})
            elif r["label"] == "0" and api is not None and api < 0.1:
                rows.append({"text": r["text"], "toxicity": 0.0, "source": "cat-large"})
    random.Random(a.seed).shuffle(rows)
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    tox = sum(r["toxicity"] for r in rows)
    print(f"{len(rows)} texts ({int(tox)} toxic, {len(rows) - int(tox)} non-toxic) -> {a.out}")


if __name__ == "__main__":
    main()
