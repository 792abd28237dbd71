"""A request as JSON bytes when its last message is long and made of pieces that recur across
questions (whole documents, prompts.Prompt.parts): each long piece is escaped once per process and the
JSON is assembled around it. JSON escapes character by character, so the escaped pieces joined are the
escaped whole, and the bytes are exactly those of `json.dumps(..., ensure_ascii=False)`. Hand-written:
no JSON library serialises a string from pieces it has seen before. The response-cache key hashes these
pieces; the streamed call sends them (a 40k-token hybrid prompt cost ~0.7 CPU-ms to serialise, twice)."""

from __future__ import annotations

import functools
import json
from json import encoder as json_encoder

HOLE = "\x00the last message's content\x00"  # control characters are escaped in JSON: no text can forge it
_HOLE_JSON = json.dumps(HOLE)
LONG = 4096  # characters from which a piece's escaped form is kept


def holed(request: dict, parts: tuple[str, ...]) -> dict | None:
    """`request` with its last message's content replaced by HOLE; None unless that content is exactly
    the join of `parts` (compared in place, without joining them)."""
    messages = request.get("messages")
    content = messages[-1].get("content") if isinstance(messages, list) and messages and isinstance(messages[-1], dict) else None
    if not parts or not isinstance(content, str) or len(content) != sum(map(len, parts)):
        return None
    at = 0
    for part in parts:
        if not content.startswith(part, at):
            return None
        at += len(part)
    return {**request, "messages": [*messages[:-1], {**messages[-1], "content": HOLE}]}


def spliced(obj, parts: tuple[str, ...], **options) -> list[bytes] | None:
    """`json.dumps(obj, ensure_ascii=False, **options).encode()` in pieces, with HOLE (once in `obj`)
    standing for the join of `parts`; None when `obj` is None or HOLE is not there exactly once."""
    if obj is None:
        return None
    blob = json.dumps(obj, ensure_ascii=False, **options)
    before, hole, after = blob.partition(_HOLE_JSON)
    if not hole or _HOLE_JSON in after:
        return None
    return [before.encode(), b'"', *map(_escaped, parts), b'"', after.encode()]


def _escaped(text: str) -> bytes:
    return _escaped_long(text) if len(text) >= LONG else json_encoder.encode_basestring(text)[1:-1].encode()


@functools.lru_cache(maxsize=4096)  # a document's text is the same object for every question: its hash is kept
def _escaped_long(text: str) -> bytes:
    return json_encoder.encode_basestring(text)[1:-1].encode()
