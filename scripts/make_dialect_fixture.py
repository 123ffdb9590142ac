# -*- coding: utf-8 -*-
"""Writes crates/detox-dialect/tests/fixtures/aae-expected.jsonl: texts with the tokens the
TwitterAAE authors' tokenizer gives and the dialect proportions an independent plain-Python
implementation of the model's inference gives. The Rust crate must match both.

Why this design: a fixture made from the Rust tokenizer's own tokens would only check the
inference arithmetic, not whether `detox dialect` sees the same words the model was
estimated on. So the tokens come from the authors' own `code/twokenize.py`
(slanglab/twitteraae, commit db4d6d1), loaded at run time from a path you give, never
copied into this repository; the inference (below) is written here from
shared/data/twitteraae-model/SOURCE.txt, independently of the Rust code, without numpy.
The Rust test then checks the tokenizer token by token and the proportions to 1e-6.

The authors' tokenizer is Python 2 code (HTMLParser, unicode), so run this with Python 2.7:

    git clone https://github.com/slanglab/twitteraae /tmp/twitteraae
    python2.7 scripts/make_dialect_fixture.py --twokenize /tmp/twitteraae/code/twokenize.py \
        --model ../shared/data/twitteraae-model \
        > crates/detox-dialect/tests/fixtures/aae-expected.jsonl

Each output line: {"text": str, "tokens": [str], "dialect": [aa, hispanic, asian, white]
or null}. Texts are raw tweets (HTML-escaped), tokenized with tokenizeRawTweetText.
"""
from __future__ import division, print_function, unicode_literals

import argparse
import imp
import io
import json
import os
import sys

# Tweets written for this fixture: AAE-heavy, standard English, Spanish-influenced, emoji,
# URLs, HTML escapes, very short, and texts the model must decline.
TEXTS = [
    "hello there",
    "af af af",
    "bruh he be trippin fr fr smh",
    "finna go to the store, you want sumn?",
    "she ain't even worried bout it lol",
    "I'm so tired of this weather, can't wait for summer!",
    "Just finished my morning run. Feeling great :)",
    "The meeting has been moved to 3:30 tomorrow afternoon.",
    "lmaooo why u play me like that 😂😂😂",
    "yall be cappin fr no cap",
    "on god this the hardest song out rn",
    "que pasa amigo, vamos a la playa mañana",
    "mi abuela makes the best tamales on christmas eve",
    "lol that's hella funny dude",
    "omg I literally can't even right now #mood",
    "@jay_23 nah bro we out tonight!!",
    "check out my new blog post http://t.co/abc123XYZ",
    "Watching the game w/ the fam &amp; eating wings &lt;3",
    "&#8220;@someone: ion even kno what u talkin bout&#8221;",
    "😂😂😂",
    "http://example.com/page",
    "#tbt #love",
    "zzzzqqq xxyyzz",
    "a",
    "!!!",
    "I went to the library to return some books about history.",
    "boutta slide thru later if u up",
    "gurl stop it ur too much 💀",
    "That's cool, I'll see you at the concert on Friday.",
    "he done already told you twice smh",
    "Wow... just wow.",
    "ma nigga said he pullin up",
    "ayyy lmao dat boi crazy",
    "I can't believe it's already December!!!",
    "tengo hambre lol vamos a comer",
    "U.S. stocks rose 2.5% on Monday, led by tech.",
    "Mr. Smith's class was great today :-)",
    "yo whatchu doin tonite",
    "ÉL ESTÁ AQUÍ İSTANBUL ΣΟΦΟΣ",
    "O.o   wait    what?!   ",
    "love u &lt;3 &lt;3 xoxo",
    "RT @user: this is so true",
    # One known word in five tokens: exactly 20%, kept; in six: declined.
    "zzqx qqzx xqzq wqzx hello",
    "zzqx qqzx xqzq wqzx qzqz hello",
]


def load_model(folder):
    """Vocabulary index and per-word topic probabilities, as SOURCE.txt describes: the word is
    the last tab field of model_vocab.txt; row i of model_count_table.txt holds its four
    expected counts N_wk; probabilities are (N_wk + 1) / N_k with N_k the column sums."""
    words = []
    with open(os.path.join(folder, "model_vocab.txt"), "rb") as f:
        for raw in f:
            words.append(raw.split(b"\t")[-1].strip().decode("utf-8"))
    counts = []
    with open(os.path.join(folder, "model_count_table.txt"), "rb") as f:
        for raw in f:
            counts.append([float(x) for x in raw.split()])
    if len(words) != len(counts):
        sys.exit("vocabulary and count table differ in length")
    totals = [sum(row[k] for row in counts) for k in range(4)]
    probs = [[(row[k] + 1.0) / totals[k] for k in range(4)] for row in counts]
    index = {}
    for i, w in enumerate(words):
        index[w] = i
    return index, probs


def infer(tokens, index, probs, alpha=1.0, passes=5):
    """SOURCE.txt: keep lower-cased in-vocabulary tokens; decline (None) with fewer than 1 or
    under 20% of the tokens known; else CVB0 for `passes` passes, the first being the start
    at each token's normalised word probabilities; return the normalised totals."""
    known = [index[t.lower()] for t in tokens if t.lower() in index]
    if len(known) < 1 or len(known) / len(tokens) < 0.2:
        return None
    lik = []
    for r in known:
        s = sum(probs[r])
        lik.append([p / s for p in probs[r]])
    q = [list(l) for l in lik]
    tot = [sum(qi[k] for qi in q) for k in range(4)]
    for _ in range(passes - 1):
        for i in range(len(q)):
            for k in range(4):
                tot[k] -= q[i][k]
            new = [lik[i][k] * (tot[k] + alpha) for k in range(4)]
            s = sum(new)
            q[i] = [x / s for x in new]
            for k in range(4):
                tot[k] += q[i][k]
    s = sum(tot)
    return [t / s for t in tot]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--twokenize", required=True,
                    help="path to code/twokenize.py of slanglab/twitteraae (not committed here)")
    ap.add_argument("--model", default="../shared/data/twitteraae-model")
    args = ap.parse_args()
    if sys.version_info[0] != 2:
        sys.exit("run with Python 2.7: the authors' twokenize.py is Python 2 code")
    twokenize = imp.load_source("twokenize_authors", args.twokenize)
    index, probs = load_model(args.model)
    out = io.open(sys.stdout.fileno(), "w", encoding="utf-8", closefd=False)
    for text in TEXTS:
        tokens = twokenize.tokenizeRawTweetText(text)
        p = infer(tokens, index, probs)
        line = json.dumps({"text": text, "tokens": tokens, "dialect": p}, ensure_ascii=False)
        out.write(line + "\n")
    out.flush()


if __name__ == "__main__":
    main()
