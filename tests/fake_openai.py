"""A scripted OpenAI-compatible chat server on 127.0.0.1 for pipeline tests.

It answers with `answer_for(question)`, reports usage the way DeepSeek does (with cache hit/miss
fields) and keeps every request it received, so tests can check what was sent. A question that
contains "FAIL" gets HTTP 500, for the recorded-failure tests."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeOpenAI:
    def __init__(self, answer_for=lambda question: "I do not know", cache_hit_tokens: int = 0):
        self.answer_for = answer_for
        self.cache_hit_tokens = cache_hit_tokens
        self.requests: list[dict] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
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

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                prompt = "\n".join(m["content"] for m in body["messages"])
                question = prompt.rsplit("Question:", 1)[-1]
                if "FAIL" in question:
                    return self._send(500, {"error": {"message": "scripted failure"}})
                answer = fake.answer_for(question)
                prompt_tokens = len(prompt.split())
                usage = {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": len(answer.split()),
                    "total_tokens": prompt_tokens + len(answer.split()),
                    "prompt_cache_hit_tokens": min(fake.cache_hit_tokens, prompt_tokens),
                    "prompt_cache_miss_tokens": prompt_tokens - min(fake.cache_hit_tokens, prompt_tokens),
                }
                self._send(200, {
                    "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": answer}}],
                    "usage": usage,
                })

            def _send(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
