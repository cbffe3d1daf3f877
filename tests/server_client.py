#!/usr/bin/env python3
"""OpenAI's own Python client against an OpenAI-compatible server: `gemfilter serve` or
llama.cpp's `llama-server`, started with the same model and an API key. Every check holds for
both, so passing on both shows the compatibility.

    python3 tests/server_client.py BASE_URL API_KEY

BASE_URL is e.g. http://127.0.0.1:8080/v1. Needs `python3 -m pip install openai`. Prints one
line per check; exits 1 at the first failure.
"""

import json
import sys
import urllib.error
import urllib.request

try:
    import openai
except ImportError:
    sys.exit("the openai package is missing: python3 -m pip install openai")

BASE, KEY = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=BASE, api_key=KEY, max_retries=0, timeout=300)
QUESTION = "What is the capital of France? Answer in one word."


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + (f": {detail}" if detail else ""))
    if not ok:
        sys.exit(1)


def chat(**kw):
    args = {"model": MODEL, "messages": [{"role": "user", "content": QUESTION}],
            "temperature": 0, "max_tokens": 16}
    args.update(kw)
    return client.chat.completions.create(**args)


models = client.models.list().data
check("models.list names the model", len(models) >= 1 and bool(models[0].id), str(models))
MODEL = models[0].id

r = chat()
text = r.choices[0].message.content
check("chat answers", "Paris" in text, repr(text))
check("chat says why it stopped", r.choices[0].finish_reason in ("stop", "length"),
      r.choices[0].finish_reason)
check("chat usage", r.usage.prompt_tokens > 5 and 0 < r.usage.completion_tokens <= 16
      and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, str(r.usage))

pieces, finish = [], None
for c in chat(stream=True):
    if c.choices:
        pieces.append(c.choices[0].delta.content or "")
        finish = c.choices[0].finish_reason or finish
check("streamed chat equals the whole answer", "".join(pieces) == text,
      f"{''.join(pieces)!r} vs {text!r}")
check("streamed chat has more than one chunk and a finish reason",
      len([p for p in pieces if p]) > 1 and finish in ("stop", "length"), f"{pieces} {finish}")

r = chat(max_tokens=1)
check("max_tokens=1 stops at one token", r.usage.completion_tokens == 1
      and r.choices[0].finish_reason == "length", f"{r.usage} {r.choices[0].finish_reason}")

r = chat(stop=["Paris"])
check("a stop string ends the answer and is left out",
      "Paris" not in r.choices[0].message.content and r.choices[0].finish_reason == "stop",
      repr(r.choices[0].message.content))

CITY = {"type": "object", "properties": {"name": {"type": "string"},
                                        "population": {"type": "integer"}},
        "required": ["name", "population"]}
r = chat(messages=[{"role": "user",
                    "content": "Describe a city as JSON with its name and population."}],
         max_tokens=60, response_format={"type": "json_schema",
                                         "json_schema": {"name": "city", "schema": CITY}})
try:
    city = json.loads(r.choices[0].message.content)
except ValueError:
    city = None
check("response_format with a JSON schema: the answer parses and matches it",
      isinstance(city, dict) and isinstance(city.get("name"), str)
      and isinstance(city.get("population"), int), repr(r.choices[0].message.content))

r = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=8,
                              temperature=0)
check("text completion", isinstance(r.choices[0].text, str) and r.usage.completion_tokens > 0,
      repr(r.choices[0].text))
streamed = "".join(c.choices[0].text for c in client.completions.create(
    model=MODEL, prompt="The capital of France is", max_tokens=8, temperature=0, stream=True)
    if c.choices)
check("streamed text completion equals the whole one", streamed == r.choices[0].text,
      f"{streamed!r} vs {r.choices[0].text!r}")

try:
    openai.OpenAI(base_url=BASE, api_key="wrong-" + KEY, max_retries=0).models.list()
    check("a wrong API key is refused", False)
except openai.AuthenticationError as e:
    check("a wrong API key is refused (401)", e.status_code == 401)

try:
    chat(messages=[{"role": "user", "content": "word " * 5000}])
    check("a prompt longer than the context is refused", False)
except openai.BadRequestError as e:
    check("a prompt longer than the context is refused (400)", e.status_code == 400, str(e))

req = urllib.request.Request(BASE + "/chat/completions", data=b'{"messages": [',
                             headers={"Authorization": "Bearer " + KEY,
                                      "Content-Type": "application/json"})
try:
    urllib.request.urlopen(req, timeout=60)
    check("malformed JSON is refused", False)
except urllib.error.HTTPError as e:
    body = json.loads(e.read() or b"{}")
    check("malformed JSON is refused (400, an error object)",
          e.code == 400 and "message" in body.get("error", {}), f"{e.code} {body}")

r = chat()
check("still serving after the bad requests", r.choices[0].message.content == text)
print("all checks passed")
