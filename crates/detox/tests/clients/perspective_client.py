"""A Perspective client making the request Perspective's documentation shows
(argv: base URL, API key). Standard library only. Prints the parsed response as one JSON line.
"""
import json
import sys
import urllib.request

url = sys.argv[1] + "/v1alpha1/comments:analyze?key=" + sys.argv[2]
analyze_request = {
    "comment": {"text": "friendly greetings from python"},
    "requestedAttributes": {"TOXICITY": {}},
}
req = urllib.request.Request(
    url,
    data=json.dumps(analyze_request).encode("utf-8"),
    headers={"Content-Type": "application/json"},
    method="POST",
)
with urllib.request.urlopen(req, timeout=60) as resp:
    body = json.loads(resp.read().decode("utf-8"))
print(json.dumps({
    "toxicity": body["attributeScores"]["TOXICITY"]["summaryScore"]["value"],
    "type": body["attributeScores"]["TOXICITY"]["summaryScore"]["type"],
    "languages": body["languages"],
}))
