#!/usr/bin/env python3
"""Load for an OpenAI-compatible server (`gemfilter serve` or llama.cpp's `llama-server`):
N clients at once, each asking questions about its own document of about T tokens, streamed.
Reports first-token latency, request latency and throughput, and whether each answer found the
fact hidden in its document.

    scripts/serve-load.py --url http://127.0.0.1:8080 --clients 4 --tokens 8000 --questions 2

Each client's document is data/haystack.txt (repeated as needed), rotated so that no two
clients share a prefix, with one sentence naming a number only that client's document holds;
its questions ask for that number (the first one cold, the others follow-ups about the same
document). Documents are cut to the token count with the server's own /tokenize. Python's
standard library only. With --json one JSON record goes to stdout.
"""

import argparse
import json
import random
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

QUESTIONS = [
    "What is the secret number of the archive? Answer with the number only.",
    "Which number opens the archive? Reply with just the number.",
    "Repeat the archive's secret number.",
]


def post(url, body, key, timeout):
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = "Bearer " + key
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    return urllib.request.urlopen(req, timeout=timeout)


def tokens(base, text, key):
    with post(base + "/tokenize", {"content": text}, key, 300) as r:
        return len(json.load(r)["tokens"])


def wait_ready(base, limit=600):
    """llama-server answers 503 while it loads the model: wait for /health."""
    t0 = time.monotonic()
    while True:
        try:
            with urllib.request.urlopen(base + "/health", timeout=10) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() - t0 > limit:
            sys.exit(f"{base} is not ready after {limit} s")
        time.sleep(0.5)


def document(base, key, n_tokens, client, secret):
    """About n_tokens tokens of the haystack, rotated by client, with the secret in the middle."""
    text = (Path(__file__).resolve().parent.parent / "data/haystack.txt").read_text()
    sentences = text.replace("\n", " ").split(". ")
    shift = (client * 997) % len(sentences)
    sentences = sentences[shift:] + sentences[:shift]
    while len(sentences) * 20 < n_tokens * 2:
        sentences += sentences
    fact = f"The secret number of the archive is {secret}"

    def build(k):
        body = sentences[:k]
        body.insert(k // 2, fact)
        return ". ".join(body) + "."

    k = max(2, n_tokens // 25)
    for _ in range(4):  # scale to the measured count
        n = tokens(base, build(k), key)
        k = max(2, min(len(sentences), int(k * n_tokens / max(n, 1))))
    return build(k)


def ask(args, doc, question):
    """One streamed chat request: (first-token s, total s, completion tokens, text, extras)."""
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": doc},
                                                      {"type": "text", "text": question}]}],
            "max_tokens": args.max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    if args.model:
        body["model"] = args.model
    t0 = time.monotonic()
    first, text, usage, extra = None, [], {}, {}
    with post(args.url + "/v1/chat/completions", body, args.api_key, args.timeout) as r:
        for raw in r:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            c = json.loads(line[6:])
            if "error" in c:
                raise RuntimeError(c["error"].get("message"))
            for ch in c.get("choices") or []:
                piece = (ch.get("delta") or {}).get("content") or ""
                if piece and first is None:
                    first = time.monotonic() - t0
                text.append(piece)
            usage = c.get("usage") or usage
            for k in ("gem", "timings"):
                if c.get(k):
                    extra[k] = c[k]
    total = time.monotonic() - t0
    return first if first is not None else total, total, usage.get("completion_tokens", 0), \
        "".join(text), usage, extra


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8080", help="the server, without /v1")
    p.add_argument("--clients", type=int, default=1)
    p.add_argument("--tokens", type=int, default=8000, help="document length in tokens")
    p.add_argument("--questions", type=int, default=2, help="questions per client, in turn")
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--api-key", default="")
    p.add_argument("--model", default="")
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true", help="one JSON record on stdout")
    args = p.parse_args()
    args.url = args.url.rstrip("/").removesuffix("/v1")
    wait_ready(args.url)
    rng = random.Random(args.seed)
    secrets = [str(rng.randint(10000, 99999)) for _ in range(args.clients)]
    docs = [document(args.url, args.api_key, args.tokens, i, secrets[i])
            for i in range(args.clients)]
    results, errors = [], []
    lock = threading.Lock()
    start = threading.Barrier(args.clients)

    def client(i):
        start.wait()
        for q in range(args.questions):
            try:
                first, total, n, text, usage, extra = ask(args, docs[i], QUESTIONS[q % 3])
            except (urllib.error.URLError, OSError, RuntimeError, ValueError) as e:
                with lock:
                    errors.append(f"client {i} question {q}: {e}")
                return
            with lock:
                results.append({"client": i, "question": q, "first_token_s": first,
                                "total_s": total, "completion_tokens": n,
                                "prompt_tokens": usage.get("prompt_tokens"),
                                "right": secrets[i] in text, "answer": text,
                                "cached": (extra.get("gem") or {}).get("document_cached"),
                                "kept_tokens": (extra.get("gem") or {}).get("selected_tokens")})

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0

    def summary(rows):
        if not rows:
            return {}
        ft = [r["first_token_s"] for r in rows]
        return {"requests": len(rows), "first_token_s_mean": statistics.mean(ft),
                "first_token_s_max": max(ft),
                "total_s_mean": statistics.mean(r["total_s"] for r in rows),
                "right": sum(r["right"] for r in rows)}

    out = {"url": args.url, "clients": args.clients, "document_tokens": args.tokens,
           "questions": args.questions, "max_tokens": args.max_tokens, "wall_s": wall,
           "requests_per_s": len(results) / wall,
           "completion_tokens_per_s": sum(r["completion_tokens"] for r in results) / wall,
           "prompt_tokens_per_s": sum(r["prompt_tokens"] or 0 for r in results) / wall,
           "first_questions": summary([r for r in results if r["question"] == 0]),
           "follow_ups": summary([r for r in results if r["question"] > 0]),
           "errors": errors, "requests": results}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{args.url}: {args.clients} clients x {args.questions} questions, "
              f"~{args.tokens}-token documents, {wall:.1f} s")
        for name in ("first_questions", "follow_ups"):
            s = out[name]
            if s:
                print(f"  {name.replace('_', ' ')}: {s['requests']} requests, first token "
                      f"{s['first_token_s_mean']:.2f} s mean / {s['first_token_s_max']:.2f} s max, "
                      f"request {s['total_s_mean']:.2f} s mean, right {s['right']}/{s['requests']}")
        print(f"  throughput: {out['requests_per_s']:.3f} requests/s, "
              f"{out['completion_tokens_per_s']:.2f} generated tokens/s, "
              f"{out['prompt_tokens_per_s']:.0f} prompt tokens/s")
        for e in errors:
            print("  error:", e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
