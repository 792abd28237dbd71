"""One client for every OpenAI-compatible endpoint (DeepSeek, OpenAI, vLLM, the local llama.cpp
server): answers, usage and latency all come through the `openai` SDK on the same path."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

from pipelines.errors import UserError
from pipelines.models.usage import Prices, Usage, cost_usd

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Completion:
    answer: str
    usage: Usage
    cost_usd: float
    latency_s: float  # wall time of the call, retries included
    finish_reason: str = ""


class ChatModel:
    def __init__(self, name: str, provider: str, model_id: str, context_window: int, max_output_tokens: int,
                 prices: dict, base_url: str | None = None, api_key_env: str | None = None,
                 params: dict | None = None, tokens_per_cl100k: float = 1.0, max_retries: int = 2,
                 timeout_s: float = 600.0, local_server: dict | None = None):
        self.name = name
        self.provider = provider
        self.model_id = model_id
        self.context_window = context_window
        self.max_output_tokens = max_output_tokens
        self.prices = Prices(**prices)
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.params = dict(params or {})
        self.tokens_per_cl100k = tokens_per_cl100k
        self.max_retries = max_retries
        self.timeout_s = timeout_s
        self.local_server = local_server
        self._client = None

    @property
    def prompt_window(self) -> int:
        """Model tokens the prompt may use: the window minus the reserve for the answer."""
        return self.context_window - self.max_output_tokens

    def check(self) -> None:
        """Fail before any work if the model cannot be called (no key, no address)."""
        if self.api_key_env and not os.environ.get(self.api_key_env):
            raise UserError(f"model {self.name}: environment variable {self.api_key_env} is not set (export your API key, or pick another model=...)")
        if not self.base_url and not self.local_server:
            raise UserError(f"model {self.name}: model.base_url is not set")

    def client(self):
        if self._client is None:
            from openai import OpenAI

            base_url = self.base_url
            if self.local_server:
                from pipelines.models import local_server

                base_url = local_server.ensure(**self.local_server)
            key = os.environ.get(self.api_key_env, "") if self.api_key_env else "local"
            self._client = OpenAI(base_url=base_url, api_key=key, max_retries=self.max_retries, timeout=self.timeout_s)
        return self._client

    def complete(self, messages: list[dict]) -> Completion:
        client = self.client()
        start = time.perf_counter()
        response = client.chat.completions.create(
            model=self.model_id, messages=messages, max_tokens=self.max_output_tokens, **self.params
        )
        latency = time.perf_counter() - start
        usage = Usage.from_response(response.usage)
        choice = response.choices[0]
        return Completion(
            answer=(choice.message.content or "").strip(),
            usage=usage,
            cost_usd=cost_usd(usage, self.prices),
            latency_s=latency,
            finish_reason=choice.finish_reason or "",
        )
