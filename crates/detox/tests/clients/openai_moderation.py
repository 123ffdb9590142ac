"""The official `openai` client against `detox serve` (argv: base URL, API key).

Prints one JSON line: the fields the client parsed, so the Rust test can check them.
"""
import json
import sys

from openai import OpenAI

client = OpenAI(base_url=sys.argv[1] + "/v1", api_key=sys.argv[2], max_retries=0, timeout=60)
one = client.moderations.create(model="omni-moderation-latest", input="shut up, you idiot!")
many = client.moderations.create(
    input=[{"type": "text", "text": "hello world"}, {"type": "text", "text": "you worthless troll"}]
)
print(json.dumps({
    "id": one.id,
    "model": one.model,
    "n_one": len(one.results),
    "n_many": len(many.results),
    "flagged": [r.flagged for r in many.results],
    "harassment": [r.category_scores.harassment for r in many.results],
    "hate": one.results[0].category_scores.hate,
    "applied": one.results[0].category_applied_input_types.harassment,
    "categories_harassment": one.results[0].categories.harassment,
}))
