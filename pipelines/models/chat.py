"""One client for every OpenAI-compatible endpoint (DeepSeek, OpenAI, Anthropic's compatible
endpoint, vLLM, the local llama.cpp server): answers, usage, latency and time to first token all
come through the `openai` SDK on the same path. Providers differ only in their YAML."""

from __future__ import annotations

import contextvars
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, replace

from pipelines import limits
from pipelines.errors import UserError
from pipelines.models import body
from pipelines.models.usage import Prices, Usage, call_cost

log = logging.getLogger(__name__)

# HTTP attempts of the call running in this thread (the SDK retries inside one create() call).
_attempts: contextvars.ContextVar[list | None] = contextvars.ContextVar("attempts", default=None)


@dataclass(frozen=True)
class Completion:
    answer: str
    usage: Usage
    cost_usd: float
    latency_s: float  # wall time of the call, retries included
    ttft_s: float | None = None  # time to the first streamed token (answer or reasoning)
    reasoning: str = ""  # thinking models' reasoning_content, kept apart from the answer
    finish_reason: str = ""
    attempts: int = 1  # HTTP requests sent, retries included
    attempt_log: str = ""  # status of each attempt, e.g. "429 500 200"; "x" for no response
    cached: bool = False  # served from the response cache: no call, nothing paid
    started_at: float = 0.0  # epoch seconds when the call was sent (for trace spans)
    response_model: str = ""  # the model the provider says answered (an alias is not a model)
    system_fingerprint: str = ""  # the provider's backend configuration, when it reports one


NO_USAGE = ("the provider returned no usage: the call's cost is unknown, so it is an error row, counted against "
            "budget.max_usd at its reservation (a host that sends no usage cannot be budgeted)")


class Unbilled(RuntimeError):
    """A response that cannot be priced or used (no usage, no choices): the provider may have billed it."""


class CallFailed(Exception):
    """A call that failed after the SDK's retries; carries what was tried, for the row."""

    def __init__(self, cause: Exception, attempts: int, attempt_log: str):
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause, self.attempts, self.attempt_log = cause, attempts, attempt_log


class ChatModel:
    def __init__(self, name: str, provider: str, model_id: str, context_window: int, max_output_tokens: int,
                 prices: dict, base_url: str | None = None, api_key_env: str | None = None,
                 params: dict | None = None, tokens_per_cl100k: float = 1.0, max_retries: int = 2,
                 timeout_s: float = 600.0, local_server: dict | None = None, stream: bool = True,
                 max_tokens_param: str = "max_tokens", max_concurrency: int = 8,
                 expected_output_tokens: int | None = None, prefix_cache: dict | None = None,
                 expired: bool = False, notes: str = ""):
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
        self.stream = stream
        self.max_tokens_param = max_tokens_param
        self.max_concurrency = max_concurrency
        self.expected_output_tokens = expected_output_tokens or max_output_tokens
        self.prefix_cache = prefix_cache  # {min_tokens, block}: how the provider caches prompt prefixes
        self.expired = expired
        self._client = None
        self._client_lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        """Who answers, stable across runs: the local server's port changes, its model file does not."""
        if self.local_server:
            # Everything that can change a local answer: the weights' content (not just their name), the
            # window, the batching that decides the arithmetic, flash attention and llama.cpp's version.
            # Not the thread count: it differs by machine and sweep, and would make every rerun a miss.
            from pipelines.models import local_server

            s = self.local_server
            return (f"llama.cpp:{local_server.file_identity(s['model_path'])}:n_ctx={s['n_ctx']}"
                    f":n_batch={s.get('n_batch', 512)}:flash_attn={bool(s.get('flash_attn'))}"
                    f":llama_cpp={local_server.runtime_version()}")
        return self.base_url or ""

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
        if self.expired:
            log.warning("model %s is marked expired: the provider may no longer serve it at %s", self.name, self.base_url)

    def request(self, messages: list[dict]) -> dict:
        """The generation request, without transport options: also the response-cache key."""
        return {"model": self.model_id, "messages": messages, self.max_tokens_param: self.max_output_tokens, **self.params}

    def client(self):
        with self._client_lock:
            if self._client is None:
                # httpx_sse imports httpx, which the SDK looks up in sys.modules on every response: imported
                # here, once, before any call, never half-imported by one call while another reads it.
                import httpx_sse  # noqa: F401
                from openai import DefaultHttpxClient, OpenAI

                base_url = self.base_url
                if self.local_server:
                    from pipelines.models import local_server

                    base_url = local_server.ensure(**self.local_server)
                    self.base_url = base_url
                key = os.environ.get(self.api_key_env, "") if self.api_key_env else "local"
                http = DefaultHttpxClient(event_hooks={"request": [_on_request], "response": [_on_response]})
                self._client = OpenAI(base_url=base_url, api_key=key, max_retries=self.max_retries,
                                      timeout=self.timeout_s, http_client=http)
            return self._client

    def complete(self, messages: list[dict], on_text=None, parts: tuple[str, ...] = ()) -> Completion:
        """One call. `on_text(answer_so_far, reasoning_so_far)` is called in this thread as a streamed
        answer arrives (never for an unstreamed model: it has nothing to show before the end). `parts`:
        the last message's content in pieces (prompts.Prompt.parts), so its documents are escaped once."""
        client = self.client()
        attempts: list[str] = []
        token = _attempts.set(attempts)
        try:
            with limits.slot(f"{self.provider}|{self.base_url}", self.max_concurrency):
                started_at, start = time.time(), time.perf_counter()
                if self.stream:
                    done = self._streamed(client, messages, start, attempts, on_text, parts)
                else:
                    done = self._whole(client, messages, start, attempts, parts)
                return replace(done, started_at=started_at)
        except Exception as err:
            raise CallFailed(err, len(attempts), " ".join(attempts)) from err
        finally:
            _attempts.reset(token)

    def _whole(self, client, messages, start, attempts, parts=()) -> Completion:
        # Sent as the streamed call is (`_body`): create() would walk the typed parameters and serialise
        # the whole prompt again. The SDK still retries and raises for the status.
        import httpx2

        content, options = self._body(messages, parts, stream=False)
        response = client.post("/chat/completions", cast_to=httpx2.Response, content=content, options=options)
        data = response.json()
        latency = time.perf_counter() - start
        if not isinstance(data, dict):
            raise Unbilled("the provider returned no completion object: no answer (it may still have billed the call)")
        _raise_for_error(data, response)
        if not data.get("choices"):
            raise Unbilled("the provider returned no choices: no answer (it may still have billed the call)")
        if data.get("usage") is None:
            raise Unbilled(NO_USAGE)
        choice = data["choices"][0]
        message = choice.get("message") or {}
        done = self._completion(message.get("content") or "", message.get("reasoning_content") or "", data["usage"],
                                latency, None, choice.get("finish_reason") or "", attempts)
        return replace(done, response_model=data.get("model") or "", system_fingerprint=data.get("system_fingerprint") or "")

    def _streamed(self, client, messages, start, attempts, on_text=None, parts=()) -> Completion:
        # The SDK's own Stream builds a pydantic object per chunk, ~0.05 CPU-ms each, and a provider sends
        # about one chunk per token: half the CPU of a streamed call (benchmarks/streaming.py). The SDK
        # still sends the request (its documented `post` for raw requests), retries it and raises for its
        # status; httpx-sse decodes the events. The body is JSON we make (`_body`): `create` walks the
        # typed parameters (~0.5 CPU-ms a call) and serialises the whole prompt again.
        import httpx2

        answer, reasoning, ttft, usage, finish, seen_choice = [], [], None, None, "", False
        served = ["", ""]
        content, options = self._body(messages, parts)
        response = client.post("/chat/completions", cast_to=httpx2.Response, content=content, options=options,
                               stream=True)
        try:
            for chunk in _chunks(response):
                served = [chunk.get("model") or served[0], chunk.get("system_fingerprint") or served[1]]
                if chunk.get("usage") is not None:
                    usage = chunk["usage"]
                for choice in chunk.get("choices") or ():
                    seen_choice = True
                    delta = choice.get("delta") or {}
                    text, thought = delta.get("content") or "", delta.get("reasoning_content") or ""
                    if (text or thought) and ttft is None:
                        ttft = time.perf_counter() - start
                    answer.append(text)
                    reasoning.append(thought)
                    finish = choice.get("finish_reason") or finish
                    if on_text and (text or thought):
                        on_text("".join(answer), "".join(reasoning))
        finally:
            response.close()
        latency = time.perf_counter() - start
        if not seen_choice:
            raise Unbilled("the stream carried no choices: no answer (it may still have billed the call)")
        if usage is None:
            raise Unbilled(NO_USAGE)
        done = self._completion("".join(answer), "".join(reasoning), usage, latency, ttft, finish, attempts)
        return replace(done, response_model=served[0], system_fingerprint=served[1])

    def _body(self, messages: list[dict], parts: tuple[str, ...], stream: bool = True) -> tuple[bytes, dict]:
        """The request's JSON and its request options, as `create` would send them: the SDK's own extras
        (`extra_body` merged into the body; headers, query, timeout as options)."""
        request = self.request(messages)
        options = {name: request.pop(extra) for extra, name in SDK_OPTIONS.items() if extra in request}
        options["security"] = {"bearer_auth": True}  # as create() asks: the API key, never another credential
        extra = request.pop("extra_body", None) or {}
        streamed = {"stream": True, "stream_options": {"include_usage": True}} if stream else {}
        request = {**request, **streamed, **extra}
        dumps = {"separators": (",", ":"), "allow_nan": False}  # the SDK's (openai._utils._json.openapi_dumps)
        pieces = body.spliced(body.holed(request, parts), parts, **dumps)
        return b"".join(pieces) if pieces else json.dumps(request, ensure_ascii=False, **dumps).encode(), options

    def _completion(self, answer, reasoning, raw_usage, latency, ttft, finish, attempts) -> Completion:
        if raw_usage is None:
            # Without the provider's usage the cost is unknown, and we never estimate a bill: an error row,
            # not a free `ok` call, and nothing is cached.
            raise RuntimeError(f"the response reported no usage, so its cost is unknown (host {self.base_url}); "
                               "this host must return usage (streamed: stream_options.include_usage)")
        usage = Usage.from_response(raw_usage)
        return Completion(answer=answer.strip(), usage=usage, cost_usd=call_cost(usage, self.prices, latency),
                          latency_s=latency, ttft_s=ttft, reasoning=reasoning.strip(), finish_reason=finish,
                          attempts=len(attempts), attempt_log=" ".join(attempts))


SDK_OPTIONS = {"extra_headers": "headers", "extra_query": "params", "timeout": "timeout"}  # create()'s, as request options


def _chunks(response):
    """The JSON chunks of a chat completion stream, until [DONE]; an error event raises as the SDK's
    Stream does (openai/_streaming.py), with the provider's message."""
    from httpx_sse import EventSource

    for event in EventSource(response).iter_sse():
        if event.data.startswith("[DONE]"):
            return
        data = event.json()
        if isinstance(data, dict):
            _raise_for_error(data, response)
        yield data


def _raise_for_error(data: dict, response) -> None:
    """An error object sent with status 200 raises as the SDK's Stream does, with the provider's message."""
    from openai import APIError

    if data.get("error"):
        error = data["error"]
        message = error.get("message") if isinstance(error, dict) else None
        raise APIError(message if isinstance(message, str) and message else "the provider sent an error",
                       request=response.request, body=error)


def _on_request(request) -> None:
    attempts = _attempts.get()
    if attempts is not None:
        attempts.append("x")  # becomes the status code when a response arrives


def _on_response(response) -> None:
    attempts = _attempts.get()
    if attempts:
        attempts[-1] = str(response.status_code)
