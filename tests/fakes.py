"""A scripted OpenAI-compatible chat server on 127.0.0.1, for tests and benchmarks (never for results;
it lives under tests/ so it does not ship with the package).

It answers with `answer_for(question)`, streams when asked (a chunk per word, `chunk_delay_s` apart;
usage in the last chunk, as `stream_options.include_usage` requests), can wait `latency_s` per call, and keeps every request body.
Usage is reported the way DeepSeek does, with cache hit/miss fields; `usage_for` can replace it.
With `prices` (USD per 1M: input_cache_miss, input_cache_hit, output) the server keeps its own bill,
`billed_usd`, from the usage it returned: the reference the framework's costs are checked against.
`fail_status` answers every request with that HTTP status (e.g. 401, a wrong key). `recorded` (bytes)
replays one recorded response body, as is, to every request (tests/fixtures/responses).

Faults are scripted by words in the question, one per attempt, so retries can be watched:
    RATE -> 429 with Retry-After: 0 on the first attempt     FAIL -> 500 on every attempt
    FLAKY -> 500 on the first attempt                        SLOW -> first attempt stalls past the timeout
    BADJSON -> a body that is not JSON                       CUT -> the stream stops mid-answer
    NOCHOICE -> `choices: []`, streamed or not (usage still sent)
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # Clients drop idle keep-alive connections; that is not a fault of the script.
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


class FakeOpenAI:
    def __init__(self, answer_for=lambda question: "I do not know", cache_hit_tokens: int = 0,
                 latency_s: float = 0.0, stall_s: float = 3.0, usage_for=None, reasoning_for=None,
                 prices: dict | None = None, fail_status: int | None = None, prompt_answer_for=None,
                 recorded: bytes | None = None, chunk_delay_s: float = 0.0):
        self.answer_for = answer_for
        self.chunk_delay_s = chunk_delay_s  # pause before each streamed chunk, so partial answers can be watched
        self.prompt_answer_for = prompt_answer_for
        self.served_model = None  # the model the responses say answered (default: the one asked for)  # answers from the whole prompt, when the question is not enough
        self.cache_hit_tokens = cache_hit_tokens
        self.latency_s = latency_s
        self.stall_s = stall_s
        self.usage_for = usage_for
        self.reasoning_for = reasoning_for
        self.prices = prices
        self.fail_status = fail_status
        self.recorded = recorded
        self.billed_usd = 0.0
        self.requests: list[dict] = []
        self.headers: list[dict] = []  # per request, lower-cased names
        self.attempts: Counter = Counter()  # per question text
        self.in_flight = 0
        self.max_in_flight = 0
        self.busy: list[tuple[float, float]] = []  # (start, end) of each request, server side
        self._lock = threading.Lock()
        self.server = _Server(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def usage(self, prompt: str, answer: str) -> dict:
        if self.usage_for:
            return self.usage_for(prompt, answer)
        prompt_tokens = len(prompt.split())
        hit = min(self.cache_hit_tokens, prompt_tokens)
        return {"prompt_tokens": prompt_tokens, "completion_tokens": len(answer.split()),
                "total_tokens": prompt_tokens + len(answer.split()),
                "prompt_cache_hit_tokens": hit, "prompt_cache_miss_tokens": prompt_tokens - hit}

    def bill(self, usage: dict) -> None:
        if not self.prices or not usage:
            return
        hit = usage.get("prompt_cache_hit_tokens") or 0
        miss = (usage.get("prompt_tokens") or 0) - hit
        usd = (miss * self.prices["input_cache_miss"] + hit * self.prices["input_cache_hit"]
               + (usage.get("completion_tokens") or 0) * self.prices["output"]) / 1e6
        with self._lock:
            self.billed_usd += usd

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                self._json(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = "\n".join(m["content"] for m in body["messages"])
                question = prompt.rsplit("Question:", 1)[-1]
                with fake._lock:
                    fake.requests.append(body)
                    fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                    fake.attempts[question] += 1
                    attempt = fake.attempts[question]
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                start = time.time()
                try:
                    time.sleep(fake.latency_s)
                    self._respond(body, prompt, question, attempt)
                finally:
                    with fake._lock:
                        fake.in_flight -= 1
                        fake.busy.append((start, time.time()))

            def _respond(self, body, prompt, question, attempt):
                if fake.recorded is not None:
                    return self._raw(200, fake.recorded, "application/json")
                if fake.fail_status:
                    return self._json(fake.fail_status, {"error": {"message": "scripted status", "type": "error"}})
                if "FAIL" in question or ("FLAKY" in question and attempt == 1):
                    return self._json(500, {"error": {"message": "scripted failure", "type": "server_error"}})
                if "RATE" in question and attempt == 1:
                    return self._json(429, {"error": {"message": "slow down"}}, {"Retry-After": "0"})
                if "SLOW" in question and attempt == 1:
                    time.sleep(fake.stall_s)
                answer = fake.prompt_answer_for(prompt) if fake.prompt_answer_for else fake.answer_for(question)
                reasoning = fake.reasoning_for(question) if fake.reasoning_for else None
                usage = fake.usage(prompt, answer)
                fake.bill(usage)  # generated, so billed: whatever reaches the client
                if "BADJSON" in question:
                    return self._raw(200, b'{"id": "x", "choices": [', "application/json")
                if body.get("stream"):
                    return self._stream(body, answer, reasoning, usage, cut="CUT" in question,
                                        empty="NOCHOICE" in question, error="STREAMERROR" in question)
                if "NOCHOICE" in question:
                    return self._json(200, {"id": "chatcmpl-fake", "object": "chat.completion", "created": 0,
                                            "model": fake.served_model or body["model"], "choices": [], "usage": usage})
                message = {"role": "assistant", "content": answer}
                if reasoning is not None:
                    message["reasoning_content"] = reasoning
                self._json(200, {"id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": fake.served_model or body["model"],
                                 "choices": [{"index": 0, "finish_reason": "stop", "message": message}], "usage": usage})

            def _stream(self, body, answer, reasoning, usage, cut, empty=False, error=False):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": fake.served_model or body["model"]}
                deltas = ([{"reasoning_content": reasoning}] if reasoning else []) + [{"content": w + " "} for w in answer.split()]
                if empty:
                    deltas = []
                for i, delta in enumerate(deltas):
                    time.sleep(fake.chunk_delay_s)
                    self._chunk({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
                    if error and i == len(deltas) // 2:  # an error event, as providers send when overloaded
                        self._chunk({"error": {"message": "overloaded, try again", "type": "server_error"}})
                        self._write_chunk(b"")
                        return
                    if cut and i == len(deltas) // 2:
                        self.wfile.write(b"5\r\ndata:")  # half an event, then the connection drops
                        self.wfile.flush()
                        self.close_connection = True
                        return
                if not empty:
                    self._chunk({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                if (body.get("stream_options") or {}).get("include_usage"):
                    self._chunk({**base, "choices": [], "usage": usage})
                self._write_chunk(b"data: [DONE]\n\n")
                self._write_chunk(b"")

            def _chunk(self, payload):
                self._write_chunk(f"data: {json.dumps(payload)}\n\n".encode())

            def _write_chunk(self, data: bytes):
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def _json(self, status, payload, headers=None):
                self._raw(status, json.dumps(payload).encode(), "application/json", headers)

            def _raw(self, status, data, content_type, headers=None):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        return Handler


def prepared_questions(texts: list[str], model) -> list:
    """Ready-to-send items for `runner.answer_all` without a corpus: a one-line document and the question."""
    from pipelines.datasets import Question
    from pipelines.models import cache
    from pipelines.prompts import Prompt
    from pipelines.record import QuestionRecord
    from pipelines.runner import Prepared

    out = []
    for i, text in enumerate(texts):
        messages = [{"role": "user", "content": f"Documents: the sky is blue.\n\nQuestion: {text}"}]
        record = QuestionRecord(f"q{i}", "rag", model.name, text, "blue")
        key = cache.key(model.endpoint, model.request(messages))
        out.append(Prepared(Question(f"q{i}", text, ("blue",)), record, Prompt(messages, 5, 0, "ok"), key))
    return out
